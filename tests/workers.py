"""Real Celery worker processes against the real database and broker (integration and browser
tests; the fixtures are in tests/conftest.py).

The suite runs against whatever the environment names: PostgreSQL + Redis in CI (`.ci/run`
exports DATABASE_URL and CELERY_BROKER_URL), or the embedded SQLite + filesystem broker on a
newcomer's machine. When a named service does not answer, the fixtures fail loudly: an
integration test is never skipped quietly.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
WORKER_START_TIMEOUT_S = 120

# The session worker (`celery_worker` fixture) while it runs: a test that needs a worker of its
# own kind (another storage) pauses it, and need not start it just for that.
session_workers: list[WorkerProcess] = []


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def database_url_for_test_db() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


def check_broker() -> None:
    from workstation.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.connect()
    except Exception as exc:
        pytest.fail(
            f"The broker at CELERY_BROKER_URL does not answer: {exc!r}. "
            "Start it (see docs/OPERATIONS.md) or unset the variable.",
            pytrace=False,
        )


def purge_queues() -> None:
    from workstation.celery import app
    from workstation.queues import ALL_QUEUES

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in ALL_QUEUES:
            # A queue that was never declared has nothing to purge.
            with contextlib.suppress(Exception):
                channel.queue_purge(queue)


class WorkerProcess:
    def __init__(
        self,
        name: str,
        log_path: Path,
        env: dict[str, str],
        *,
        queues: str = "render,training,maintenance",
    ):
        self.name = name
        self.log_path = log_path
        self.env = env
        self.queues = queues
        self._start()

    def _start(self) -> None:
        self._readies_before = self.log().count(" ready.") if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workstation",
                "worker",
                "-Q",
                self.queues,
                "-P",
                "solo",
                "-c",
                "1",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def hostname(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def wait_ready(self) -> None:
        def ready():
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.name} exited early:\n{self.log()[-4000:]}")
            return self.log().count(" ready.") > self._readies_before

        wait_for(ready, timeout=WORKER_START_TIMEOUT_S, what=f"worker {self.name} to start")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, the lease is simply abandoned."""
        self.process.kill()
        self.process.wait()
        self._log.close()

    @contextlib.contextmanager
    def paused(self):
        """Stops this worker for the block (so a test controls who consumes), then restarts."""
        self.stop()
        try:
            yield
        finally:
            self._start()
            self.wait_ready()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
