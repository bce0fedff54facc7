"""The job-kind registry: a kind added by one app alone, terminal hooks that cannot wedge the
queue, and the system check for rows of unknown kinds."""

from datetime import timedelta

import pytest
from django.core import checks
from django.utils import timezone

from jobs import dispatch, registry
from jobs.checks import check_job_kinds_registered
from jobs.finishing import job_finished_without_running
from jobs.kinds import TEST_RENDER
from jobs.models import PRIORITY_STUDIO, JobStatus, Lane, RenderJob
from jobs.runner import dispatch_once, execute_job, render_job_execute
from jobs.services import job_create

pytestmark = pytest.mark.django_db

SPEC = {"prompt": "a portrait", "seed": 1, "steps": 1}


@pytest.fixture
def echo_kind():
    """A whole new kind, as an app would add it in its AppConfig.ready(): it runs itself and
    records what its terminal hook saw. Nothing in the queue's code names it."""
    seen: list[tuple[str, str]] = []

    def run(job: RenderJob) -> registry.RunOutcome:
        if job.spec.get("fail"):
            return registry.RunOutcome(False, "echo_failed", "The echo said no.")
        return registry.RunOutcome(True)

    def finished(job: RenderJob) -> None:
        seen.append((str(job.pk), job.status))

    spec = registry.JobKindSpec(
        name="echo",
        lane=Lane.RENDER,
        priority=PRIORITY_STUDIO,
        run=run,
        batchable=False,
        on_finished=(finished,),
    )
    registry.register(spec)
    yield seen
    registry.unregister("echo")


@pytest.fixture
def raising_hook():
    """A terminal hook for every kind that raises while `armed` holds."""
    state = {"armed": True, "calls": 0}

    def explode(job: RenderJob) -> None:
        state["calls"] += 1
        if state["armed"]:
            raise RuntimeError("hook failed on purpose")

    registry.register_finished_hook(explode)
    yield state
    registry._GLOBAL_HOOKS.remove(explode)


def test_a_new_kind_runs_through_the_queue_and_its_hook(make_user, echo_kind):
    operator = make_user("operator")
    good = job_create(kind="echo", spec={}, created_by=operator)
    bad = job_create(kind="echo", spec={"fail": True}, created_by=operator)
    assert (good.lane, good.priority, good.batch_group) == (Lane.RENDER, PRIORITY_STUDIO, "")
    render_job_execute(job_id=good.pk)
    render_job_execute(job_id=bad.pk)
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.status == JobStatus.SUCCEEDED
    assert (bad.status, bad.error_code) == (JobStatus.FAILED, "echo_failed")
    assert echo_kind == [(str(good.pk), "succeeded"), (str(bad.pk), "failed")]


def test_unknown_kinds_are_refused_at_creation(make_user):
    with pytest.raises(registry.UnknownJobKind):
        job_create(kind="nobody-registered-me", spec={}, created_by=make_user("operator"))


def test_system_check_names_rows_of_unregistered_kinds(make_user):
    assert check_job_kinds_registered(databases=["default"]) == []
    RenderJob.objects.create(kind="orphan", spec={}, created_by=make_user("operator"))
    errors = check_job_kinds_registered(databases=["default"])
    assert [e.id for e in errors] == ["jobs.E001"] and "orphan" in errors[0].msg
    assert all(isinstance(e, checks.Error) for e in errors)
    assert check_job_kinds_registered() == []  # only with a database to look at


def test_a_raising_hook_keeps_the_result_and_is_retried_by_the_sweeper(
    make_user, echo_kind, raising_hook
):
    operator = make_user("operator")
    job = job_create(kind="echo", spec={}, created_by=operator)
    render_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED  # the stored result stands
    assert echo_kind == [(str(job.pk), "succeeded")]  # the kind's own hook still ran
    assert job.has_pending_hooks and len(job.pending_hooks) == 1
    assert job.pending_hooks[0].endswith("explode")

    # Still failing: the sweeper reports it and keeps it pending.
    counts = dispatch.sweep()
    assert (counts["hooks_retried"], counts["hooks_failing"]) == (1, 1)
    assert RenderJob.objects.get(pk=job.pk).has_pending_hooks

    raising_hook["armed"] = False
    counts = dispatch.sweep()
    assert (counts["hooks_retried"], counts["hooks_failing"]) == (1, 0)
    job.refresh_from_db()
    assert (job.has_pending_hooks, job.pending_hooks) == (False, [])
    assert echo_kind == [(str(job.pk), "succeeded")]  # only the failed hook ran again
    assert dispatch.sweep()["hooks_retried"] == 0


def test_a_raising_hook_does_not_stop_other_jobs_being_claimed(make_user, raising_hook):
    operator = make_user("operator")
    first = job_create(kind=TEST_RENDER, spec=SPEC, created_by=operator)
    # Different step counts: two batches, two claims.
    second = job_create(kind=TEST_RENDER, spec={**SPEC, "steps": 2}, created_by=operator)
    assert dispatch_once(lane="render", worker="w").pk == first.pk
    assert dispatch_once(lane="render", worker="w").pk == second.pk
    statuses = set(RenderJob.objects.values_list("status", flat=True))
    assert statuses == {JobStatus.SUCCEEDED}
    assert RenderJob.objects.filter(has_pending_hooks=True).count() == 2


def test_one_bad_row_is_skipped_by_the_sweeper_and_claims_go_on(make_user, monkeypatch, echo_kind):
    """A deadline abort and a lease recovery that raise for one job: that job is reported
    and left for the next sweep; every other job is still swept and claimed."""
    operator = make_user("operator")
    past = timezone.now() - timedelta(seconds=5)
    bad = job_create(kind="echo", spec={}, created_by=operator, deadline_at=past)
    good = job_create(kind="echo", spec={}, created_by=operator, deadline_at=past)
    stuck_bad = job_create(kind="echo", spec={}, created_by=operator)
    stuck_good = job_create(kind="echo", spec={}, created_by=operator)
    RenderJob.objects.filter(pk__in=[stuck_bad.pk, stuck_good.pk]).update(
        status=JobStatus.RUNNING, lease_expires_at=past, attempts=1, worker="dead"
    )
    waiting = job_create(kind="echo", spec={}, created_by=operator)

    real_finish = dispatch.job_finished_without_running
    real_recover = dispatch._recover_expired

    def finish(job, **kwargs):
        if job.pk == bad.pk:
            raise RuntimeError("bad row")
        return real_finish(job, **kwargs)

    def recover(pk, now):
        if pk == stuck_bad.pk:
            raise RuntimeError("bad row")
        return real_recover(pk, now)

    monkeypatch.setattr(dispatch, "job_finished_without_running", finish)
    monkeypatch.setattr(dispatch, "_recover_expired", recover)
    counts = dispatch.sweep()
    monkeypatch.undo()

    assert counts["aborted"] == 1 and counts["requeued"] == 1 and counts["skipped"] == 1
    assert RenderJob.objects.get(pk=good.pk).status == JobStatus.ABORTED
    assert RenderJob.objects.get(pk=bad.pk).status == JobStatus.QUEUED  # next sweep's
    assert RenderJob.objects.get(pk=stuck_good.pk).status == JobStatus.QUEUED
    assert RenderJob.objects.get(pk=stuck_bad.pk).status == JobStatus.RUNNING
    # Claims go on: the next job by the fair policy is taken and run.
    claimed = dispatch_once(lane="render", worker="w")
    assert claimed is not None and claimed.pk in {bad.pk, stuck_good.pk, waiting.pk}


def test_execute_job_failure_path_still_runs_hooks(make_user, echo_kind, monkeypatch):
    """A kind whose run crashes fails with the internal-error reason; its hook sees it."""
    operator = make_user("operator")
    job = job_create(kind="echo", spec={}, created_by=operator)
    claimed = dispatch.claim_job(job_id=job.pk, worker="w")

    def boom(job):
        raise RuntimeError("crash")

    monkeypatch.setattr(
        registry,
        "get",
        lambda name: registry._KINDS[name].__class__(
            **{**registry._KINDS[name].__dict__, "run": boom}
        ),
    )
    execute_job(claimed)
    monkeypatch.undo()
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "internal_error")
    assert echo_kind == [(str(job.pk), "failed")]


def test_job_finished_without_running_is_the_one_failure_path(make_user, echo_kind):
    job = job_create(kind="echo", spec={}, created_by=make_user("operator"))
    job_finished_without_running(job, status=JobStatus.CANCELED, code="canceled", message="x")
    assert echo_kind == [(str(job.pk), "canceled")]


def test_a_dead_workers_jobs_return_before_their_lease_ends(make_user, settings, echo_kind):
    """Heartbeats show a worker gone within seconds: the sweeper re-queues its running jobs
    at once (exactly once), while a live worker's and an unknown worker's jobs stay."""
    from jobs.models import WorkerHeartbeat

    settings.WORKER_DEAD_AFTER_S = 8
    operator = make_user("operator")
    now = timezone.now()
    jobs = {
        name: job_create(kind="echo", spec={}, created_by=operator)
        for name in ("dead", "alive", "unknown")
    }
    for name, job in jobs.items():
        RenderJob.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING,
            worker=f"worker-{name}",
            attempts=1,
            lease_expires_at=now + timedelta(seconds=50),  # the leases are still valid
        )
    WorkerHeartbeat.objects.create(
        name="worker-dead", lanes="render", last_seen=now - timedelta(seconds=20)
    )
    WorkerHeartbeat.objects.create(name="worker-alive", lanes="render", last_seen=now)

    assert dispatch.sweep()["requeued"] == 1
    statuses = {n: RenderJob.objects.get(pk=j.pk).status for n, j in jobs.items()}
    assert statuses == {
        "dead": JobStatus.QUEUED,
        "alive": JobStatus.RUNNING,
        "unknown": JobStatus.RUNNING,
    }
    assert dispatch.sweep()["requeued"] == 0  # exactly once


def test_a_stopping_worker_claims_no_new_job(make_user, monkeypatch, echo_kind):
    from celery.worker import state as worker_state

    from jobs import tasks

    job = job_create(kind="echo", spec={}, created_by=make_user("operator"))
    monkeypatch.setattr(worker_state, "should_stop", 0)  # EX_OK: warm shutdown requested
    assert tasks.dispatch.run("render") is None
    assert RenderJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    monkeypatch.setattr(worker_state, "should_stop", None)
    assert tasks.dispatch.run("render") == str(job.pk)
    assert RenderJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
