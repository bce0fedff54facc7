from django.apps import AppConfig


class AvatarsConfig(AppConfig):
    name = "avatars"
    verbose_name = "Avatars, consent and privacy"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
