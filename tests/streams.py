"""Reading server-sent event streams in tests: the stream views answer with an async body."""

from __future__ import annotations

from asgiref.sync import async_to_sync


async def _collect(response) -> str:
    parts = []
    async for chunk in response.streaming_content:
        parts.append(chunk.decode() if isinstance(chunk, bytes) else str(chunk))
    return "".join(parts)


def stream_text(response) -> str:
    """The whole text of a stream that ends by itself (final state or SSE_MAX_SECONDS). Its
    reads run on this thread, which holds the test's transaction."""
    return async_to_sync(_collect)(response)
