"""The Django project: settings, URLs, the Celery app, accounts and API plumbing."""

from .celery import app as celery_app

__all__ = ["celery_app"]
