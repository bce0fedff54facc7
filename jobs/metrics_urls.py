"""Mounted at the site root: /metrics (Prometheus)."""

from django.urls import path

from .ops import metrics_view

urlpatterns = [path("metrics", metrics_view, name="metrics")]
