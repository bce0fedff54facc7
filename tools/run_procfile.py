"""`make run`'s process runner: honcho, waiting long enough for the worker's warm shutdown.

On Ctrl-C the worker stops taking jobs and finishes the one in hand (Celery's warm shutdown),
but honcho SIGKILLs whatever still runs after 5 s, cutting that job off (it is then recovered
only when its lease expires). Here the wait is RUN_STOP_WAIT_S (default 120 s, longer than any
job of the embedded tiny model). Celery's cold or soft shutdown is not used: the solo pool
cannot kill a job, and its attempt raises inside the job, which would fail it.
"""

from __future__ import annotations

import os
import sys

import honcho.manager
from honcho.command import main

# honcho reads this module constant each time it waits for its processes to exit.
honcho.manager.KILL_WAIT = int(os.environ.get("RUN_STOP_WAIT_S", "120"))  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(main(["start", *sys.argv[1:]]))
