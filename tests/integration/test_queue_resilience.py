"""The shared backend under stress, on real services: fairness, concurrency, crashes, a lost
broker and a lost database."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from credits.models import CreditEntry
from jobs import dispatch
from jobs import services as rendering_services
from jobs.models import JobStatus, RenderJob

from ..factories import published_template, ready_consumer_avatar
from .conftest import ROOT, purge_queues, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST = {"prompt": "a portrait", "steps": 1}


def _all_done(ids, timeout=240):
    def done():
        states = dict(RenderJob.objects.filter(pk__in=ids).values_list("pk", "status"))
        return states if all(s in ("succeeded", "failed") for s in states.values()) else None

    return wait_for(done, timeout=timeout, interval=0.5, what=f"{len(ids)} jobs")


def test_fairness_b_starts_within_two_claims(celery_worker, make_user):
    a, b = make_user("operator"), make_user("operator")
    with celery_worker.paused():  # nothing consumes while the queue fills
        a_ids = [
            rendering_services.test_render_create(user=a, spec={**FAST, "seed": i}).pk
            for i in range(30)
        ]
        b_id = rendering_services.test_render_create(user=b, spec={**FAST, "seed": 99}).pk
    _all_done(a_ids + [b_id])
    order = list(
        RenderJob.objects.filter(pk__in=a_ids + [b_id])
        .order_by("started_at")
        .values_list("pk", flat=True)
    )
    assert order.index(b_id) <= 1, order.index(b_id)


def test_two_workers_fifty_jobs_none_run_twice(celery_worker, start_worker, make_user):
    users = [make_user("operator") for _ in range(5)]
    with celery_worker.paused():
        workers = [start_worker("pool-a"), start_worker("pool-b")]
        with transaction.atomic():  # all 50 tokens go out at commit, to both workers at once
            ids = [
                rendering_services.test_render_create(
                    user=users[i % 5], spec={**FAST, "seed": i}
                ).pk
                for i in range(50)
            ]
        states = _all_done(ids)
    assert set(states.values()) == {"succeeded"}
    jobs = RenderJob.objects.filter(pk__in=ids)
    assert all(job.attempts == 1 and job.outputs.count() == 1 for job in jobs)
    claims = Counter(
        line.split("job ")[1].split(" ")[0]
        for worker in workers
        for line in worker.log().splitlines()
        if " claimed by " in line
    )
    assert set(claims) == {str(i) for i in ids} and set(claims.values()) == {1}
    assert {job.worker.split("@")[0] for job in jobs} == {"pool-a", "pool-b"}


def test_sigkill_mid_job_completes_once_and_charges_once(
    celery_worker, start_worker, make_user, consumer_key, settings
):
    from rest_framework.test import APIClient

    from workstation.accounts.models import EndUser

    settings.AVATAR_GENERATION_ALLOWANCE = 0  # the generation costs one credit
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {consumer_key('shop')}", HTTP_X_END_USER="victim"
    )
    client.post(
        "/api/v1/credits/grants",
        {"credit_type": "generation", "amount": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="g",
    )
    end_user = EndUser.objects.get(external_ref="victim")
    avatar = ready_consumer_avatar(end_user=end_user)
    template = published_template(
        owner=make_user("designer"), steps=24, size={"width": 128, "height": 128}
    )
    with celery_worker.paused():
        doomed = start_worker("doomed", JOB_LEASE_S="2")
        job_id = client.post(
            "/api/v1/generations",
            {"template": str(template.pk), "avatar": str(avatar.pk)},
            format="json",
        ).json()["id"]

        def running_on_doomed():
            job = RenderJob.objects.get(pk=job_id)
            return (
                job.status == JobStatus.RUNNING
                and job.progress_step > 0
                and job.worker == doomed.hostname
            )

        wait_for(running_on_doomed, timeout=120, what="the job to start on the doomed worker")
        doomed.kill()
        wait_for(
            lambda: RenderJob.objects.get(pk=job_id).lease_expires_at < timezone.now(),
            timeout=30,
            what="the dead worker's lease to expire",
        )
        assert dispatch.sweep()["requeued"] == 1
        start_worker("rescuer")
        _all_done([job_id])
    job = RenderJob.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert job.outputs.count() == 1
    entries = CreditEntry.objects.filter(end_user=end_user, credit_type="generation")
    assert sorted(entries.values_list("reason", flat=True)) == ["charge", "grant"]
    assert client.get("/api/v1/credits").json()["balances"]["generation"] == 0


def test_broker_flushed_with_jobs_queued_every_job_completes(celery_worker, make_user, settings):
    user = make_user("operator")
    with celery_worker.paused():
        ids = [
            rendering_services.test_render_create(user=user, spec={**FAST, "seed": i}).pk
            for i in range(6)
        ]
        if settings.CELERY_BROKER_URL.startswith("redis"):
            import redis

            redis.Redis.from_url(settings.CELERY_BROKER_URL).flushall()
        else:
            purge_queues()  # the filesystem broker's messages are lost likewise
        settings.TOKEN_RESEND_S = 0
    # The worker is back but there is no token for any job: only the sweeper can help.
    assert RenderJob.objects.filter(pk__in=ids, status="queued").count() == 6
    assert dispatch.sweep()["tokens"] == 6
    states = _all_done(ids)
    assert set(states.values()) == {"succeeded"}


class TcpProxy:
    """A loopback TCP proxy to the database that can be cut and restored."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._connections: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.resume()

    def resume(self) -> None:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(16)
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            return
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for sock in self._connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._connections.clear()


def _get(url: str, key: str) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}", "X-End-User": "u1"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_database_briefly_unreachable_is_503_then_recovers(worker_env, consumer_key, tmp_path):
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        pytest.skip("needs a networked database (CI runs this on PostgreSQL)")
    key = consumer_key("shop")
    proxy = TcpProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    url_db = worker_env["DATABASE_URL"].replace(f":{db.get('PORT') or 5432}/", f":{proxy.port}/")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = {**worker_env, "DATABASE_URL": url_db, "DB_CONNECT_TIMEOUT": "2"}
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "workstation.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api/v1/credits"
    try:

        def up():
            try:
                return _get(base, key)[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=60, what="the web server")
        proxy.cut()
        status, body = _get(base, key)
        assert status == 503, body
        assert body["error"]["code"] == "service_unavailable" and body["error"]["request_id"]
        proxy.resume()
        assert wait_for(up, timeout=30, what="recovery without a restart")
        assert web.poll() is None  # the same process recovered
    finally:
        web.terminate()
        web.wait(timeout=30)
        proxy.cut()
        log.close()
