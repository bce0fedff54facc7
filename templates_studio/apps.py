from django.apps import AppConfig


class TemplatesStudioConfig(AppConfig):
    name = "templates_studio"
    verbose_name = "Templates studio"

    def ready(self) -> None:
        # Connects the receiver that fills preview cells when their jobs finish (in workers).
        from . import services  # noqa: F401
