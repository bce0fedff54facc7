"""The production storage path on an S3-compatible server (moto on loopback, tests/s3.py).

Django's default storage is S3 in this process (the `s3_storage` fixture) and in the worker
process the flow starts (STORAGE_BACKEND=s3 and S3_* in its environment, as production sets
them). What the server holds is checked with a plain S3 client, never through the storage.
"""

from __future__ import annotations

import types
from datetime import timedelta
from unittest import mock

import pytest
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from avatars import crypto
from avatars.models import Avatar
from jobs.models import RenderJob
from workstation.storage import delete_objects

from .. import photos as P
from ..factories import give_consent, published_template
from ..storage_utils import list_objects
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_objects_are_private_encrypted_never_overwritten_and_deleted(s3_storage, api):
    s3 = s3_storage
    first = default_storage.save("probe/same.bin", ContentFile(b"first"))
    second = default_storage.save("probe/same.bin", ContentFile(b"second"))

    # No overwrite: the second save gets its own name, and both objects keep their bytes.
    assert first == "probe/same.bin" and second != first
    assert s3.keys("probe/") == {s3.key(first), s3.key(second)}
    assert s3.read(s3.key(first)) == b"first" and s3.read(s3.key(second)) == b"second"
    for name in (first, second):
        s3.assert_private_and_encrypted(s3.key(name))

    # Should anything ask the storage for a URL, it is presigned and short-lived.
    url = default_storage.url(first)
    assert "Signature=" in url or "X-Amz-Signature=" in url, url
    assert s3.prefix in url

    assert delete_objects([first, second]) == 2
    assert s3.keys("probe/") == set()
    assert list_objects("probe") == []

    # The readiness probe writes, reads back and deletes a real object on the server.
    health = api.get("/api/v1/health").json()
    assert health["components"]["storage"] == {"ready": True, "detail": "S3Storage"}
    assert s3.keys("health/") == set()


def _consumer(consumer_key, end_user: str) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {consumer_key('partner')}", HTTP_X_END_USER=end_user
    )
    return client


def _upload_avatar(client: APIClient) -> str:
    from django.core.files.uploadedfile import SimpleUploadedFile

    grant = client.post(
        "/api/v1/credits/grants",
        {"credit_type": "avatar", "amount": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="s3-order-1",
    )
    assert grant.status_code == 201, grant.content
    consent_id = give_consent(client)
    response = client.post(
        "/api/v1/avatars",
        {
            "consent": consent_id,
            "front_photo": SimpleUploadedFile("front.jpg", P.front_photo()),
            "photos": [
                SimpleUploadedFile(f"{i}.jpg", d) for i, d in enumerate(P.same_person_photos(4))
            ],
        },
        format="multipart",
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _lora_key_opens(copy: bytes, avatar_id: str, wrapped: bytes | memoryview | None) -> bool:
    try:
        data_key = crypto.unwrap_data_key(wrapped, owner_id=avatar_id)
        crypto.decrypt_blob(copy, data_key=data_key, owner_id=avatar_id, purpose="lora")
    except crypto.DecryptionError:
        return False
    return True


def test_avatar_generation_download_erasure_on_s3(
    s3_worker, s3_storage, consumer_key, make_user, settings
):
    s3 = s3_storage
    settings.AVATAR_MIN_PHOTOS = 4
    settings.AVATAR_MIN_USABLE_PHOTOS = 4
    settings.OUTPUT_URL_TTL_S = 60
    client = _consumer(consumer_key, "s3-user")
    before = s3.keys()

    # Photos: on the server sealed, private and encrypted at rest. The upload's transaction is
    # held open while they are looked at: the training token goes out only at commit.
    with transaction.atomic():
        avatar_id = _upload_avatar(client)
        uploaded = s3.keys() - before
        assert uploaded, "the upload stored nothing on the S3 server"
        for key in uploaded:
            s3.assert_private_and_encrypted(key)
        photo_copies = {key: s3.read(key) for key in uploaded}  # a "backup" taken now
    assert all(blob.startswith(crypto.BLOB_MAGIC) for blob in photo_copies.values())

    # Training in a worker process that reads the photos from S3 and writes the LoRA there.
    worker = s3_worker
    worker.wait_ready()

    def trained():
        body = client.get(f"/api/v1/avatars/{avatar_id}").json()
        return body if body["status"] in ("ready", "failed") else None

    body = wait_for(trained, timeout=180, interval=0.5, what="avatar training on S3")
    assert body["status"] == "ready", (body, worker.log()[-3000:])
    lora_key = s3.key(f"avatars/{avatar_id}/lora.bin")
    assert s3.keys(f"avatars/{avatar_id}/") == {lora_key}  # the photos went after training
    assert not (set(photo_copies) & s3.keys())
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]
    s3.assert_private_and_encrypted(lora_key)
    lora_copy = s3.read(lora_key)
    avatar = Avatar.objects.get(pk=avatar_id)
    assert _lora_key_opens(lora_copy, avatar_id, avatar.wrapped_data_key)  # for now

    # Output: rendered by the worker with the LoRA from S3, stored there, served by signed link.
    template = published_template(owner=make_user("designer"), steps=2, candidates=1)
    created = client.post(
        "/api/v1/generations",
        {"template": str(template.pk), "avatar": avatar_id},
        format="json",
    )
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]

    def rendered():
        job = client.get(f"/api/v1/generations/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_for(rendered, timeout=120, interval=0.5, what="generation on S3")
    assert job["status"] == "succeeded", (job, worker.log()[-3000:])
    [output] = job["output"]
    output_key = s3.key(RenderJob.objects.get(pk=job_id).outputs.get().storage_name)
    assert output_key.startswith(s3.key(f"renders/{job_id}/"))
    s3.assert_private_and_encrypted(output_key)
    issued = timezone.now()
    expires_at = parse_datetime(output["expires_at"])
    assert expires_at is not None
    assert abs(expires_at - (issued + timedelta(seconds=60))) < timedelta(seconds=10)

    anyone = APIClient()  # the link is the credential: no session, no key
    response = anyone.get(output["url"])
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content) == s3.read(output_key)

    # The link expires: the signature's clock moved just before, then just past the TTL.
    now = signing.time.time()
    for offset, status in ((55, 200), (62, 404)):
        later = types.SimpleNamespace(time=lambda offset=offset: now + offset)
        with mock.patch.object(signing, "time", later):
            assert anyone.get(output["url"]).status_code == status, offset
    token = output["url"].rstrip("/").rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert anyone.get(f"/api/v1/files/{tampered}").status_code == 404

    # Erasure: every object this end user caused is gone from the server (listed, not trusted).
    created_keys = s3.keys() - before
    assert created_keys == {lora_key, output_key}
    receipt = client.post("/api/v1/me/erase").json()
    assert receipt["counts"]["avatars"] == 1 and receipt["counts"]["generated_images"] == 1
    assert s3.keys() == before
    assert s3.keys(f"avatars/{avatar_id}/") == set() and s3.keys(f"renders/{job_id}/") == set()
    assert anyone.get(output["url"]).status_code == 404

    # The copies taken before erasure stay sealed: they opened only with the avatar's wrapped
    # data key (checked above), which went with its row.
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert all(blob.startswith(crypto.BLOB_MAGIC) for blob in [lora_copy, *photo_copies.values()])
