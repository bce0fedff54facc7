"""Avatar training as a job kind of the queue of record (the training lane)."""

from __future__ import annotations

from jobs.models import PRIORITY_CONSUMER, Lane, RenderJob
from jobs.registry import JobKindSpec, RunOutcome, register

TRAINING = "training"


def run_training(job: RenderJob) -> RunOutcome:
    from .services import avatar_train_execute

    outcome = avatar_train_execute(avatar_id=str(job.avatar_id), job=job)
    return RunOutcome(outcome.succeeded, outcome.code, outcome.reason, outcome.details)


def training_finished(job: RenderJob) -> None:
    from .services import training_job_finished

    training_job_finished(job)


def register_kinds() -> None:
    register(
        JobKindSpec(
            name=TRAINING,
            lane=Lane.TRAINING,
            priority=PRIORITY_CONSUMER,
            run=run_training,
            batchable=False,
            consumer_facing=True,
            on_finished=(training_finished,),
        )
    )
