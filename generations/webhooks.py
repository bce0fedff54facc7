"""Webhooks: each API client may register one HTTPS URL that receives its end users' job events.

- **Outbox.** When a job of an end user reaches a terminal state, the terminal hook
  `job_event` (registered for every job kind) inserts a `WebhookDelivery` in the same transaction (so an event exists
  exactly when the state does) and sends a delivery task once it commits.
- **Delivery.** The task POSTs `{"id", "type", "created_at", "data"}` with `Webhook-Id`,
  `Webhook-Timestamp` and `Webhook-Signature: v1=<hex HMAC-SHA256 of "{id}.{timestamp}.{body}">`
  (keyed with the client's secret). 2xx is delivered; anything else is retried with exponential
  backoff up to `MAX_ATTEMPTS`.
- **At least once.** A delivery first claims its row (locked; it sets `next_attempt_at` to a
  short lease), so a duplicated message, a sweep racing a scheduled retry, or a delivered event
  is a no-op; `webhooks_sweep()` re-sends due rows, so a lost message (or a worker that died
  mid-POST) is not a lost event. Receivers deduplicate on the event id.

Never logged: the secret, the body, the URL (it may carry the client's own token).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.client import HTTPMessage
from typing import IO
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import TERMINAL_STATUSES, RenderJob
from workstation.accounts.models import ApiClient, EndUser
from workstation.errors import ConflictError, InvalidInput
from workstation.queues import MAINTENANCE_QUEUE

from .models import WebhookDelivery
from .selectors import job_state

logger = logging.getLogger(__name__)

EVENT_TYPES = tuple(f"job.{status}" for status in TERMINAL_STATUSES)
URL_MAX_LENGTH = 500
LOCAL_HOSTS = ("localhost", "127.0.0.1")
TIMEOUT_S = 10
# Seconds to wait after attempt n (1-based) failed; after MAX_ATTEMPTS the event is given up.
BACKOFF_S = (10, 30, 120, 600, 3600, 6 * 3600, 6 * 3600)
MAX_ATTEMPTS = len(BACKOFF_S) + 1
# While one worker POSTs, the row is not due for others; if that worker dies, the sweep
# re-sends after the lease (more than the request's worst case).
CLAIM_LEASE_S = 5 * 60
# A scheduled retry may arrive a little early (clocks of different machines): still due.
DUE_SLACK = timedelta(seconds=5)
SWEEP_BATCH = 500
RETENTION = timedelta(days=30)  # delivered and given-up events are kept this long
SIGNATURE_VERSION = "v1"


# --- Settings per client (services) ------------------------------------------------------------------


def validate_webhook_url(url: str) -> str:
    """HTTPS only (plain HTTP for localhost/127.0.0.1, for development); no credentials in it;
    not a private, loopback or link-local IP literal."""
    url = (url or "").strip()
    problem = None
    if not url:
        problem = "A URL is required."
    elif len(url) > URL_MAX_LENGTH:
        problem = f"At most {URL_MAX_LENGTH} characters."
    else:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("https", "http") or not host:
            problem = "Give an absolute https:// URL."
        elif parts.scheme == "http" and host not in LOCAL_HOSTS:
            problem = "Use https:// (plain http is accepted only for localhost and 127.0.0.1)."
        elif parts.username or parts.password:
            problem = "Do not put credentials in the URL."
        elif host in LOCAL_HOSTS and not settings.WEBHOOK_ALLOW_LOCAL:
            problem = "Local addresses are accepted only in development (WEBHOOK_ALLOW_LOCAL)."
        elif host not in LOCAL_HOSTS and _is_internal_ip(host):
            problem = "The URL must point to a public address."
    if problem is None:
        try:
            from django.core.validators import URLValidator

            URLValidator(schemes=["http", "https"])(url)
        except Exception:  # django.core.exceptions.ValidationError
            problem = "Enter a valid URL."
    if problem:
        raise InvalidInput({"url": [problem]})
    return url


def _is_internal_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name; resolved at delivery time
    return not address.is_global


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str | None  # only when newly generated (shown once)


def webhook_set(*, client: ApiClient, url: str) -> WebhookSettings:
    """Sets the client's URL. A secret is generated when the client has none (first set, or
    after a delete) and returned once; changing the URL keeps the existing secret."""
    url = validate_webhook_url(url)
    with transaction.atomic():
        locked = ApiClient.objects.select_for_update().get(pk=client.pk)
        new_secret = None
        if not locked.webhook_secret:
            new_secret = locked.webhook_secret = secrets.token_urlsafe(32)
        locked.webhook_url = url
        locked.save(update_fields=["webhook_url", "webhook_secret"])
    logger.info("client %s: webhook set (new secret: %s)", client.pk, new_secret is not None)
    return WebhookSettings(url=url, secret=new_secret)


def webhook_rotate_secret(*, client: ApiClient) -> WebhookSettings:
    """A new secret, effective for every delivery attempt from now on (pending ones too)."""
    with transaction.atomic():
        locked = ApiClient.objects.select_for_update().get(pk=client.pk)
        if not locked.webhook_url:
            raise ConflictError("No webhook is set. PUT /api/v1/webhook first.")
        locked.webhook_secret = secrets.token_urlsafe(32)
        locked.save(update_fields=["webhook_secret"])
    logger.info("client %s: webhook secret rotated", client.pk)
    return WebhookSettings(url=locked.webhook_url, secret=locked.webhook_secret)


def webhook_clear(*, client: ApiClient) -> None:
    """Removes the URL and the secret. Pending events are not sent (they are given up)."""
    ApiClient.objects.filter(pk=client.pk).update(webhook_url="", webhook_secret="")
    WebhookDelivery.objects.filter(client=client, delivered_at__isnull=True).update(
        next_attempt_at=None, last_error="webhook removed"
    )
    logger.info("client %s: webhook removed", client.pk)


# --- Events ---------------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    """RFC 3339 with "Z" for UTC, as the REST API renders times."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_event_payload(job: RenderJob, *, end_user_ref: str | None = None) -> dict:
    """A job's public state, built without a request: ids, status, error and times. Never
    outputs (fetch them with GET /api/v1/generations/{id}), prompts or specs."""
    state = job_state(job)
    for key in ("created_at", "started_at", "completed_at"):
        state[key] = _time(state[key])
    return {**state, "end_user": end_user_ref}


def _enqueue(delivery_id: uuid.UUID | str, *, countdown: float | None = None) -> None:
    deliver_webhook.apply_async(
        args=[str(delivery_id)], countdown=countdown, queue=MAINTENANCE_QUEUE
    )


def job_event(job: RenderJob) -> None:
    """Records an event for the end user's client, if it has a webhook: a terminal hook for
    every job kind (jobs.registry), run in its own savepoint inside the transaction of the
    job's final state; if it raises, the state stands and the sweeper runs it again."""
    if job.end_user_id is None or job.status not in TERMINAL_STATUSES:
        return
    end_user = EndUser.objects.select_related("client").filter(pk=job.end_user_id).first()
    if end_user is None or not end_user.client.webhook_url or end_user.client.revoked_at:
        return
    event_type = f"job.{job.status}"
    if WebhookDelivery.objects.filter(
        client_id=end_user.client_id, event_type=event_type, payload__id=str(job.pk)
    ).exists():
        return  # a retried hook: the event is already in the outbox
    delivery = WebhookDelivery.objects.create(
        client_id=end_user.client_id,
        end_user=end_user,
        event_type=event_type,
        payload=job_event_payload(job, end_user_ref=end_user.external_ref),
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))


# --- Delivery -------------------------------------------------------------------------------------------


def sign(*, secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` value: v1=<hex HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    message = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def event_body(delivery: WebhookDelivery) -> bytes:
    envelope = {
        "id": str(delivery.pk),
        "type": delivery.event_type,
        "created_at": _time(delivery.created_at),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: it must not lead a signed event somewhere else."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _resolves_publicly(host: str) -> bool:
    """Every address the name resolves to is public (no SSRF into our own network)."""
    if host in LOCAL_HOSTS and settings.WEBHOOK_ALLOW_LOCAL:
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_global for info in infos)


def _post(url: str, *, body: bytes, headers: dict[str, str]) -> str | None:
    """None when the receiver answered 2xx, else a short reason (never the URL or the body)."""
    host = urlsplit(url).hostname or ""
    if not _resolves_publicly(host):
        return "refused: the host does not resolve to a public address"
    # The URL passed validate_webhook_url (http or https only) when the attempt was claimed.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except urllib.error.URLError as exc:
        return f"unreachable: {type(exc.reason).__name__}"[:200]
    except Exception as exc:  # timeouts, resets, TLS and protocol errors
        return f"unreachable: {type(exc).__name__}"[:200]
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


@dataclass(frozen=True)
class _Claim:
    delivery: WebhookDelivery
    url: str
    secret: str


def _claim(delivery_id: uuid.UUID | str) -> _Claim | None:
    """Locks the row; None unless it is undelivered, due and has a target. Counts the attempt
    and leases the row, so a concurrent duplicate finds it not due."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("client")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.delivered_at is not None:
            return None
        if delivery.next_attempt_at is None or delivery.next_attempt_at > now + DUE_SLACK:
            return None  # given up, or not due (another attempt holds it or waits for it)
        client = delivery.client
        problem = None
        if not client.webhook_url or not client.webhook_secret or client.revoked_at:
            problem = "webhook removed"
        else:
            try:  # again: the URL may have been set elsewhere (the admin)
                validate_webhook_url(client.webhook_url)
            except InvalidInput:
                problem = "webhook URL refused"
        if problem:
            delivery.next_attempt_at = None
            delivery.last_error = problem
            delivery.save(update_fields=["next_attempt_at", "last_error"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=CLAIM_LEASE_S)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return _Claim(delivery, client.webhook_url, client.webhook_secret)


def deliver(delivery_id: uuid.UUID | str) -> bool:
    """One delivery attempt if the event is due. True when it is (now or already) delivered."""
    claim = _claim(delivery_id)
    if claim is None:
        return WebhookDelivery.objects.filter(pk=delivery_id, delivered_at__isnull=False).exists()
    delivery = claim.delivery
    event_id = str(delivery.pk)
    timestamp = int(time.time())
    body = event_body(delivery)
    error = _post(
        claim.url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "PortraitWorkstation-Webhooks/1",
            "Webhook-Id": event_id,
            "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": sign(
                secret=claim.secret, event_id=event_id, timestamp=timestamp, body=body
            ),
        },
    )
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(pk=delivery.pk, delivered_at__isnull=True)
    if error is None:
        pending.update(delivered_at=now, next_attempt_at=None, last_error="")
        logger.info(
            "webhook %s (%s) delivered, attempt %d",
            event_id,
            delivery.event_type,
            delivery.attempts,
        )
        return True
    if delivery.attempts >= MAX_ATTEMPTS:
        pending.update(next_attempt_at=None, last_error=error)
        logger.warning(
            "webhook %s (%s) given up after %d attempts: %s",
            event_id,
            delivery.event_type,
            delivery.attempts,
            error,
        )
        return False
    delay = BACKOFF_S[delivery.attempts - 1]
    with transaction.atomic():
        pending.update(next_attempt_at=now + timedelta(seconds=delay), last_error=error)
        transaction.on_commit(lambda: _enqueue(delivery.pk, countdown=delay))
    logger.info(
        "webhook %s (%s) attempt %d failed (%s); retry in %ds",
        event_id,
        delivery.event_type,
        delivery.attempts,
        error,
        delay,
    )
    return False


def webhooks_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-sends due undelivered events (a lost message is not a lost event) and deletes
    delivered or given-up events older than RETENTION. Run it every minute or so."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for delivery_id in due:
        _enqueue(delivery_id)
    cutoff = now - RETENTION
    deleted, _ = WebhookDelivery.objects.filter(delivered_at__lt=cutoff).delete()
    expired, _ = WebhookDelivery.objects.filter(
        delivered_at__isnull=True, next_attempt_at__isnull=True, created_at__lt=cutoff
    ).delete()
    if due or deleted or expired:
        logger.info("webhooks sweep: %d re-sent, %d deleted", len(due), deleted + expired)
    return {"resent": len(due), "deleted": deleted + expired}


# --- Tasks (maintenance queue; sent with queue= explicitly, the route glob does not match) ---------


@shared_task(name="generations.tasks.maintenance_deliver_webhook")
def deliver_webhook(delivery_id: str) -> bool:
    return deliver(delivery_id)


@shared_task(name="generations.tasks.maintenance_webhooks_sweep")
def maintenance_webhooks_sweep() -> dict:
    return webhooks_sweep()
