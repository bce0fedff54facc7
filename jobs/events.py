"""Job changes told to whoever waits for them: event streams (`workstation.pubsub`).

`job_changed` is called wherever a job's status or progress changes (the runner, finishing,
dispatch); it publishes once the transaction commits, so a woken stream reads the new row.
Queue positions are not published per job: they move with every claim, and each web process
derives them from the lane's shared snapshot (`jobs.streams`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from workstation.pubsub import publish_on_commit


def job_topic(job_id: uuid.UUID | str) -> str:
    return f"job:{job_id}"


def job_changed(job_id: uuid.UUID | str) -> None:
    """The job's status or progress changed (published on commit, once per transaction)."""
    publish_on_commit(job_topic(job_id))


def jobs_changed(job_ids: Iterable[uuid.UUID | str]) -> None:
    for job_id in job_ids:
        job_changed(job_id)
