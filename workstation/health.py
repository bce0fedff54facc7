"""`GET /api/v1/health`: the state of every component a request or a job depends on.

200 when all are ready, 503 when one is not. Each check is cheap and bounded in time; the
body names components and states only, never credentials or hosts.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.engine_host import get_registry
from workstation.notices import current_notices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentState:
    ready: bool
    detail: str


def check_database() -> ComponentState:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return ComponentState(False, f"unreachable ({type(exc).__name__})")
    return ComponentState(True, connection.vendor)


def check_broker() -> ComponentState:
    from workstation.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.connect()
            transport = conn.transport_cls
    except Exception as exc:
        return ComponentState(False, f"unreachable ({type(exc).__name__})")
    return ComponentState(True, str(transport))


def check_storage() -> ComponentState:
    name = f"health/probe-{uuid.uuid4().hex}"
    try:
        saved = default_storage.save(name, ContentFile(b"ok"))
        try:
            with default_storage.open(saved) as fh:
                ok = fh.read() == b"ok"
        finally:
            default_storage.delete(saved)
    except Exception as exc:
        return ComponentState(False, f"unavailable ({type(exc).__name__})")
    return ComponentState(ok, type(storages["default"]).__name__ if ok else "read-back mismatch")


def check_engine() -> ComponentState:
    """The public answer names the model and its state only; where it looks for the files
    (paths, cache folders) goes to the log, never to anonymous callers."""
    try:
        registry = get_registry()
        state = registry.status()[registry.default_base]
    except Exception as exc:
        logger.warning("health: engine misconfigured: %s", exc)
        return ComponentState(False, "misconfigured (see the server log)")
    if not state.ready:
        logger.warning("health: engine %s not ready: %s", registry.default_base, state.detail)
    verdict = "ready" if state.ready else "not ready (see the server log)"
    return ComponentState(state.ready, f"{registry.default_base}: {verdict}")


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
    "engine": check_engine,
}


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Health of database, broker, storage and engine",
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
                    "components": serializers.DictField(),
                },
            )
        },
    )
    def get(self, request):
        components = {name: check() for name, check in CHECKS.items()}
        ready = all(state.ready for state in components.values())
        if not ready:
            logger.warning(
                "health: %s", {n: s.detail for n, s in components.items() if not s.ready}
            )
        return Response(
            {
                "status": "ok" if ready else "unavailable",
                # Not a readiness gate, but never silent: say plainly what is not screened.
                "notices": current_notices(),
                "components": {
                    name: {"ready": state.ready, "detail": state.detail}
                    for name, state in components.items()
                },
            },
            status=200 if ready else 503,
        )
