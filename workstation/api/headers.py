"""Request headers shared by the consumer API: Idempotency-Key and Cancel-After."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from workstation.errors import InvalidInput

IDEMPOTENCY_HEADER = "Idempotency-Key"
CANCEL_AFTER_HEADER = "Cancel-After"
JOB_HEADERS = [
    OpenApiParameter(
        IDEMPOTENCY_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="The same key returns the same job instead of a new one.",
    ),
    OpenApiParameter(
        CANCEL_AFTER_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="Seconds (e.g. 30 or 30s); if the job has not started by "
        "then it is aborted and refunded.",
    ),
]


def idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if len(key) > 128:
        raise InvalidInput({IDEMPOTENCY_HEADER: ["At most 128 characters."]})
    return key


def cancel_after(request: Request) -> float | None:
    raw = request.headers.get(CANCEL_AFTER_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw.strip().rstrip("s"))
    except ValueError:
        seconds = -1
    if not 1 <= seconds <= 24 * 3600:
        raise InvalidInput({CANCEL_AFTER_HEADER: ["Give seconds between 1 and 86400."]})
    return seconds
