"""The avatar flow on real services: consent, intake, training in a worker process, deletion."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from avatars.models import Avatar, ErasureReceipt
from workstation.accounts.models import EndUser

from .. import photos as P
from ..factories import give_consent
from ..storage_utils import list_objects
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_consent_upload_train_export_erase(celery_worker, consumer_key, settings):
    settings.AVATAR_MIN_PHOTOS = 4
    settings.AVATAR_MIN_USABLE_PHOTOS = 4
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {consumer_key('partner')}", HTTP_X_END_USER="user-7"
    )

    grant = client.post(
        "/api/v1/credits/grants",
        {"credit_type": "avatar", "amount": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-1001",
    )
    assert grant.status_code == 201
    consent_id = give_consent(client)

    photos = P.same_person_photos(4) + [P.no_face()]
    response = client.post(
        "/api/v1/avatars",
        {
            "consent": consent_id,
            "front_photo": SimpleUploadedFile("front.jpg", P.front_photo()),
            "photos": [SimpleUploadedFile(f"{i}.jpg", d) for i, d in enumerate(photos)],
        },
        format="multipart",
    )
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["photo_issues"] == []  # screening happens in the worker, not the request
    avatar_id = created["id"]

    def finished():
        body = client.get(f"/api/v1/avatars/{avatar_id}").json()
        return body if body["status"] in ("ready", "failed") else None

    body = wait_for(finished, timeout=180, interval=0.5, what="avatar training")
    assert body["status"] == "ready", (body, celery_worker.log()[-3000:])
    assert body["photo_issues"] == [
        {"field": "photos.4", "code": "no_face", "reason": body["photo_issues"][0]["reason"]}
    ]
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]

    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/v1/me/export").content))
    assert avatar_id in archive.read("export.json").decode()

    credits = client.get("/api/v1/credits").json()
    assert credits["balances"]["avatar"] == 0  # charged once for one trained avatar

    receipt = client.post("/api/v1/me/erase").json()
    assert receipt["counts"]["avatars"] == 1
    assert list_objects(f"avatars/{avatar_id}") == []
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert not EndUser.objects.filter(external_ref="user-7").exists()
    assert ErasureReceipt.objects.count() == 1
