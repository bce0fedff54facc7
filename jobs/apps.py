from django.apps import AppConfig
from django.core import checks


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Queue of record"

    def ready(self) -> None:
        from . import kinds
        from .checks import check_job_kinds_registered

        kinds.register_kinds()
        checks.register(check_job_kinds_registered, checks.Tags.database)
