"""System checks for deployments (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_configuration(app_configs, **kwargs):
    problems: list[CheckMessage] = []
    if not settings.SECRET_KEY_FROM_ENVIRONMENT:
        problems.append(
            Error(
                "SECRET_KEY is not set in the environment (the embedded fallback under var/ is "
                "for local runs only).",
                id="workstation.E001",
            )
        )
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine.endswith("sqlite3"):
        problems.append(
            Warning(
                "DATABASE_URL points at SQLite; production uses PostgreSQL.", id="workstation.W001"
            )
        )
    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        problems.append(
            Warning(
                "CELERY_BROKER_URL uses the filesystem transport; production uses Redis.",
                id="workstation.W002",
            )
        )
    if not settings.METRICS_TOKEN:
        problems.append(
            Warning(
                "METRICS_TOKEN is empty: /metrics is readable by anyone who reaches the web server.",
                id="workstation.W003",
            )
        )
    return problems
