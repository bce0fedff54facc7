from django.apps import AppConfig

from jobs import registry


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        from .services import refund_unsuccessful_jobs

        registry.register_finished_hook(refund_unsuccessful_jobs)
