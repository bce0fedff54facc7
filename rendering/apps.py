from django.apps import AppConfig


class RenderingConfig(AppConfig):
    name = "rendering"
    verbose_name = "Jobs, dispatch and generation"

    def ready(self) -> None:
        # Connect the job-event receivers (refunds, webhooks) in every process, workers too.
        from . import entitlements, webhooks  # noqa: F401
