"""Finishing render jobs in the background while the worker denoises the next one.

A render job has two halves: denoising, on the thread that owns the GPU, and finishing: waiting
for the engine's post-processing processes (likeness ranking, labels, PNG), the output screen,
storage and the success transaction. With ``WORKER_PIPELINE_DEPTH`` > 0 the worker hands the
second half to a thread here and claims its next job at once, so the GPU is not idle while
images are encoded and stored. At most ``depth`` jobs are finishing at a time: a render thread
whose next job is denoised waits for room before handing it over (and only then claims another),
so the queue, not this worker, holds the waiting work.

Each job keeps its lease (`jobs.dispatch.LeaseKeeper`) until it is finished. On a warm shutdown
the worker waits for the jobs still finishing (`drain`, from `jobs.tasks`); if the process dies
instead, their leases expire and the sweeper re-queues them, as for any dead worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)


class BackgroundFinishing:
    """Runs job completions in their own threads, ``depth`` at a time at most."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0

    @property
    def running(self) -> int:
        with self._changed:
            return self._running

    def wait_for_room(self, depth: int, timeout: float | None = None) -> bool:
        """Wait until fewer than ``depth`` jobs are finishing; False if ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running < depth, timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every job still finishing; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)

    def run(
        self,
        completion: Callable[[], None],
        *,
        jobs: Sequence[Any],
        keepers: Sequence[Any],
        on_crash: Callable[[Any], None],
        background: bool,
        depth: int = 1,
    ) -> None:
        """Run ``completion`` (in a new thread when ``background``), then stop the jobs' lease
        keepers. An exception it lets through fails each job through ``on_crash``. In the
        background, first wait until fewer than ``depth`` jobs are finishing: the caller (the
        render thread, its next job denoised meanwhile) then claims its next job."""
        if not background:
            self._complete(completion, jobs, keepers, on_crash)
            return
        with self._changed:
            self._changed.wait_for(lambda: self._running < depth)
            self._running += 1
        names = ",".join(str(getattr(job, "pk", job)) for job in jobs)
        thread = threading.Thread(
            target=self._complete_in_background,
            args=(completion, jobs, keepers, on_crash),
            name=f"finish-{names}"[:64],
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: finish here
            self._done()
            self._complete(completion, jobs, keepers, on_crash)

    @staticmethod
    def _complete(
        completion: Callable[[], None],
        jobs: Sequence[Any],
        keepers: Sequence[Any],
        on_crash: Callable[[Any], None],
    ) -> None:
        try:
            completion()
        except Exception:
            logger.exception("finishing %d job(s) crashed", len(jobs))
            for job in jobs:
                on_crash(job)
        finally:
            for keeper in keepers:
                keeper.__exit__(None, None, None)

    def _complete_in_background(
        self,
        completion: Callable[[], None],
        jobs: Sequence[Any],
        keepers: Sequence[Any],
        on_crash: Callable[[Any], None],
    ) -> None:
        try:
            self._complete(completion, jobs, keepers, on_crash)
        finally:
            try:
                connections.close_all()  # this thread's own connections
            finally:
                self._done()

    def _done(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()
