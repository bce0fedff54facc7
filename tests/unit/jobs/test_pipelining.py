"""A render worker finishes a job in the background while it denoises the next one."""

import threading
import time

import pytest

from jobs import dispatch, providers, turns
from jobs.kinds import TEST_RENDER
from jobs.models import JobStatus, RenderJob
from jobs.pipelining import BackgroundFinishing
from jobs.runner import dispatch_once, finishing

SPEC = {"prompt": "a portrait", "seed": 1, "steps": 2}


class Keeper:
    def __init__(self):
        self.exited = threading.Event()

    def __exit__(self, *exc):
        self.exited.set()


def test_background_completions_are_bounded_and_keep_their_lease_until_done():
    pipeline = BackgroundFinishing()
    release = threading.Event()
    keeper = Keeper()
    pipeline.run(
        lambda: release.wait(30),
        jobs=["a"],
        keepers=[keeper],
        on_crash=pytest.fail,
        background=True,
    )
    assert pipeline.running == 1
    assert not pipeline.wait_for_room(1, timeout=0)  # depth 1: the next claim waits
    assert pipeline.wait_for_room(2, timeout=0)
    assert not keeper.exited.is_set()  # the job's lease is kept while it finishes
    release.set()
    assert pipeline.drain(timeout=30)
    assert keeper.exited.is_set() and pipeline.running == 0
    assert pipeline.wait_for_room(1, timeout=0)


def test_a_crashing_completion_fails_each_job_and_frees_its_room():
    pipeline = BackgroundFinishing()
    crashed: list[str] = []
    keepers = [Keeper(), Keeper()]

    def completion():
        raise RuntimeError("storage exploded")

    pipeline.run(
        completion, jobs=["a", "b"], keepers=keepers, on_crash=crashed.append, background=True
    )
    assert pipeline.drain(timeout=30)
    assert crashed == ["a", "b"]
    assert all(keeper.exited.is_set() for keeper in keepers)
    pipeline.run(completion, jobs=["c"], keepers=[], on_crash=crashed.append, background=False)
    assert crashed == ["a", "b", "c"]  # the same failure path in the foreground


@pytest.fixture
def blocking_screen():
    """An output screen that holds each job's finishing until released (and flags nothing)."""
    entered = threading.Semaphore(0)
    release = threading.Event()

    def screen(images):
        entered.release()
        assert release.wait(60), "the test never released the screen"
        return [False] * len(images)

    providers.provide_output_screen(screen)
    yield entered, release
    release.set()
    providers.provide_output_screen(None)
    assert finishing.drain(timeout=60)


def queued_job(spec, user):
    """A queued job without its dispatch token: this test plays the worker that receives it
    (a token on the broker could reach another test's worker process)."""
    job = dispatch.prepare_job(RenderJob(kind=TEST_RENDER, spec=spec, created_by=user))
    job.save()
    turns.job_queued(job)
    return job


@pytest.mark.django_db(transaction=True)
def test_the_worker_denoises_the_next_job_while_the_last_one_finishes(
    make_user, settings, tiny_models, blocking_screen
):
    entered, release = blocking_screen
    settings.WORKER_PIPELINE_DEPTH = 2
    settings.RENDER_BATCH_LIMIT = 1
    first = queued_job(SPEC, make_user("operator"))
    second = queued_job({**SPEC, "seed": 2}, make_user("operator"))

    assert dispatch_once(lane="render", worker="w").pk == first.pk
    assert entered.acquire(timeout=60)  # the first job is being finished in the background
    assert dispatch_once(lane="render", worker="w").pk == second.pk  # ... and the next rendered
    assert entered.acquire(timeout=60)
    jobs = {job.pk: job for job in RenderJob.objects.filter(pk__in=[first.pk, second.pk])}
    for job in jobs.values():
        # Denoised, not yet stored: still running under this worker's lease.
        assert job.status == JobStatus.RUNNING and job.lease_expires_at is not None
        assert job.progress_step == job.progress_total == SPEC["steps"]
        assert not job.outputs.exists()
    assert finishing.running == 2
    assert not finishing.wait_for_room(settings.WORKER_PIPELINE_DEPTH, timeout=0)

    release.set()
    assert finishing.drain(timeout=60)
    for job in RenderJob.objects.filter(pk__in=[first.pk, second.pk]):
        assert job.status == JobStatus.SUCCEEDED and job.lease_expires_at is None
        assert job.outputs.count() == 1


@pytest.mark.django_db(transaction=True)
def test_at_the_default_depth_one_job_denoises_while_one_finishes(
    make_user, settings, tiny_models, blocking_screen
):
    entered, release = blocking_screen
    settings.WORKER_PIPELINE_DEPTH = 1
    settings.RENDER_BATCH_LIMIT = 1
    first = queued_job(SPEC, make_user("operator"))
    second = queued_job({**SPEC, "seed": 2}, make_user("operator"))

    assert dispatch_once(lane="render", worker="w").pk == first.pk
    assert entered.acquire(timeout=60)  # the first job is finishing, held by the screen
    next_job = threading.Thread(target=dispatch_once, kwargs={"lane": "render", "worker": "w"})
    next_job.start()

    def denoised() -> bool:
        job = RenderJob.objects.get(pk=second.pk)
        return job.progress_total > 0 and job.progress_step == job.progress_total

    deadline = time.monotonic() + 60
    while not denoised() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert denoised()  # the second job was denoised while the first is still finishing ...
    assert not RenderJob.objects.get(pk=first.pk).outputs.exists()
    assert next_job.is_alive()  # ... and waits to be handed over: depth 1
    release.set()
    next_job.join(timeout=60)
    assert not next_job.is_alive()
    assert finishing.drain(timeout=60)
    for job in RenderJob.objects.filter(pk__in=[first.pk, second.pk]):
        assert job.status == JobStatus.SUCCEEDED and job.outputs.count() == 1
