"""Webhooks: each API client may register one HTTPS URL that receives its end users' job events
and avatar stage events (`avatar.instant_ready`, `avatar.studio_ready`, `avatar.lora_failed`,
`avatar.failed`).

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
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from avatars.events import AVATAR_STAGES
from avatars.models import Avatar
from jobs.models import TERMINAL_STATUSES, RenderJob
from workstation.accounts.models import ApiClient, EndUser
from workstation.errors import ConflictError, InvalidInput
from workstation.queues import MAINTENANCE_QUEUE

from .models import WebhookDelivery
from .selectors import job_state

logger = logging.getLogger(__name__)

AVATAR_EVENT_TYPES = tuple(f"avatar.{stage}" for stage in AVATAR_STAGES)
EVENT_TYPES = tuple(f"job.{status}" for status in TERMINAL_STATUSES) + AVATAR_EVENT_TYPES
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
    """HTTPS only, on an allowed port (WEBHOOK_ALLOWED_PORTS, default 443); no credentials;
    the host must not be, or resolve to, a private, loopback, link-local or otherwise
    non-public address (plain HTTP and any port for localhost/127.0.0.1 in development only).
    A name that does not resolve yet is accepted: delivery resolves it again and refuses it
    unless every address is public."""
    url = (url or "").strip()
    problem = None
    if not url:
        problem = "A URL is required."
    elif len(url) > URL_MAX_LENGTH:
        problem = f"At most {URL_MAX_LENGTH} characters."
    else:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        local = host in LOCAL_HOSTS
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = -1
        if parts.scheme not in ("https", "http") or not host or port < 0:
            problem = "Give an absolute https:// URL."
        elif parts.scheme == "http" and not local:
            problem = "Use https:// (plain http is accepted only for localhost and 127.0.0.1)."
        elif parts.username or parts.password:
            problem = "Do not put credentials in the URL."
        elif local and not settings.WEBHOOK_ALLOW_LOCAL:
            problem = "Local addresses are accepted only in development (WEBHOOK_ALLOW_LOCAL)."
        elif not local and port not in settings.WEBHOOK_ALLOWED_PORTS:
            allowed = ", ".join(str(p) for p in settings.WEBHOOK_ALLOWED_PORTS)
            problem = f"Use port {allowed}."
        elif not local and _is_internal_ip(host):
            problem = "The URL must point to a public address."
        elif not local and not _all_public(resolve(host, port), unresolved_ok=True):
            problem = "The host name resolves to a non-public address."
    if problem is None:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except DjangoValidationError:
            problem = "Enter a valid URL."
    if problem:
        raise InvalidInput({"url": [problem]})
    return url


def _is_internal_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: checked by resolving it
    return not address.is_global


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to now (empty when it does not). Tests replace this."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _all_public(addresses: list[str], *, unresolved_ok: bool = False) -> bool:
    if not addresses:
        return unresolved_ok
    return all(ipaddress.ip_address(address).is_global for address in addresses)


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


def avatar_event_payload(avatar: Avatar, *, stage: str, end_user_ref: str | None) -> dict:
    """An avatar's public stage: ids, status, tier and times. Never photos or embeddings."""
    failure = None
    if stage == "failed" and avatar.failure_code:
        failure = {"code": avatar.failure_code, "reason": avatar.failure_reason}
    elif stage == "lora_failed" and avatar.lora_failure_code:
        failure = {"code": avatar.lora_failure_code, "reason": avatar.lora_failure_reason}
    return {
        "id": str(avatar.pk),
        "stage": stage,
        "status": avatar.status,
        "tier": avatar.tier,
        "identities": avatar.available_identities(),
        "lora_status": avatar.lora_status,
        "instant_ready_at": _time(avatar.instant_ready_at),
        "lora_ready_at": _time(avatar.lora_ready_at),
        "failure": failure,
        "end_user": end_user_ref,
    }


def avatar_event(sender: type, *, avatar: Avatar, stage: str, **_: object) -> None:
    """Records an `avatar.<stage>` event for the end user's client, if it has a webhook; runs
    (through `avatars.events.avatar_stage_reached`) inside the transaction of the stage."""
    if avatar.end_user_id is None:
        return  # test avatars: no client
    end_user = EndUser.objects.select_related("client").filter(pk=avatar.end_user_id).first()
    if end_user is None or not end_user.client.webhook_url or end_user.client.revoked_at:
        return
    event_type = f"avatar.{stage}"
    if WebhookDelivery.objects.filter(
        client_id=end_user.client_id, event_type=event_type, payload__id=str(avatar.pk)
    ).exists():
        return
    delivery = WebhookDelivery.objects.create(
        client_id=end_user.client_id,
        end_user=end_user,
        event_type=event_type,
        payload=avatar_event_payload(avatar, stage=stage, end_user_ref=end_user.external_ref),
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


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address checked beforehand, not to whatever the name resolves to by
    then (no DNS-rebinding window between the check and the connection)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the original host name for SNI and certificate
    verification (and in the Host header)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _post(url: str, *, body: bytes, headers: dict[str, str]) -> str | None:
    """None when the receiver answered 2xx, else a short reason (never the URL or the body).

    The host is resolved once; every address must be public (loopback only for
    localhost/127.0.0.1 in development), and the connection goes to the first of exactly
    those addresses. Redirects are not followed: a redirect is a failed delivery.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    addresses = resolve(host, port)
    local_ok = host in LOCAL_HOSTS and settings.WEBHOOK_ALLOW_LOCAL
    if not addresses or not (local_ok or _all_public(addresses)):
        return "refused: the host does not resolve to a public address"
    connection_class = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    connection = connection_class(host, port, address=addresses[0], timeout=TIMEOUT_S)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        response.read()
    except Exception as exc:  # refused, timeouts, resets, TLS and protocol errors
        return f"unreachable: {type(exc).__name__}"[:200]
    finally:
        connection.close()
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
