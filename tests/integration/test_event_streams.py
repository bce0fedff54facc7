"""Event streams on the real ASGI server (gunicorn + uvicorn worker, as the Procfile runs it),
against this run's database and, in CI, Redis: a stream hears a job's change within a second,
fifty open streams neither hold threads nor delay a plain GET, and the embedded notifier
(in-process, no Redis) still streams a change made by another process."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from generations.kinds import GENERATION
from jobs.events import job_changed
from jobs.models import JobStatus, RenderJob
from jobs.services import job_cancel, job_create
from workstation.accounts.models import EndUser
from workstation.accounts.services import api_client_create

from .. import workers
from .conftest import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SPEC = {"prompt": "a portrait", "seed": 1, "steps": 1}


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class WebServer:
    """One web process: gunicorn with one uvicorn worker serving workstation.asgi."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = _free_port()
        self._log = log.open("wb")
        self.log_path = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "workstation.asgi:application",
                "-k",
                "uvicorn.workers.UvicornWorker",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--logger-class",
                "workstation.log_redaction.RedactingAccessLogger",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def up():
            if self.process.poll() is not None:
                pytest.fail(f"web server exited:\n{log.read_text()[-3000:]}")
            try:
                return self.get("/api/v1/health")[0] in (200, 503)
            except OSError:
                return False

        wait_for(up, timeout=60, what="the web server")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def worker_threads(self) -> int:
        """Threads of the uvicorn worker process (the gunicorn master's child)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        worker = children.split()[0]
        for line in Path(f"/proc/{worker}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no thread count")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Stream(threading.Thread):
    """A server-sent events client: records each `state` event with the time it arrived."""

    def __init__(self, server: WebServer, path: str, headers: dict[str, str]):
        super().__init__(daemon=True)
        self.events: list[tuple[float, dict]] = []
        self.status: int | None = None
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("GET", path, headers={**headers, "Accept": "text/event-stream"})
        self.sock = self.conn.sock
        self.start()

    def run(self) -> None:
        response = self.conn.getresponse()
        self.status = response.status
        data = None
        while True:
            try:
                line = response.readline()
            except Exception:  # closed by `close()` (the test is done with it)
                return
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                data = json.loads(text[len("data: ") :])
            elif text == "" and data is not None:
                self.events.append((time.monotonic(), data))
                data = None

    def statuses(self) -> list[str]:
        return [body["status"] for _, body in self.events]

    def close(self) -> None:
        # Shut the socket down first: the reading thread holds the response's buffer, and the
        # server sees the disconnect (the stream ends there).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


@pytest.fixture(scope="module")
def servers(worker_env, tmp_path_factory):
    """Started on demand, at most one per notifier; stopped after the module. The session
    worker, if running, is paused meanwhile: these tests change their jobs themselves."""
    started: dict[str, WebServer] = {}
    logs = tmp_path_factory.mktemp("web")
    paused = contextlib.ExitStack()
    for session_worker in list(workers.session_workers):
        paused.enter_context(session_worker.paused())

    def start(notify: str | None = None) -> WebServer:
        key = notify or "default"
        if key not in started:
            env = {**worker_env, "SSE_MAX_SECONDS": "30"}
            if notify is not None:
                env["NOTIFY_URL"] = notify
            started[key] = WebServer(env, logs / f"{key}.log")
        return started[key]

    with paused:
        yield start
        for server in started.values():
            server.stop()


@pytest.fixture
def consumer():
    issued = api_client_create(name="stream-shop")

    def make(ref: str) -> tuple[dict[str, str], EndUser]:
        end_user = EndUser.objects.create(client=issued.client, external_ref=ref)
        return {"Authorization": f"Bearer {issued.key}", "X-End-User": ref}, end_user

    return make


def _events_path(job: RenderJob) -> str:
    return f"/api/v1/generations/{job.pk}/events"


def test_a_stream_hears_a_state_change_within_a_second(servers, consumer):
    if not settings.NOTIFY_URL.startswith("redis://"):
        pytest.skip("needs Redis for the notifier (CI runs this with CELERY_BROKER_URL=redis://)")
    server = servers()
    headers, end_user = consumer("u1")
    job = job_create(kind=GENERATION, spec=SPEC, end_user=end_user)
    stream = Stream(server, _events_path(job), headers)
    try:
        wait_for(lambda: stream.statuses() == ["queued"], timeout=30, what="the first event")
        # Progress, published by this process as a worker would (nothing polls: SSE_POLL_S is
        # 0 with Redis), then a cancel through the service.
        with transaction.atomic():
            RenderJob.objects.filter(pk=job.pk).update(
                status=JobStatus.RUNNING, progress_step=1, progress_total=4
            )
            job_changed(job.pk)
        changed = time.monotonic()
        wait_for(lambda: len(stream.events) == 2, timeout=10, what="the running event")
        arrived, body = stream.events[1]
        assert body["status"] == "running" and body["progress"]["step"] == 1
        assert arrived - changed < 1.0
        canceled = time.monotonic()
        job_cancel(job=RenderJob.objects.get(pk=job.pk))
        wait_for(lambda: len(stream.events) == 3, timeout=10, what="the canceled event")
        arrived, body = stream.events[2]
        assert body["status"] == "canceled" and arrived - canceled < 1.0
        stream.join(timeout=10)  # a final state ends the stream
        assert not stream.is_alive()
    finally:
        stream.close()


def test_fifty_open_streams_hold_no_thread_and_do_not_delay_a_plain_get(servers, consumer):
    server = servers()
    headers, end_user = consumer("u1")
    jobs = [job_create(kind=GENERATION, spec=SPEC, end_user=end_user) for _ in range(5)]
    first = Stream(server, _events_path(jobs[0]), headers)
    streams = [first]
    try:
        wait_for(lambda: first.events, timeout=30, what="the first stream")
        threads_with_one = server.worker_threads()
        streams += [Stream(server, _events_path(jobs[i % 5]), headers) for i in range(1, 50)]
        wait_for(lambda: all(s.events for s in streams), timeout=30, what="fifty streams to start")
        assert all(s.status == 200 for s in streams)
        # Waiting streams are coroutines: no thread each (Django would keep one per request).
        assert server.worker_threads() - threads_with_one < 10
        for _ in range(5):
            started = time.monotonic()
            status, body = server.get("/api/v1/health")
            assert status in (200, 503), body  # answered, whatever a component says
            assert time.monotonic() - started < 1.0
        assert all(s.is_alive() for s in streams)  # still open meanwhile
    finally:
        for stream in streams:
            stream.close()


def test_the_embedded_notifier_still_streams_another_processes_change(servers, consumer):
    """`make run`'s default: no Redis notifier; the worker is another process, so the stream
    re-reads every SSE_POLL_S (1 s) and still reports the change."""
    server = servers(notify="local")
    headers, end_user = consumer("u1")
    job = job_create(kind=GENERATION, spec=SPEC, end_user=end_user)
    stream = Stream(server, _events_path(job), headers)
    try:
        wait_for(lambda: stream.statuses() == ["queued"], timeout=30, what="the first event")
        RenderJob.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING, progress_step=2, progress_total=4
        )
        wait_for(lambda: len(stream.events) == 2, timeout=10, what="the change by polling")
        assert stream.events[1][1]["status"] == "running"
    finally:
        stream.close()
