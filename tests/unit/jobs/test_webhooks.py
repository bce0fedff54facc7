"""Webhooks: per-client settings, events recorded with a job's final state, signed delivery to a
real HTTP receiver, retries with backoff, and the sweep that re-sends lost messages."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from generations import webhooks
from generations.kinds import GENERATION
from generations.models import WebhookDelivery
from jobs.finishing import job_finished_without_running
from jobs.kinds import TEST_RENDER
from jobs.models import JobStatus, RenderJob
from jobs.services import job_cancel, job_create
from workstation.accounts.models import ApiClient, EndUser
from workstation.accounts.services import api_client_create


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings):
    """The receivers in these tests listen on 127.0.0.1 (allowed only in development)."""
    settings.WEBHOOK_ALLOW_LOCAL = True


pytestmark = pytest.mark.django_db

SPEC = {"prompt": "x", "seed": 1}
PAYLOAD_KEYS = {
    "id",
    "kind",
    "status",
    "end_user",
    "template",
    "avatar",
    "parent",
    "error",
    "created_at",
    "started_at",
    "completed_at",
}


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each request and answers the queued
    statuses in order (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/x")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/portraits"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def partner(api):
    """An API client with a webhook pointing at nothing yet: (client, key, api)."""
    issued = api_client_create(name="partner")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    return issued.client, issued.key, api


def set_webhook(api, url) -> dict:
    response = api.put("/api/v1/webhook", {"url": url}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def end_user_of(client, ref="u1") -> EndUser:
    return EndUser.objects.get_or_create(client=client, external_ref=ref)[0]


def canceled_job(end_user) -> RenderJob:
    job = job_create(kind=GENERATION, spec=SPEC, end_user=end_user)
    return job_cancel(job=job)


def failed_job(end_user) -> RenderJob:
    job = job_create(kind=GENERATION, spec=SPEC, end_user=end_user)
    with transaction.atomic():
        job_finished_without_running(job, status=JobStatus.FAILED, code="x", message="y")
    job.refresh_from_db()
    return job


def due_now(delivery):
    """Time passes: the scheduled retry is due."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.fixture
def eager_celery():
    """Celery runs sent tasks in-process (no broker), as a worker would."""
    from workstation.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


# --- Settings ----------------------------------------------------------------------------------------


def test_setting_a_url_returns_the_secret_once(partner):
    client, _, api = partner
    first = set_webhook(api, "https://hooks.example.com/portraits")
    assert first["url"] == "https://hooks.example.com/portraits"
    assert len(first["secret"]) >= 40
    client.refresh_from_db()
    assert client.webhook_secret == first["secret"]

    shown = api.get("/api/v1/webhook").json()
    assert shown == {"url": "https://hooks.example.com/portraits"}  # never the secret

    changed = set_webhook(api, "https://hooks.example.com/v2")
    assert changed == {"url": "https://hooks.example.com/v2", "secret": None}  # kept, not shown
    client.refresh_from_db()
    assert client.webhook_secret == first["secret"]

    rotated = api.post("/api/v1/webhook/rotate-secret").json()
    assert rotated["url"] == "https://hooks.example.com/v2"
    assert rotated["secret"] and rotated["secret"] != first["secret"]

    assert api.delete("/api/v1/webhook").status_code == 204
    assert api.get("/api/v1/webhook").json() == {"url": None}
    client.refresh_from_db()
    assert client.webhook_url == "" and client.webhook_secret == ""
    response = api.post("/api/v1/webhook/rotate-secret")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    again = set_webhook(api, "https://hooks.example.com/v3")
    assert again["secret"] and again["secret"] not in (first["secret"], rotated["secret"])


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http outside localhost
        "ftp://hooks.example.com/x",
        "https://",
        "not a url",
        "https://10.0.0.7/hook",  # a private address
        "https://169.254.169.254/latest",  # link-local (cloud metadata)
        "https://user:pass@hooks.example.com/x",
        "https://hooks.example.com/" + "a" * 480,  # over 500 characters
    ],
)
def test_unsafe_or_invalid_urls_are_refused(partner, url):
    _, _, api = partner
    response = api.put("/api/v1/webhook", {"url": url}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()["error"]["fields"]


def test_localhost_may_use_plain_http_and_no_end_user_header_is_needed(partner):
    _, _, api = partner
    assert set_webhook(api, "http://localhost:8000/hook")["url"] == "http://localhost:8000/hook"
    assert set_webhook(api, "http://127.0.0.1:9/hook")["secret"] is None


def test_only_api_clients_may_call(api, operator, signed_in):
    assert api.get("/api/v1/webhook").status_code == 401
    assert signed_in(operator).get("/api/v1/webhook").status_code in (401, 403)


def test_another_client_cannot_read_or_change_this_clients_webhook(partner, api):
    client, key, mine = partner
    secret = set_webhook(mine, "https://a.example.com/hook")["secret"]

    from rest_framework.test import APIClient

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other').key}")
    assert other.get("/api/v1/webhook").json() == {"url": None}
    assert other.post("/api/v1/webhook/rotate-secret").status_code == 409
    set_webhook(other, "https://b.example.com/hook")
    assert other.delete("/api/v1/webhook").status_code == 204

    client.refresh_from_db()
    assert (client.webhook_url, client.webhook_secret) == ("https://a.example.com/hook", secret)
    assert mine.get("/api/v1/webhook").json() == {"url": "https://a.example.com/hook"}


# --- Events --------------------------------------------------------------------------------------------


def test_terminal_jobs_of_end_users_record_events_and_send_them_after_commit(
    partner, django_capture_on_commit_callbacks
):
    client, _, api = partner
    set_webhook(api, "https://hooks.example.com/portraits")
    end_user = end_user_of(client, "user-7")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        canceled = canceled_job(end_user)
    # The job's dispatch token, the notification of its streams and the event's delivery task.
    assert len(callbacks) == 3
    failed = failed_job(end_user)

    events = {d.payload["id"]: d for d in WebhookDelivery.objects.all()}
    assert set(events) == {str(canceled.pk), str(failed.pk)}
    assert events[str(canceled.pk)].event_type == "job.canceled"
    failure = events[str(failed.pk)]
    assert failure.event_type == "job.failed"
    assert failure.client_id == client.pk and failure.attempts == 0
    assert failure.delivered_at is None and failure.next_attempt_at <= timezone.now()
    assert set(failure.payload) == PAYLOAD_KEYS
    assert failure.payload["status"] == "failed" and failure.payload["kind"] == "generation"
    assert failure.payload["error"] == {"code": "x", "message": "y", "details": []}
    assert failure.payload["end_user"] == "user-7"
    assert failure.payload["completed_at"].endswith("Z")
    assert "prompt" not in json.dumps(failure.payload)


def test_a_rendered_job_records_a_succeeded_event(partner, tiny_models):
    from jobs.runner import dispatch_once

    client, _, api = partner
    set_webhook(api, "https://hooks.example.com/portraits")
    job = job_create(kind=GENERATION, spec={**SPEC, "steps": 1}, end_user=end_user_of(client))
    dispatch_once(lane="render", worker="w")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    event = WebhookDelivery.objects.get()
    assert event.event_type == "job.succeeded"
    assert event.payload["id"] == str(job.pk) and event.payload["error"] is None
    assert "output" not in event.payload and "url" not in json.dumps(event.payload)


def test_jobs_of_studio_users_produce_no_events(partner, operator):
    _, _, api = partner
    set_webhook(api, "https://hooks.example.com/portraits")
    job = job_create(kind=TEST_RENDER, spec=SPEC, created_by=operator)
    job_cancel(job=job)
    assert not WebhookDelivery.objects.exists()


def test_a_client_without_a_url_gets_no_events(partner):
    client, _, api = partner
    other = api_client_create(name="other").client
    set_webhook(api, "https://hooks.example.com/portraits")
    canceled_job(end_user_of(other))
    failed_job(end_user_of(other, "u2"))
    assert not WebhookDelivery.objects.exists()
    canceled_job(end_user_of(client))
    assert list(WebhookDelivery.objects.values_list("client", flat=True)) == [client.pk]


# --- Delivery -----------------------------------------------------------------------------------------


def test_a_delivery_is_signed_with_the_clients_secret(partner, receiver, caplog):
    client, _, api = partner
    secret = set_webhook(api, receiver.url)["secret"]
    job = canceled_job(end_user_of(client))
    delivery = WebhookDelivery.objects.get()

    with caplog.at_level(logging.DEBUG):
        assert webhooks.deliver(delivery.pk) is True

    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/portraits"
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert headers["Webhook-Id"] == event["id"] == str(delivery.pk)
    assert event["type"] == "job.canceled" and event["data"]["id"] == str(job.pk)
    assert event["data"] == delivery.payload and event["created_at"]
    timestamp = int(headers["Webhook-Timestamp"])
    assert abs(time.time() - timestamp) < 60
    # What a receiver does: HMAC-SHA256 over "{id}.{timestamp}.{raw body}", compared safely.
    expected = hmac.new(
        secret.encode(), f"{event['id']}.{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["Webhook-Signature"], f"v1={expected}")
    wrong = hmac.new(
        b"another secret", f"{event['id']}.{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert headers["Webhook-Signature"] != f"v1={wrong}"

    delivery.refresh_from_db()
    assert delivery.delivered_at is not None and delivery.attempts == 1
    assert delivery.next_attempt_at is None and delivery.last_error == ""
    assert secret not in caplog.text and body.decode() not in caplog.text
    assert receiver.url not in caplog.text


def test_a_failed_attempt_is_retried_with_backoff_and_a_delivered_event_is_not_resent(
    partner, receiver, django_capture_on_commit_callbacks
):
    client, _, api = partner
    set_webhook(api, receiver.url)
    failed_job(end_user_of(client))
    delivery = WebhookDelivery.objects.get()
    receiver.statuses = [500]

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert webhooks.deliver(delivery.pk) is False
    assert len(callbacks) == 1  # the retry, sent with a countdown after commit
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.delivered_at is None
    assert delivery.last_error == "HTTP 500"
    assert delivery.next_attempt_at >= before + timedelta(seconds=webhooks.BACKOFF_S[0])

    assert webhooks.deliver(delivery.pk) is False  # a duplicate message: not due yet
    assert len(receiver.requests) == 1

    due_now(delivery)
    assert webhooks.deliver(delivery.pk) is True
    assert len(receiver.requests) == 2
    ids = {r["headers"]["Webhook-Id"] for r in receiver.requests}
    assert ids == {str(delivery.pk)}  # the same event id on every attempt
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.delivered_at is not None
    assert delivery.last_error == ""

    due_now(delivery)  # even if it looked due, a delivered event is never sent again
    assert webhooks.deliver(delivery.pk) is True
    assert webhooks.webhooks_sweep() == {"resent": 0, "deleted": 0}
    assert len(receiver.requests) == 2


def test_backoff_grows_and_the_event_is_given_up_after_the_last_attempt(partner, receiver):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))
    delivery = WebhookDelivery.objects.get()
    receiver.statuses = [503] * webhooks.MAX_ATTEMPTS
    delays = []
    for _ in range(webhooks.MAX_ATTEMPTS):
        due_now(delivery)
        started = timezone.now()
        assert webhooks.deliver(delivery.pk) is False
        delivery.refresh_from_db()
        if delivery.next_attempt_at:
            delays.append((delivery.next_attempt_at - started).total_seconds())
    assert [round(d) for d in delays] == list(webhooks.BACKOFF_S)
    assert delivery.attempts == webhooks.MAX_ATTEMPTS and delivery.next_attempt_at is None
    assert delivery.last_error == "HTTP 503"
    assert webhooks.deliver(delivery.pk) is False
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS


def test_redirects_are_not_followed(partner, receiver):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))
    receiver.statuses = [302]
    assert webhooks.deliver(WebhookDelivery.objects.get().pk) is False
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get().last_error == "HTTP 302"


def test_an_unreachable_receiver_is_a_failed_attempt(partner, receiver):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))
    receiver.server.shutdown()
    receiver.server.server_close()
    assert webhooks.deliver(WebhookDelivery.objects.get().pk) is False
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1 and delivery.last_error.startswith("unreachable")


def test_a_removed_webhook_drops_pending_events(partner, receiver):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))
    assert api.delete("/api/v1/webhook").status_code == 204
    delivery = WebhookDelivery.objects.get()
    assert webhooks.deliver(delivery.pk) is False
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is None and delivery.last_error == "webhook removed"
    assert receiver.requests == []


def test_a_url_set_outside_the_api_is_checked_again_before_sending(partner, receiver):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))
    ApiClient.objects.filter(pk=client.pk).update(webhook_url="http://10.0.0.7/hook")
    assert webhooks.deliver(WebhookDelivery.objects.get().pk) is False
    assert WebhookDelivery.objects.get().last_error == "webhook URL refused"


def test_the_sweep_resends_events_whose_message_was_lost(partner, receiver, eager_celery):
    client, _, api = partner
    set_webhook(api, receiver.url)
    canceled_job(end_user_of(client))  # its on-commit message never runs here: "lost"
    failed_job(end_user_of(client))
    assert receiver.requests == []

    assert webhooks.webhooks_sweep()["resent"] == 2
    assert len(receiver.requests) == 2
    assert not WebhookDelivery.objects.filter(delivered_at__isnull=True).exists()
    assert webhooks.webhooks_sweep()["resent"] == 0

    old = timezone.now() - webhooks.RETENTION - timedelta(days=1)
    WebhookDelivery.objects.update(delivered_at=old)
    assert webhooks.webhooks_sweep()["deleted"] == 2


def test_the_delivery_task_goes_to_the_maintenance_queue(
    partner, receiver, eager_celery, monkeypatch, django_capture_on_commit_callbacks
):
    client, _, api = partner
    set_webhook(api, receiver.url)
    sent = []
    original = webhooks.deliver_webhook.apply_async

    def recording(*args, **kwargs):  # records what is sent to Celery, then sends it
        sent.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(webhooks.deliver_webhook, "apply_async", recording)
    with django_capture_on_commit_callbacks(execute=True):
        canceled_job(end_user_of(client))
    assert [kwargs["queue"] for kwargs in sent] == ["maintenance"]
    assert len(receiver.requests) == 1  # run in-process by the eager worker
    assert WebhookDelivery.objects.get().delivered_at is not None


@pytest.mark.django_db
def test_local_webhook_urls_are_refused_outside_development(settings):
    from generations.webhooks import validate_webhook_url
    from workstation.errors import InvalidInput

    settings.WEBHOOK_ALLOW_LOCAL = False
    with pytest.raises(InvalidInput):
        validate_webhook_url("http://127.0.0.1:9000/hook")
    with pytest.raises(InvalidInput):
        validate_webhook_url("https://10.0.0.5/hook")
    assert validate_webhook_url("https://hooks.example.com/x") == "https://hooks.example.com/x"


def test_names_resolving_to_private_addresses_are_not_posted_to(settings):
    from generations.webhooks import _post

    settings.WEBHOOK_ALLOW_LOCAL = False
    reason = _post("http://localhost:9/hook", body=b"{}", headers={})
    assert reason and reason.startswith("refused")
