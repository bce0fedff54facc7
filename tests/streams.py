"""Reading server-sent event streams in tests: the stream views answer with an async body."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from asgiref.sync import async_to_sync


@contextmanager
def outside_a_parked_event_loop() -> Iterator[None]:
    """Playwright's sync API (the browser tests' session fixture) leaves its event loop marked
    as running on the main thread, and asgiref then refuses async_to_sync there. Nothing runs
    on that loop between browser calls: step out of it while a test drives async code."""
    try:
        parked = asyncio.get_running_loop()
    except RuntimeError:
        parked = None
    if parked is not None:
        asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        if parked is not None:
            asyncio.events._set_running_loop(parked)


async def _collect(response) -> str:
    parts = []
    async for chunk in response.streaming_content:
        parts.append(chunk.decode() if isinstance(chunk, bytes) else str(chunk))
    return "".join(parts)


def stream_text(response) -> str:
    """The whole text of a stream that ends by itself (final state or SSE_MAX_SECONDS). Its
    reads run on this thread, which holds the test's transaction."""
    with outside_a_parked_event_loop():
        return async_to_sync(_collect)(response)
