"""Avatar making as job kinds of the queue of record.

- ``avatar_intake`` (render lane: short, next to the renders that use its result): screens the
  uploaded photos and makes the instant tier's identity embedding; then queues the LoRA.
- ``training`` (training lane): trains the studio tier's LoRA from the checked photos.
"""

from __future__ import annotations

from jobs.models import PRIORITY_CONSUMER, Lane, RenderJob
from jobs.registry import JobKindSpec, RunOutcome, register

INTAKE = "avatar_intake"
TRAINING = "training"


def run_intake(job: RenderJob) -> RunOutcome:
    from .services import avatar_intake_execute

    outcome = avatar_intake_execute(avatar_id=str(job.avatar_id), job=job)
    return RunOutcome(outcome.succeeded, outcome.code, outcome.reason, outcome.details)


def run_training(job: RenderJob) -> RunOutcome:
    from .services import avatar_train_execute

    outcome = avatar_train_execute(avatar_id=str(job.avatar_id), job=job)
    return RunOutcome(outcome.succeeded, outcome.code, outcome.reason, outcome.details)


def avatar_job_finished(job: RenderJob) -> None:
    from .services import avatar_job_finished as finished

    finished(job)


def register_kinds() -> None:
    register(
        JobKindSpec(
            name=INTAKE,
            lane=Lane.RENDER,
            priority=PRIORITY_CONSUMER,
            run=run_intake,
            batchable=False,
            consumer_facing=True,
            on_finished=(avatar_job_finished,),
        )
    )
    register(
        JobKindSpec(
            name=TRAINING,
            lane=Lane.TRAINING,
            priority=PRIORITY_CONSUMER,
            run=run_training,
            batchable=False,
            consumer_facing=True,
            on_finished=(avatar_job_finished,),
        )
    )
