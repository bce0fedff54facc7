"""Event streams that wait on notifications: the async stream of a generation, its position
ticks (no read per stream), and the position arithmetic against `queue_estimate`."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from generations import api as generations_api
from generations.kinds import GENERATION
from jobs import selectors
from jobs.kinds import TEST_RENDER
from jobs.models import JobStatus, RenderJob
from jobs.services import job_cancel, job_create
from jobs.streams import WatchedJob, estimate_watched
from templates_studio.kinds import PREVIEW
from workstation import pubsub
from workstation.accounts.models import EndUser
from workstation.accounts.services import api_client_create

from ...streams import outside_a_parked_event_loop


def drive(scenario) -> None:
    with outside_a_parked_event_loop():
        async_to_sync(scenario)()


pytestmark = pytest.mark.django_db

SPEC = {"prompt": "a portrait", "seed": 1, "steps": 1}
SSE = {"HTTP_ACCEPT": "text/event-stream"}


@pytest.fixture
def partner(settings):
    settings.NOTIFY_URL = "local"
    settings.SSE_POLL_S = 0  # only a notification (or a tick) may wake a stream here
    settings.SSE_MAX_SECONDS = 10
    created = api_client_create(name="shop")

    def caller(ref: str) -> tuple[APIClient, EndUser]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.key}", HTTP_X_END_USER=ref)
        end_user, _ = EndUser.objects.get_or_create(client=created.client, external_ref=ref)
        return client, end_user

    return caller


def generation(end_user: EndUser) -> RenderJob:
    return job_create(kind=GENERATION, spec=SPEC, end_user=end_user)


async def next_event(events, timeout: float = 5.0) -> dict:
    """The next `state` event's body (skips the retry line)."""
    while True:
        chunk = await asyncio.wait_for(anext(events), timeout)
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        if "event: state" in text:
            return json.loads(text.split("data: ", 1)[1].split("\n", 1)[0])


async def open_stream(client: APIClient, job: RenderJob):
    # The test client runs on this test's thread (it holds the test's transaction).
    response = await sync_to_async(client.get)(f"/api/v1/generations/{job.pk}/events", **SSE)
    assert response.status_code == 200
    return response.streaming_content


def test_a_notification_sends_an_event_and_a_final_state_ends_the_stream(
    partner, django_capture_on_commit_callbacks
):
    client, end_user = partner("u1")
    job = generation(end_user)

    async def scenario():
        events = await open_stream(client, job)
        first = await next_event(events)
        assert first["status"] == "queued" and first["queue"]["position"] == 0
        started = time.monotonic()

        def cancel():
            # The service publishes on commit (jobs.finishing); run the commit's callbacks.
            with django_capture_on_commit_callbacks(execute=True):
                job_cancel(job=job)

        await sync_to_async(cancel)()
        second = await next_event(events)
        assert second["status"] == "canceled" and second["queue"] is None
        assert time.monotonic() - started < 2  # woken by the notification: nothing polls
        with pytest.raises(StopAsyncIteration):
            await anext(events)  # a final state ends the stream

    drive(scenario)


def test_progress_notification_reads_the_row_again(partner):
    client, end_user = partner("u1")
    job = generation(end_user)

    async def scenario():
        events = await open_stream(client, job)
        await next_event(events)

        def progress():
            RenderJob.objects.filter(pk=job.pk).update(
                status=JobStatus.RUNNING, progress_step=3, progress_total=10
            )
            pubsub.publish(f"job:{job.pk}")

        await sync_to_async(progress)()
        body = await next_event(events)
        assert body["status"] == "running" and body["progress"] == {"step": 3, "total": 10}

    drive(scenario)


def test_stream_ends_after_sse_max_seconds(partner, settings):
    settings.SSE_MAX_SECONDS = 0.3
    client, end_user = partner("u1")
    job = generation(end_user)

    async def scenario():
        events = await open_stream(client, job)
        started = time.monotonic()
        assert (await next_event(events))["status"] == "queued"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 5)
        assert 0.2 < time.monotonic() - started < 3

    drive(scenario)
    assert pubsub.listener_count() == 0  # the stream let go of its listener


def test_another_owners_stream_is_404_and_no_credentials_401(partner):
    alice, alice_user = partner("alice")
    bob, _ = partner("bob")
    job = generation(alice_user)
    url = f"/api/v1/generations/{job.pk}/events"
    other = bob.get(url, **SSE)
    assert other.status_code == 404 and other.json()["error"]["status"] == 404
    anonymous = APIClient().get(url, **SSE)
    assert anonymous.status_code == 401


def test_position_ticks_reach_the_stream_without_reading_its_row(partner, settings, monkeypatch):
    settings.QUEUE_POSITION_TICK_S = 0.05
    settings.SSE_POSITION_EVERY_S = 0.1
    client, end_user = partner("u2")
    _, first_owner = partner("u1")
    ahead = generation(first_owner)
    mine = generation(end_user)
    reads = []
    job_json = generations_api.job_json
    monkeypatch.setattr(
        generations_api, "job_json", lambda job, request: reads.append(1) or job_json(job, request)
    )

    async def scenario():
        events = await open_stream(client, mine)
        assert (await next_event(events))["queue"]["position"] == 1
        # The job ahead starts: nothing is published to this stream's topic.
        await sync_to_async(
            lambda: RenderJob.objects.filter(pk=ahead.pk).update(status=JobStatus.RUNNING)
        )()
        body = await next_event(events)
        assert body["status"] == "queued" and body["queue"]["position"] == 0

    drive(scenario)
    assert len(reads) == 1  # the first read only: the tick came from the lane's snapshot


def test_estimates_from_the_snapshot_match_queue_estimate(make_user, settings):
    """`jobs.streams` recomputes positions from the lane snapshot; on random queues (several
    classes, owners with one or many jobs, some already served) it agrees with
    `queue_estimate` for every queued job."""
    rng = random.Random(14)
    client = api_client_create(name="p").client
    owners = [EndUser.objects.create(client=client, external_ref=f"e{i}") for i in range(6)]
    designers = [make_user("designer") for _ in range(3)]
    operator = make_user("operator")
    for _ in range(40):
        pick = rng.random()
        if pick < 0.6:
            job_create(kind=GENERATION, spec=SPEC, end_user=rng.choice(owners))
        elif pick < 0.9:
            job_create(kind=PREVIEW, spec=SPEC, created_by=rng.choice(designers))
        else:
            job_create(kind=TEST_RENDER, spec=SPEC, created_by=operator)
    # Spread creation times, and let a few jobs leave the queue.
    base = timezone.now() - timedelta(hours=1)
    for n, job in enumerate(RenderJob.objects.order_by("created_at")):
        RenderJob.objects.filter(pk=job.pk).update(created_at=base + timedelta(seconds=n))
    for job in rng.sample(list(RenderJob.objects.all()), 6):
        RenderJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    queued = list(RenderJob.objects.filter(status=JobStatus.QUEUED))
    watched = [
        WatchedJob(
            id=j.pk,
            lane=j.lane,
            priority=j.priority,
            owner_key=j.owner_key,
            created_at=j.created_at,
            kind=j.kind,
        )
        for j in queued
    ]
    assert estimate_watched(watched) == [selectors.queue_estimate(j) for j in queued]
