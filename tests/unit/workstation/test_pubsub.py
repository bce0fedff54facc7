"""The notifier behind event streams: in-process, and Redis with one connection per process."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from workstation import pubsub

from ...streams import outside_a_parked_event_loop


def run(coro_fn):
    with outside_a_parked_event_loop():
        return async_to_sync(coro_fn)()


@pytest.fixture
def in_process(settings):
    settings.NOTIFY_URL = "local"


def test_in_process_wakes_only_the_topics_listeners(in_process):
    async def scenario():
        a = await pubsub.listen(["job:a"])
        b = await pubsub.listen(["job:b"])
        also_a = await pubsub.listen(["job:a", "avatar:x"])
        try:
            pubsub.publish("job:a")
            assert await a.listener.wait(1) == "message"
            assert await also_a.listener.wait(1) == "message"
            assert await b.listener.wait(0.05) == "timeout"
            # From another thread (a sync view, the worker's on_commit): through the loop.
            threading.Thread(target=pubsub.publish, args=("job:b",)).start()
            assert await b.listener.wait(2) == "message"
            a.listener.poke()
            assert await a.listener.wait(1) == "poke"
        finally:
            for subscription in (a, b, also_a):
                subscription.close()
        assert pubsub.listener_count() == 0

    run(scenario)


def test_publish_on_commit_waits_for_the_commit_and_publishes_once(
    in_process, db, django_capture_on_commit_callbacks, monkeypatch
):
    published: list[str] = []
    monkeypatch.setattr(pubsub, "publish", published.append)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        pubsub.publish_on_commit("job:1")
        pubsub.publish_on_commit("job:1")
        pubsub.publish_on_commit("job:2")
        assert published == []  # not before the commit
    assert sorted(published) == ["job:1", "job:2"]


def test_redis_channels_are_per_database():
    assert pubsub.channel_prefix("redis://h:6379/12") != pubsub.channel_prefix("redis://h:6379/3")
    assert pubsub.channel_prefix("redis://h:6379") == pubsub.channel_prefix("redis://h:6379/0")


def _redis_url() -> str:
    from django.conf import settings

    for url in (os.environ.get("NOTIFY_URL", ""), settings.CELERY_BROKER_URL):
        if url.startswith("redis://"):
            return url
    pytest.skip("needs Redis (CI names it in CELERY_BROKER_URL)")


def test_redis_one_subscriber_connection_fans_out_to_every_listener(settings):
    import redis

    settings.NOTIFY_URL = _redis_url()
    admin = redis.Redis.from_url(settings.NOTIFY_URL)
    prefix = pubsub.channel_prefix(settings.NOTIFY_URL)

    async def scenario():
        subscriptions = [await pubsub.listen([f"job:{i}"]) for i in range(25)]
        try:
            subscriber = pubsub.subscriber()
            assert subscriber is not None and subscriber.connections == 1
            # One subscriber connection on the server serves all 25 listeners.
            mine = [
                c for c in admin.client_list(_type="pubsub") if c["name"] == subscriber.client_name
            ]
            assert len(mine) == 1
            for i in range(25):
                pubsub.publish(f"job:{i}")  # what a worker process does
            results = await asyncio.gather(*(s.listener.wait(5) for s in subscriptions))
            assert results == ["message"] * 25
            assert subscriber.connections == 1
            # A topic of another job wakes nobody.
            admin.publish(prefix + "job:other", b"")
            assert await subscriptions[0].listener.wait(0.2) == "timeout"
        finally:
            for subscription in subscriptions:
                subscription.close()

    run(scenario)
