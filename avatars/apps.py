from django.apps import AppConfig

from jobs import providers
from workstation.notices import register_notice


class AvatarsConfig(AppConfig):
    name = "avatars"
    verbose_name = "Avatars, consent and privacy"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers system checks)
            kinds,
            safety,
        )
        from .providers import StoredAvatars, screen_outputs

        kinds.register_kinds()
        providers.provide_avatars(StoredAvatars())
        providers.provide_output_screen(screen_outputs)
        register_notice("content_safety", safety.describe)
