"""Server-sent events that wait without holding a thread.

A stream sends one `state` event (with an id) each time the watched object's snapshot changes,
until the object is final, gone, or the stream's time (SSE_MAX_SECONDS) runs out; clients
reconnect, and polling the resource is the fallback.

The view that answers a stream is an ordinary DRF view (authentication, throttles, owner
scoping and the OpenAPI entry are the same as every other endpoint's); it returns
`event_stream(...)`, whose body is an async generator. While it waits, a stream is a suspended
coroutine on the web process's event loop: it awaits a notification (`workstation.pubsub`:
its topics), an overlay's poke (position ticks, `jobs.streams`), the poll interval
(SSE_POLL_S, for the in-process notifier) or its deadline, whichever comes first. Only then
does it read the row again.

Threads: under the ASGI server, `StreamRequests` runs the synchronous parts of stream requests
(Django's middleware, the DRF view, each re-read) on a few threads per process (SSE_THREADS
"stream threads"; each request keeps the one it was given), so a thousand open streams cost no
thread each (Django would otherwise keep one per request until the response ends). Under Django's test client (or WSGI) the response is driven from the
calling thread, which also runs the reads (it holds the test's transaction).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import Resolver404, resolve
from rest_framework.negotiation import BaseContentNegotiation

from workstation import pubsub

logger = logging.getLogger(__name__)

T = TypeVar("T")
Body = dict[str, Any]


class EventStreamNegotiation(BaseContentNegotiation):
    """A browser's EventSource always sends `Accept: text/event-stream`, which no DRF renderer
    offers: the stream view answers it anyway (a 404 or 401 before the stream still renders as
    JSON, the first renderer)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# Mixin for a DRF view answering with `event_stream(...)`: marks it for the stream threads
# (`StreamRequests`) and accepts EventSource's Accept header. (No docstring: a view's docstring
# becomes its OpenAPI description.)
class EventStreamView:
    event_stream = True
    content_negotiation_class: type[BaseContentNegotiation] = EventStreamNegotiation


# --- The stream threads -----------------------------------------------------------------------

_stream_threads: list[ThreadPoolExecutor] = []
_stream_thread_turn = itertools.count()
_stream_thread_lock = threading.Lock()
# Set for the requests `StreamRequests` routes to a stream thread (ASGI only).
_executor: ContextVar[Executor | None] = ContextVar("event_stream_executor", default=None)


def stream_thread() -> ThreadPoolExecutor:
    """One of the process's SSE_THREADS stream threads, in turn (each one request at a time:
    a stream request's synchronous calls all run on the thread it was given)."""
    with _stream_thread_lock:
        if not _stream_threads:
            _stream_threads.extend(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"event-streams-{n}")
                for n in range(max(1, settings.SSE_THREADS))
            )
        return _stream_threads[next(_stream_thread_turn) % len(_stream_threads)]


def stream_executor() -> Executor | None:
    """This request's stream thread while serving a stream request under ASGI; None when the stream is
    driven from a synchronous caller (test client, WSGI), whose thread then runs its reads."""
    return _executor.get()


def _is_event_stream(path: str) -> bool:
    if not path.endswith("/events"):
        return False
    try:
        match = resolve(path)
    except Resolver404:
        return False
    view = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    return bool(getattr(view, "event_stream", False))


class StreamRequests:
    """ASGI wrapper (workstation/asgi.py): a request for an event-stream view runs its
    synchronous parts on a stream thread instead of a thread of its own that Django would keep
    until the response (up to SSE_MAX_SECONDS) ends. Every other request is Django's as usual."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not _is_event_stream(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        executor = stream_thread()
        token = _executor.set(executor)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            _executor.reset(token)


async def run_sync(fn: Callable[[], T]) -> T:
    """Runs `fn` (database reads) on its stream thread, or on the synchronous caller's thread."""
    return await sync_to_async(fn, thread_sensitive=True)()


# --- The stream -----------------------------------------------------------------------------------


class Overlay(Protocol):
    """Changes a stream learns without re-reading its row (a queued job's position): `start`
    gets the stream's listener and pokes it when `apply` would give a different body."""

    def start(self, listener: pubsub.Listener) -> None: ...

    def observe(self, body: Body) -> None: ...

    def apply(self, body: Body) -> Body: ...

    def stop(self) -> None: ...


def poll_interval() -> float:
    """Seconds between re-reads without a notification (0: only when notified)."""
    return max(0.0, settings.SSE_POLL_S)


def event_stream(
    *,
    stream_id: str,
    topics: list[str],
    read: Callable[[], Body | None],
    snapshot: Callable[[Body], tuple],
    is_final: Callable[[Body], bool],
    overlay: Overlay | None = None,
) -> StreamingHttpResponse:
    """`read` (synchronous, a database read) returns the current public body, None once the
    object is gone; it runs when the stream starts, when one of `topics` is published, and every
    SSE_POLL_S. An event is sent only when `snapshot(body)` changed."""

    async def events() -> AsyncIterator[str]:
        started = time.monotonic()
        yield "retry: 2000\n\n"
        # Listening starts before the first read, so no change can fall between the two.
        subscription = await pubsub.listen(topics)
        listener = subscription.listener
        try:
            if overlay is not None:
                overlay.start(listener)
            last: tuple | None = None
            sequence = 0
            body = await run_sync(read)
            fresh = True
            while body is not None:
                if overlay is not None:
                    if fresh:
                        overlay.observe(body)
                    body = overlay.apply(body)
                current = snapshot(body)
                if current != last:
                    sequence += 1
                    last = current
                    yield (
                        f"id: {stream_id}:{sequence}\nevent: state\n"
                        f"data: {json.dumps(body, default=str)}\n\n"
                    )
                if is_final(body):
                    return
                left = settings.SSE_MAX_SECONDS - (time.monotonic() - started)
                if left <= 0:
                    return
                poll = poll_interval()
                wake = await listener.wait(min(left, poll) if poll > 0 else left)
                if wake == "poke" and overlay is not None:
                    fresh = False  # a new position: nothing to read
                    continue
                if wake == "timeout" and time.monotonic() - started >= settings.SSE_MAX_SECONDS:
                    return
                body = await run_sync(read)
                fresh = True
        finally:
            if overlay is not None:
                overlay.stop()
            subscription.close()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
