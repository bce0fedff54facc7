"""Instant avatars on real services (PostgreSQL, Redis, worker processes): the instant tier
renders before the LoRA job has started; the LoRA then trains; erasure mid-way leaves nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from avatars.models import Avatar, AvatarPhoto
from jobs.models import RenderJob

from .. import photos as P
from ..factories import give_consent, published_template
from ..storage_utils import list_objects
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RENDER_ONLY = "render,maintenance"


@pytest.fixture(autouse=True)
def small_photo_sets(settings):
    """Four photos, as the workers accept (tests/conftest.py worker_env)."""
    settings.AVATAR_MIN_PHOTOS = 4
    settings.AVATAR_MIN_USABLE_PHOTOS = 4


def _consumer(consumer_key, end_user: str) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {consumer_key('partner')}", HTTP_X_END_USER=end_user
    )
    for credit_type, amount in (("avatar", 2), ("generation", 10)):
        grant = client.post(
            "/api/v1/credits/grants",
            {"credit_type": credit_type, "amount": amount},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"order-{end_user}-{credit_type}",
        )
        assert grant.status_code == 201, grant.content
    return client


def _upload(client) -> str:
    consent_id = give_consent(client)
    response = client.post(
        "/api/v1/avatars",
        {
            "consent": consent_id,
            "front_photo": SimpleUploadedFile("front.jpg", P.front_photo()),
            "photos": [
                SimpleUploadedFile(f"{i}.jpg", d) for i, d in enumerate(P.same_person_photos(4))
            ],
            "train_lora": "true",
        },
        format="multipart",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["tier"] is None and body["stages"]["instant"]["status"] == "pending"
    assert body["stages"]["lora"]["status"] == "waiting"
    return body["id"]


def _wait_avatar(client, avatar_id: str, condition, what: str) -> dict:
    def check():
        body = client.get(f"/api/v1/avatars/{avatar_id}").json()
        if body.get("status") == "failed":
            pytest.fail(f"avatar failed: {body}")
        return body if condition(body) else None

    return wait_for(check, timeout=180, interval=0.3, what=what)


def _generate(client, template_id, avatar_id: str, identity: str) -> dict:
    response = client.post(
        "/api/v1/generations",
        {"template": str(template_id), "avatar": avatar_id, "identity": identity},
        format="json",
    )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    def done():
        body = client.get(f"/api/v1/generations/{job_id}").json()
        return body if body["status"] in ("succeeded", "failed", "canceled") else None

    body = wait_for(done, timeout=180, interval=0.3, what=f"{identity} generation")
    assert body["status"] == "succeeded", body
    assert body["identity"] == identity
    # Scored against the avatar's reference embedding (null: no face found, as on the tiny
    # random-weight model's 64 px images).
    assert body["output"] and all("likeness" in o for o in body["output"])
    return body


def _rows_naming(value: str) -> dict[str, int]:
    """Rows of every table of the database whose text form contains `value` (the audit trail
    excepted: it keeps who did what, never the data)."""
    found = {}
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            if table == "avatars_auditevent":
                continue
            quoted = connection.ops.quote_name(table)
            # The table name comes from the database itself, quoted.
            sql = f"SELECT count(*) FROM {quoted} t WHERE t::text LIKE %s"  # noqa: S608
            cursor.execute(sql, [f"%{value}%"])
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


def test_instant_tier_renders_before_the_lora_trains(
    celery_worker, start_worker, consumer_key, make_user, tiny_models
):
    template = published_template(owner=make_user("designer"))
    client = _consumer(consumer_key, "instant-1")

    # Only a render-lane worker: the training job cannot start until the session worker
    # (which also serves the training lane) is back.
    with celery_worker.paused():
        render_worker = start_worker("it-render", queues=RENDER_ONLY)
        avatar_id = _upload(client)
        body = _wait_avatar(client, avatar_id, lambda b: b["tier"] == "instant", "the instant tier")
        assert body["status"] == "training" and body["identities"] == ["instant"]
        assert body["stages"]["lora"]["status"] == "queued"
        assert body["stages"]["lora"]["eta_seconds"] > 0

        _generate(client, template.pk, avatar_id, "instant")
        training = RenderJob.objects.get(avatar_id=avatar_id, kind="training")
        assert training.status == "queued" and training.started_at is None
        # The uploads are gone; only the checked crops the LoRA needs remain, encrypted.
        stored = list_objects(f"avatars/{avatar_id}")
        assert stored and all("/photos/" in name for name in stored)
        conflict = client.post(
            "/api/v1/generations",
            {"template": str(template.pk), "avatar": avatar_id, "identity": "lora"},
            format="json",
        )
        assert conflict.status_code == 409 and "lora" in conflict.json()["error"]["message"]
        render_worker.stop()

    body = _wait_avatar(client, avatar_id, lambda b: b["status"] == "ready", "the LoRA")
    assert body["tier"] == "studio" and body["identities"] == ["both", "lora", "instant"]
    assert body["stages"]["lora"]["status"] == "ready"
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]
    _generate(client, template.pk, avatar_id, "lora")


def test_erasure_mid_way_leaves_no_embedding_photo_or_lora(
    celery_worker, start_worker, consumer_key, tiny_models
):
    client = _consumer(consumer_key, "instant-2")
    with celery_worker.paused():
        render_worker = start_worker("it-render-2", queues=RENDER_ONLY)
        avatar_id = _upload(client)
        _wait_avatar(client, avatar_id, lambda b: b["tier"] == "instant", "the instant tier")
        render_worker.stop()
        # Mid-way: the instant tier exists (embeddings in the row, crops in storage), the
        # LoRA's job waits in the queue.
        avatar = Avatar.objects.get(pk=avatar_id)
        assert avatar.identity_embedding and avatar.reference_embedding
        assert AvatarPhoto.objects.filter(avatar_id=avatar_id).exists()
        assert list_objects(f"avatars/{avatar_id}")

        job_ids = list(RenderJob.objects.filter(avatar_id=avatar_id).values_list("pk", flat=True))
        assert len(job_ids) == 2  # the intake (done) and the LoRA's (queued)
        receipt = client.post("/api/v1/me/erase")
        assert receipt.status_code == 200, receipt.content
        assert receipt.json()["counts"]["avatars"] == 1

    assert list_objects(f"avatars/{avatar_id}") == []
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert not RenderJob.objects.filter(pk__in=job_ids).exists()  # specs and all
    assert _rows_naming(avatar_id) == {}
