from django.apps import AppConfig


class TemplatesStudioConfig(AppConfig):
    name = "templates_studio"
    verbose_name = "Templates studio"

    def ready(self) -> None:
        from . import kinds

        kinds.register_kinds()
