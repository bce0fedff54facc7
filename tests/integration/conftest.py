"""Integration tests share the worker fixtures of tests/conftest.py (one session worker)."""

from ..workers import ROOT, purge_queues, wait_for  # noqa: F401  (imported by the tests)
