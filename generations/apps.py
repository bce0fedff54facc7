from django.apps import AppConfig

from avatars.events import avatar_stage_reached
from jobs import registry


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Consumer generations and webhooks"

    def ready(self) -> None:
        from . import kinds
        from .webhooks import avatar_event, job_event

        kinds.register_kinds()
        # Every kind's terminal state may concern an API client (avatars' training too).
        registry.register_finished_hook(job_event)
        avatar_stage_reached.connect(avatar_event, dispatch_uid="generations.avatar_event")
