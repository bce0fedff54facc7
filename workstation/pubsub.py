"""Notifications for waiting event streams: a topic ("job:<id>", "avatar:<id>") is published
once and wakes every listener of it in every web process.

Two transports, chosen by NOTIFY_URL:

- Redis pub/sub (`redis://...`, production). Each web process (each event loop) holds ONE
  subscriber connection, pattern-subscribed to this deployment's channels, and fans every
  message out to its local listeners; a stream never opens a connection of its own. Publishing
  is a plain PUBLISH from any process (workers, web). A message is best-effort: one sent while
  the subscriber reconnects is lost, so after a reconnect every local listener is woken to
  re-read once.
- In-process (`local`, the embedded default of `make run`). Publishing reaches only listeners
  in the same process; the worker is another process there, so streams also re-read every
  SSE_POLL_S (workstation/api/sse.py).

Publishing is synchronous and safe from any thread; listening is asyncio (web processes only).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

Wake = Literal["message", "poke", "timeout"]

# How long `listen()` waits for a (re)connecting subscriber before the stream goes on anyway
# (it still has its deadline, its poll interval and the wake-up after the reconnect).
SUBSCRIBE_WAIT_S = 2.0
# A quiet subscriber PINGs Redis this often, and reconnects when even that goes unanswered.
HEALTH_CHECK_S = 15.0
RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def channel_prefix(url: str) -> str:
    """Pub/sub channels are shared by every database of a Redis server: the database number is
    part of the prefix, so deployments (and test runs) on other databases do not hear us."""
    path = urlsplit(url).path.strip("/")
    return f"workstation:notify:{path or '0'}:"


class Listener:
    """One waiting stream's wake-up: its topics' messages, or a `poke()` (any thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, topics: Iterable[str]):
        self.topics = frozenset(topics)
        self._loop = loop
        self._event = asyncio.Event()
        self._message = False
        self._closed = False

    def _wake(self, *, message: bool) -> None:
        if message:
            self._message = True
        self._event.set()

    def _wake_threadsafe(self, *, message: bool) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake(message=message)
        elif not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(lambda: self._wake(message=message))

    def notify(self) -> None:
        """A message for one of its topics arrived (the stream re-reads)."""
        self._wake_threadsafe(message=True)

    def poke(self) -> None:
        """Wakes without a message (position ticks: the stream re-applies what it holds)."""
        self._wake_threadsafe(message=False)

    async def wait(self, timeout: float | None) -> Wake:
        """ "message" if a topic was published since the last wait, "poke", or "timeout"."""
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return "timeout"
        self._event.clear()
        message, self._message = self._message, False
        return "message" if message else "poke"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _fanout.remove(self)


class _Fanout:
    """Every listener of this process by topic (threads publish, the loop listens)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_topic: dict[str, set[Listener]] = {}

    def add(self, listener: Listener) -> None:
        with self._lock:
            for topic in listener.topics:
                self._by_topic.setdefault(topic, set()).add(listener)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            for topic in listener.topics:
                listeners = self._by_topic.get(topic)
                if listeners is not None:
                    listeners.discard(listener)
                    if not listeners:
                        del self._by_topic[topic]

    def dispatch(self, topic: str) -> int:
        with self._lock:
            listeners = list(self._by_topic.get(topic, ()))
        for listener in listeners:
            listener.notify()
        return len(listeners)

    def dispatch_all(self) -> None:
        with self._lock:
            listeners = {listener for group in self._by_topic.values() for listener in group}
        for listener in listeners:
            listener.notify()

    def count(self) -> int:
        with self._lock:
            return len({listener for group in self._by_topic.values() for listener in group})


_fanout = _Fanout()


class _RedisSubscriber:
    """The one subscriber connection of an event loop, running while it has listeners."""

    def __init__(self, url: str):
        self.url = url
        self.prefix = channel_prefix(url)
        self.subscribed = asyncio.Event()
        self.users = 0
        self.connections = 0  # connections opened so far (tests: one serves every listener)
        # Named, so `CLIENT LIST` shows each web process's one subscriber.
        self.client_name = f"workstation-notify-{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    def acquire(self) -> None:
        self.users += 1
        if self._task is None or self._task.done():
            self.subscribed = asyncio.Event()
            # A context of its own: it outlives the request that happened to start it.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._task is not None:
            self.users = 0
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        from redis import asyncio as aioredis

        attempt = 0
        reconnecting = False
        while True:
            client = aioredis.from_url(
                self.url,
                socket_connect_timeout=2,
                socket_keepalive=True,
                client_name=self.client_name,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.psubscribe(self.prefix + "*")
                # Confirmed by the server: anything published from now on reaches us.
                while True:
                    message = await pubsub.get_message(timeout=SUBSCRIBE_WAIT_S)
                    if message is not None and message["type"] == "psubscribe":
                        break
                self.connections += 1
                if reconnecting:
                    _fanout.dispatch_all()  # messages may have been lost meanwhile: re-read
                reconnecting = True
                attempt = 0
                self.subscribed.set()
                heard = time.monotonic()
                while True:
                    # Bounded waits, so that the health check (a PING before a read) runs on
                    # a quiet channel too; a connection silent past two checks (a half-open
                    # socket after a failover) is dropped and opened again.
                    message = await pubsub.get_message(timeout=HEALTH_CHECK_S)
                    if message is not None:
                        heard = time.monotonic()  # a PONG counts
                    elif time.monotonic() - heard > 2 * HEALTH_CHECK_S + SUBSCRIBE_WAIT_S:
                        raise ConnectionError("no answer from Redis, not even to a PING")
                    elif time.monotonic() - heard >= HEALTH_CHECK_S:
                        await pubsub.ping()
                    if message is None or message["type"] != "pmessage":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    _fanout.dispatch(channel[len(self.prefix) :])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
                attempt += 1
                logger.warning("notify subscriber lost (%s); reconnecting in %.1fs", exc, delay)
                reconnecting = True
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()


_subscribers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RedisSubscriber] = (
    weakref.WeakKeyDictionary()
)


def notify_url() -> str:
    return settings.NOTIFY_URL


def subscriber() -> _RedisSubscriber | None:
    """This event loop's Redis subscriber (None with the in-process notifier)."""
    url = notify_url()
    if not _is_redis(url):
        return None
    loop = asyncio.get_running_loop()
    current = _subscribers.get(loop)
    if current is None or current.url != url:
        current = _subscribers[loop] = _RedisSubscriber(url)
    return current


class Subscription:
    """A listener and its share of the loop's subscriber; `close()` releases both."""

    def __init__(self, listener: Listener, redis: _RedisSubscriber | None):
        self.listener = listener
        self._redis = redis

    def close(self) -> None:
        self.listener.close()
        if self._redis is not None:
            self._redis.release()
            self._redis = None


async def listen(topics: Iterable[str]) -> Subscription:
    """Starts listening to `topics` from the running event loop. Returns once a message
    published from now on will arrive (or after SUBSCRIBE_WAIT_S if Redis does not answer)."""
    listener = Listener(asyncio.get_running_loop(), topics)
    _fanout.add(listener)
    redis = subscriber()
    subscription = Subscription(listener, redis)
    if redis is not None:
        redis.acquire()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(redis.subscribed.wait(), SUBSCRIBE_WAIT_S)
        except BaseException:  # the client left (cancelled) while we waited: give both back
            subscription.close()
            raise
    return subscription


def listener_count() -> int:
    """Listeners in this process (metrics, tests)."""
    return _fanout.count()


# --- Publishing ---------------------------------------------------------------------------------

_clients: dict[tuple[int, str], Any] = {}
_clients_lock = threading.Lock()


def _redis_client(url: str) -> Any:
    # One client (a thread-safe connection pool) per process and URL; a forked worker gets its
    # own, never its parent's sockets.
    key = (os.getpid(), url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import redis

            client = _clients[key] = redis.Redis.from_url(
                url, socket_connect_timeout=1, socket_timeout=1
            )
        return client


def publish(topic: str) -> None:
    """Wakes every listener of `topic` (all processes with Redis, this one otherwise). Never
    raises: a lost notification delays a stream, it must not fail the change it reports."""
    url = notify_url()
    if not _is_redis(url):
        _fanout.dispatch(topic)
        return
    try:
        _redis_client(url).publish(channel_prefix(url) + topic, b"")
    except Exception as exc:
        logger.warning("notification %s not published: %s", topic, exc)


class _PublishOnCommit:
    """An on-commit callback that publishes one topic (found again by `publish_on_commit`)."""

    def __init__(self, topic: str):
        self.topic = topic

    def __call__(self) -> None:
        publish(self.topic)


def publish_on_commit(topic: str) -> None:
    """Publishes `topic` once the current transaction commits (at once outside one), so a woken
    stream reads the new row; several changes to one topic in a transaction publish it once,
    and a transaction that rolls back publishes nothing (Django drops its callbacks)."""
    pending = transaction.get_connection().run_on_commit
    if any(isinstance(f, _PublishOnCommit) and f.topic == topic for _ids, f, _robust in pending):
        return
    transaction.on_commit(_PublishOnCommit(topic))
