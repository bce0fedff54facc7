"""Fixtures shared by every Django test: people in each role, API callers, the tiny model."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from django.conf import settings

from . import workers

PASSWORD = "correct-horse-battery-9"


# --- Real worker processes (integration and browser tests share one session worker) -------------


@pytest.fixture(scope="session")
def worker_env(django_db_setup, tiny_models) -> dict[str, str]:
    """The environment a worker needs to share this test run's database, broker and storage."""
    workers.check_broker()
    env = {
        **os.environ,
        "DATABASE_URL": workers.database_url_for_test_db(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "VAR_DIR": str(settings.VAR_DIR),
        "ENGINE_MODELS_DIR": str(settings.ENGINE_MODELS_DIR),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        # Photos are screened in the training job: the worker must accept the small photo sets
        # the integration and browser tests upload (their tests lower AVATAR_MIN_PHOTOS alike).
        "AVATAR_MIN_USABLE_PHOTOS": "4",
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """`start_worker("name", **env)` starts an extra worker process, stopped after the test."""
    started: list[workers.WorkerProcess] = []

    def start(
        name: str, *, queues: str = "render,training,maintenance", **env: str
    ) -> workers.WorkerProcess:
        worker = workers.WorkerProcess(
            name, tmp_path / f"{name}.log", {**worker_env, **env}, queues=queues
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.stop()


@pytest.fixture(scope="session")
def celery_worker(worker_env, tmp_path_factory):
    """One real worker process for the session (stopped before the test database is dropped)."""
    workers.purge_queues()
    worker = workers.WorkerProcess(
        "it-worker", tmp_path_factory.mktemp("worker") / "worker.log", worker_env
    )
    workers.session_workers.append(worker)
    try:
        worker.wait_ready()
        yield worker
    finally:
        workers.session_workers.remove(worker)
        worker.stop()


# --- An S3-compatible server (moto) on loopback, for the production storage path -----------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port with one empty bucket; stopped at the end."""
    from .s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_server, settings):
    """Django's default storage in this process is S3 on `s3_server` for the test (settings as
    production builds them); Django's setting_changed handler drops the cached storages."""
    from django.core.files.storage import default_storage, storages

    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": s3_server.storage_setting()}
    assert type(storages["default"]).__name__ == "S3Storage"
    assert default_storage.bucket_name == s3_server.bucket
    yield s3_server


@pytest.fixture
def s3_worker(s3_storage, worker_env, tmp_path):
    """A worker process whose storage is the S3 server (STORAGE_BACKEND=s3, S3_* as production
    sets them). Started at setup but not waited for: call `wait_ready()` before relying on it.
    The session worker, if running, is paused meanwhile, so no job lands on the filesystem."""
    with contextlib.ExitStack() as paused:
        for session_worker in list(workers.session_workers):
            paused.enter_context(session_worker.paused())
        # A short training: the storage path, not the model, is what these tests exercise.
        env = {**worker_env, **s3_storage.env, "AVATAR_TRAINING_STEPS": "4"}
        worker = workers.WorkerProcess("s3-worker", tmp_path / "s3-worker.log", env)
        try:
            yield worker
        finally:
            worker.stop()


@pytest.fixture(autouse=True)
def clear_cache(settings):
    """Throttle counters and queue snapshots live in the shared cache; each test starts with
    none, and reads positions fresh (tests/unit/jobs/test_queue.py covers the shared tick)."""
    import threading

    from django.core.cache import cache

    from jobs import selectors

    # A snapshot rebuild an earlier test started in the background must not land in this
    # one (it would install a snapshot of that test's queue as the newest).
    for thread in threading.enumerate():
        if thread.name.startswith("queue-snapshot-"):
            thread.join(timeout=60)
    cache.clear()
    selectors._local_snapshots.clear()
    settings.QUEUE_POSITION_TICK_S = 0
    # In-process runs finish each job before returning: a background thread would not see
    # the test's open transaction (tests/unit/jobs/test_pipelining.py covers the pipeline,
    # and the integration tests' worker processes run it as deployed).
    settings.WORKER_PIPELINE_DEPTH = 0
    yield


@pytest.fixture(scope="session")
def tiny_models(django_db_blocker) -> Path:
    """The tiny random-weight model under ENGINE_MODELS_DIR, built once if missing."""
    from engine.tiny import build_tiny

    models_dir = Path(settings.ENGINE_MODELS_DIR)
    # A models folder built before the identity adapters existed is built again.
    if not all((models_dir / name).exists() for name in ("profile.json", "identity-tiny")):
        build_tiny(models_dir)
    return models_dir


@pytest.fixture
def make_user(db):
    from workstation.accounts.models import User

    def make(role: str, email: str | None = None) -> User:
        email = email or f"{role}-{User.objects.count() + 1}@example.test"
        return User.objects.create_user(email, PASSWORD, role=role, display_name=role.title())

    return make


@pytest.fixture
def operator(make_user):
    return make_user("operator")


@pytest.fixture
def designer(make_user):
    return make_user("designer")


@pytest.fixture
def reviewer(make_user):
    return make_user("reviewer")


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def signed_in(api):
    """`signed_in(user)` returns an APIClient with that user's session."""

    from rest_framework.test import APIClient

    def sign_in(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return sign_in


@pytest.fixture
def consumer_key(db):
    """`consumer_key("name")` creates an API client and returns its plaintext key."""
    from workstation.accounts.services import api_client_create

    def make(name: str = "partner") -> str:
        return api_client_create(name=name).key

    return make
