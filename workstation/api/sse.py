"""Server-sent events by polling the row of record (one stream holds one web thread).

A stream sends one `state` event (with an id) each time the watched object's snapshot changes,
until the object is final, gone, or the stream's time (SSE_MAX_SECONDS) runs out; clients
reconnect, and polling the resource is the fallback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation

POLL_INTERVAL_S = 0.5


class EventStreamNegotiation(BaseContentNegotiation):
    """A browser's EventSource always sends `Accept: text/event-stream`, which no DRF renderer
    offers: the stream view answers it anyway (a 404 or 401 before the stream still renders as
    JSON, the first renderer)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def state_stream(
    *,
    stream_id: str,
    read: Callable[[], dict[str, Any] | None],
    snapshot: Callable[[dict[str, Any]], tuple],
    is_final: Callable[[dict[str, Any]], bool],
) -> StreamingHttpResponse:
    """`read` returns the current public body (None once the object is gone)."""
    started = time.monotonic()

    def events() -> Iterator[str]:
        yield "retry: 2000\n\n"
        last = None
        sequence = 0
        while True:
            body = read()
            if body is None:
                return
            current = snapshot(body)
            if current != last:
                sequence += 1
                last = current
                yield (
                    f"id: {stream_id}:{sequence}\nevent: state\n"
                    f"data: {json.dumps(body, default=str)}\n\n"
                )
            if is_final(body) or time.monotonic() - started > settings.SSE_MAX_SECONDS:
                return
            time.sleep(POLL_INTERVAL_S)  # the stream's poll interval, not a test wait

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
