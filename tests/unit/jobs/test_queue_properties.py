"""Properties of the fair queue, checked against a brute-force reference on random queues.

The policy (jobs.dispatch): the lowest priority number first; within a class, round-robin
between owners, the least recently served first (never served: by their oldest queued job);
FIFO within an owner. The reference below replays that policy on plain Python lists; the real
claims (`claim_next`) and the reported positions (`queue_estimate`) must agree with it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from jobs import dispatch, selectors
from jobs import turns as jobs_turns
from jobs.kinds import TEST_RENDER
from jobs.models import JobStatus, OwnerTurn, RenderJob
from jobs.services import job_cancel, job_create

pytestmark = pytest.mark.django_db

START = datetime(2030, 1, 1, tzinfo=UTC)
NEVER = timezone.make_aware(datetime(2000, 1, 1))
OWNERS = 4
PRIORITIES = (10, 20)


@dataclass(frozen=True)
class Job:
    pk: object
    owner: str
    priority: int
    created: datetime


def reference_order(jobs: list[Job], turns: dict[tuple[int, str], datetime]) -> list[object]:
    """The order the policy claims `jobs` in, one worker, nothing arriving meanwhile."""
    remaining = list(jobs)
    turns = dict(turns)
    order = []
    for tick in itertools.count(1):
        if not remaining:
            return order
        priority = min(job.priority for job in remaining)
        in_class = [job for job in remaining if job.priority == priority]
        oldest = {
            owner: min(job.created for job in in_class if job.owner == owner)
            for owner in {job.owner for job in in_class}
        }
        owner = min(oldest, key=lambda o: (turns.get((priority, o), NEVER), oldest[o]))
        job = min((j for j in in_class if j.owner == owner), key=lambda j: j.created)
        order.append(job.pk)
        remaining.remove(job)
        turns[(priority, owner)] = START + timedelta(days=1, seconds=tick)
    raise AssertionError("unreachable")


queues = st.lists(
    st.tuples(st.integers(0, OWNERS - 1), st.sampled_from(PRIORITIES)), min_size=1, max_size=12
)
earlier_turns = st.dictionaries(
    st.tuples(st.sampled_from(PRIORITIES), st.integers(0, OWNERS - 1)),
    st.integers(1, 500),
    max_size=4,
)


@pytest.fixture
def owners(make_user):
    return [make_user("operator") for _ in range(OWNERS)]


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(queue=queues, served=earlier_turns)
def test_claims_and_positions_match_the_reference(owners, monkeypatch, queue, served):
    RenderJob.objects.all().delete()
    OwnerTurn.objects.all().delete()
    jobs = []
    for index, (owner_index, priority) in enumerate(queue):
        job = job_create(kind=TEST_RENDER, spec={"seed": index}, created_by=owners[owner_index])
        created = START + timedelta(seconds=index)
        RenderJob.objects.filter(pk=job.pk).update(priority=priority, created_at=created)
        jobs.append(Job(job.pk, job.owner_key, priority, created))
    lane = RenderJob.objects.get(pk=jobs[0].pk).lane
    owner_keys = {i: RenderJob.objects.filter(created_by=u).first() for i, u in enumerate(owners)}
    turns = {}
    for (priority, owner_index), minutes_ago in served.items():
        holder = owner_keys[owner_index]
        if holder is None:
            continue
        at = START - timedelta(minutes=minutes_ago)
        OwnerTurn.objects.update_or_create(
            lane=lane,
            priority=priority,
            owner_key=holder.owner_key,
            defaults={"last_served_at": at},
        )
        turns[(priority, holder.owner_key)] = at
    # The rows above were rewritten by hand: the sweeper's reconcile brings the turn index
    # (jobs.turns) back in step with them, as it would in production.
    jobs_turns.reconcile()

    # A clock that moves forward on every claim, so "least recently served" never ties.
    ticks = itertools.count(1)
    monkeypatch.setattr(timezone, "now", lambda: START + timedelta(days=1, seconds=next(ticks)))

    expected = reference_order(jobs, turns)
    half = len(expected) // 2
    # Positions of everything waiting, then claims; again after half of the queue is claimed.
    for claimed, until in ((0, half), (half, len(expected))):
        waiting = expected[claimed:]
        for position, pk in enumerate(waiting):
            estimate = selectors.queue_estimate(RenderJob.objects.get(pk=pk))
            assert estimate is not None and estimate.position == position, (claimed, position)
        for _ in range(until - claimed):
            job = dispatch.claim_next(lane=lane, worker="w")
            assert job is not None
            assert job.status == JobStatus.RUNNING
    claimed_order = list(
        RenderJob.objects.filter(pk__in=[j.pk for j in jobs])
        .order_by("started_at")
        .values_list("pk", flat=True)
    )
    assert claimed_order == expected
    assert dispatch.claim_next(lane=lane, worker="w") is None


# --- The turn index stays in step with the queue of record ---------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["create", "claim", "cancel", "requeue", "abort", "claim_direct"]),
        st.integers(0, OWNERS - 1),
    ),
    min_size=1,
    max_size=25,
)


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
def test_every_queue_change_keeps_the_turn_index_exact(owners, steps):
    """Whatever mix of new jobs, claims, cancels, re-queues, deadline aborts and direct
    claims: each owner's head is its oldest queued job (reconcile finds nothing to fix), and
    a claim is never missed (the queue drains completely by claims alone)."""
    RenderJob.objects.all().delete()
    OwnerTurn.objects.all().delete()
    lane = "render"
    for operation, owner_index in steps:
        owner = owners[owner_index]
        mine = RenderJob.objects.filter(created_by=owner)
        if operation == "create":
            job_create(kind=TEST_RENDER, spec={"seed": 1}, created_by=owner)
        elif operation == "claim":
            dispatch.claim_next(lane=lane, worker="w")
        elif operation == "claim_direct" and (queued := mine.filter(status="queued").last()):
            dispatch.claim_job(job_id=queued.pk, worker="w")
        elif operation == "cancel" and (queued := mine.filter(status="queued").first()):
            job_cancel(job=queued)
        elif operation == "requeue" and (running := mine.filter(status="running").first()):
            # The worker died: the lease ran out and the sweeper returns the job.
            RenderJob.objects.filter(pk=running.pk).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
            dispatch.sweep()
        elif operation == "abort" and (queued := mine.filter(status="queued").first()):
            RenderJob.objects.filter(pk=queued.pk).update(
                deadline_at=timezone.now() - timedelta(seconds=1)
            )
            dispatch.abort_expired()
        assert jobs_turns.reconcile() == 0, operation
    waiting = RenderJob.objects.filter(status="queued").count()
    for _ in range(waiting):
        assert dispatch.claim_next(lane=lane, worker="w") is not None
    assert not RenderJob.objects.filter(status="queued").exists()
    assert not OwnerTurn.objects.filter(head_at__isnull=False).exists()
