"""Consent and photo intake: what is not an image (or too large) gets a per-photo 400 at upload
and nothing is stored; what screening in the training job rejects fails the avatar with a
per-photo reason, refunded, its photos deleted."""

import io
import json

import pytest
from PIL import Image

from avatars.intake import screen_photos
from avatars.models import AuditEvent, Avatar, ConsentRecord
from generations.webhooks import job_event_payload
from jobs.models import RenderJob

from ... import photos as P
from ...factories import give_consent
from ...storage_utils import list_objects
from ...streams import stream_text
from .conftest import train, upload

pytestmark = pytest.mark.django_db


def test_consent_current_lists_separate_items_and_promises(consumer):
    body = consumer("alice").get("/api/v1/consent/current").json()
    assert [item["key"] for item in body["items"]] == [
        "face_processing",
        "identity_check",
        "identity_embedding",
    ]
    assert len(body["hash"]) == 64 and body["version"]
    assert any("never used to train" in promise for promise in body["promises"])
    assert "18" in body["age_confirmation"]


def test_consent_record_keeps_text_hash_and_owner(consumer):
    client = consumer("alice")
    consent_id = give_consent(client)
    record = ConsentRecord.objects.get(pk=consent_id)
    assert record.end_user.external_ref == "alice"
    assert "face embedding" in record.text_shown
    assert record.agreement_hash == client.get("/api/v1/consent/current").json()["hash"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"agreement_hash": "0" * 64}, "agreement_hash"),
        ({"items": ["face_processing"]}, "items"),
        ({"age_confirmation": "child"}, "age_confirmation"),
    ],
)
def test_consent_must_match_current_agreement_every_item_and_age(consumer, change, field):
    client = consumer("alice")
    current = client.get("/api/v1/consent/current").json()
    body = {
        "agreement_hash": current["hash"],
        "items": [i["key"] for i in current["items"]],
        "age_confirmation": "adult",
        **change,
    }
    response = client.post("/api/v1/consents", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_no_consent_no_upload(consumer):
    response = upload(
        consumer("alice"), "00000000-0000-0000-0000-000000000000", P.same_person_photos(3)
    )
    assert response.status_code == 400
    assert "consent" in response.json()["error"]["fields"]
    assert list_objects("avatars") == []


def test_another_end_users_consent_cannot_be_used(consumer):
    consent_id = give_consent(consumer("alice"))
    response = upload(consumer("bob"), consent_id, P.same_person_photos(3))
    assert response.status_code == 400 and "consent" in response.json()["error"]["fields"]


REFUSED_AT_THE_DOOR = {
    "text_named_jpg": (P.text_file, "not_an_image"),
    "svg": (P.svg, "not_an_image"),
    "png_bomb": (P.png_bomb, "image_too_large"),
}
REJECTED_BY_SCREENING = {
    "truncated": (P.truncated, "not_an_image"),
    "different_person": (P.different_person, "different_person"),
    "no_face": (P.no_face, "no_face"),
    "two_faces": (P.two_faces, "multiple_faces"),
}


def _codes(details: list[dict]) -> dict[str, str]:
    return {d["field"]: d["code"] for d in details}


@pytest.mark.parametrize("kind", sorted(REFUSED_AT_THE_DOOR))
def test_not_an_image_or_too_many_pixels_gets_400_at_upload_and_nothing_is_stored(consumer, kind):
    make, code = REFUSED_AT_THE_DOOR[kind]
    client = consumer("alice")
    consent_id = give_consent(client)
    photos = P.same_person_photos(2) + [make()]
    response = upload(client, consent_id, photos, names=["a.jpg", "b.jpg", "c.jpg"])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert _codes(error["details"]) == {"photos.2": code}
    assert error["fields"]["photos.2"][0]
    assert "Nothing was stored" in error["message"]
    assert Avatar.objects.count() == 0
    assert list_objects("avatars") == []


@pytest.mark.parametrize("kind", sorted(REJECTED_BY_SCREENING))
def test_unusable_photo_fails_the_avatar_in_its_job_with_the_reason_refunded_and_deleted(
    consumer, kind
):
    make, code = REJECTED_BY_SCREENING[kind]
    client = consumer("alice")
    balances = client.get("/api/v1/credits").json()["balances"]
    photos = P.same_person_photos(2) + [make()]
    response = upload(client, give_consent(client), photos, names=["a.jpg", "b.jpg", "c.jpg"])
    assert response.status_code == 202, response.content
    avatar_id = response.json()["id"]
    assert response.json()["photo_issues"] == []  # nothing decoded in the request

    train(avatar_id)

    body = client.get(f"/api/v1/avatars/{avatar_id}").json()
    assert body["status"] == "failed"
    assert body["failure"]["code"] == "too_few_usable_photos"
    assert "not charged" in body["failure"]["reason"]
    assert _codes(body["photo_issues"]) == {"photos.2": code}
    assert all(issue["reason"] for issue in body["photo_issues"])
    job = RenderJob.objects.get(avatar_id=avatar_id)
    assert job.status == "failed" and job.error_code == "too_few_usable_photos"
    # Webhook payloads carry the same per-photo reasons.
    payload = job_event_payload(job)
    assert _codes(payload["error"]["details"]) == {"photos.2": code}
    assert client.get("/api/v1/credits").json()["balances"] == balances  # refunded
    assert list_objects(f"avatars/{avatar_id}") == []


def test_front_photo_without_face_fails_the_avatar_naming_the_front_photo(consumer):
    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(3), front=P.no_face())
    assert response.status_code == 202, response.content
    train(response.json()["id"])
    body = client.get(f"/api/v1/avatars/{response.json()['id']}").json()
    assert body["status"] == "failed" and body["failure"]["code"] == "front_photo_unusable"
    assert body["photo_issues"] == [
        {"field": "front_photo", "code": "no_face", "reason": body["photo_issues"][0]["reason"]}
    ]
    assert list_objects("avatars") == []


def test_front_photo_that_is_not_an_image_gets_400_at_upload(consumer):
    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(3), front=P.svg())
    assert response.status_code == 400
    assert _codes(response.json()["error"]["details"]) == {"front_photo": "not_an_image"}
    assert list_objects("avatars") == []


def test_a_dropped_photo_is_reported_and_the_avatar_trains_on_the_rest(consumer, settings):
    client = consumer("alice")
    photos = P.same_person_photos(3) + [P.text_file(), P.no_face()]
    response = upload(client, give_consent(client), photos)
    assert response.status_code == 202, response.content
    created = response.json()
    assert _codes(created["photo_issues"]) == {"photos.3": "not_an_image"}  # at the door
    assert created["photo_count"] == 4

    train(created["id"])

    body = client.get(f"/api/v1/avatars/{created['id']}").json()
    assert body["status"] == "ready", body
    assert _codes(body["photo_issues"]) == {"photos.3": "not_an_image", "photos.4": "no_face"}
    assert body["photo_count"] == 3


def test_header_over_the_pixel_budget_is_refused_without_decoding_anything(
    consumer, settings, monkeypatch
):
    """The probe's case: photos declaring 9000x9000 in a few KB. The request reads headers
    only; no pixel of any photo is decoded in the web process."""
    from PIL import ImageFile

    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(image):
        decoded.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    client = consumer("alice")
    huge = P.png(Image.new("RGB", (9000, 9000), "grey"))
    decoded.clear()
    response = upload(client, give_consent(client), [huge] * 3, front=P.front_photo())
    assert response.status_code == 400, response.content
    assert set(_codes(response.json()["error"]["details"]).values()) == {"image_too_large"}
    assert decoded == []
    assert list_objects("avatars") == []


def test_upload_over_the_request_pixel_budget_is_refused(consumer, settings):
    client = consumer("alice")
    photos = P.same_person_photos(3)
    settings.AVATAR_UPLOAD_MAX_PIXELS = 3 * 1024 * 1024  # the front photo and two more
    response = upload(client, give_consent(client), photos)
    assert response.status_code == 400
    assert "megapixels" in response.json()["error"]["fields"]["photos"][0]
    assert Avatar.objects.count() == 0 and list_objects("avatars") == []


def test_avatar_events_stream_reports_screening_outcome(consumer, settings):
    settings.SSE_MAX_SECONDS = 0
    client = consumer("alice")
    photos = P.same_person_photos(2) + [P.no_face()]
    avatar_id = upload(client, give_consent(client), photos).json()["id"]
    train(avatar_id)
    response = client.get(f"/api/v1/avatars/{avatar_id}/events", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    text = stream_text(response)
    event = json.loads(text.split("data: ", 1)[1].split("\n", 1)[0])
    assert event["status"] == "failed"
    assert _codes(event["photo_issues"]) == {"photos.2": "no_face"}
    other = consumer("bob").get(
        f"/api/v1/avatars/{avatar_id}/events", HTTP_ACCEPT="text/event-stream"
    )
    assert other.status_code == 404 and other.json()["error"]["status"] == 404


def test_photo_count_limits(consumer, settings):
    settings.AVATAR_MAX_PHOTOS = 3
    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(4))
    assert response.status_code == 400 and "photos" in response.json()["error"]["fields"]


def test_upload_over_byte_limit_is_rejected(consumer, settings):
    client = consumer("alice")
    photos = P.same_person_photos(2) + [P.png(P.astronaut())]
    settings.AVATAR_PHOTO_MAX_BYTES = max(len(p) for p in photos[:2] + [P.front_photo()])
    assert len(photos[2]) > settings.AVATAR_PHOTO_MAX_BYTES  # the PNG is far larger
    response = upload(client, give_consent(client), photos)
    assert response.status_code == 400
    codes = {d["field"]: d["code"] for d in response.json()["error"]["details"]}
    assert codes.get("photos.2") == "file_too_large"


def test_gps_exif_photo_is_stored_encrypted_and_screened_into_crops_without_metadata(consumer):
    client = consumer("alice")
    photos = P.same_person_photos(2) + [P.with_gps_exif()]
    assert b"SecretPhoneMaker" in photos[2]
    response = upload(client, give_consent(client), photos)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["queue"]["position"] == 0
    avatar = Avatar.objects.get(pk=body["id"])

    # Until screening, the photos are held as received, encrypted: no plaintext metadata.
    stored = list_objects(f"avatars/{avatar.id}/uploads")
    assert len(stored) == 4  # the front photo and three more
    from django.core.files.storage import default_storage

    for photo in avatar.photos.all():
        with default_storage.open(photo.storage_name, "rb") as handle:
            assert b"SecretPhoneMaker" not in handle.read()

    # Screening keeps face crops made of pixels only.
    screened = screen_photos(
        front=P.front_photo(), photos=dict(enumerate(photos)), count=len(photos)
    )
    assert len(screened.crops) == 3 and screened.dropped == []
    for crop in screened.crops:
        assert crop.size == (512, 512)
        assert not crop.getexif() and crop.info == {}
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        assert b"Exif" not in buffer.getvalue() and b"SecretPhoneMaker" not in buffer.getvalue()


def test_quota_on_avatars_in_flight(consumer, settings):
    settings.AVATAR_MAX_IN_FLIGHT = 1
    client = consumer("alice")
    consent_id = give_consent(client)
    assert upload(client, consent_id, P.same_person_photos(3)).status_code == 202
    second = upload(client, consent_id, P.same_person_photos(3))
    assert second.status_code == 409
    assert "limit 1" in second.json()["error"]["message"]


def test_photos_uploaded_is_audited_without_data(consumer):
    client = consumer("alice")
    body = upload(client, give_consent(client), P.same_person_photos(3)).json()
    event = AuditEvent.objects.get(action="photos_uploaded")
    assert event.object_id == body["id"] and event.actor.startswith("client:")
    assert event.end_user.external_ref == "alice"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"consent": "not-a-uuid"},
        {"photos": "just a string"},
        {"front_photo": "not a file", "photos": ["x"]},
    ],
    ids=["empty", "bad-consent", "photos-not-files", "front-not-file"],
)
def test_malformed_upload_requests_are_400_never_500(consumer, body):
    client = consumer("alice")
    consent_id = give_consent(client)
    response = client.post("/api/v1/avatars", {"consent": consent_id, **body}, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]


def test_random_bytes_are_rejected_per_photo_and_empty_files_by_field(consumer):
    import os

    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(2) + [os.urandom(5000)])
    assert response.status_code == 400
    codes = {d["field"]: d["code"] for d in response.json()["error"]["details"]}
    assert codes == {"photos.2": "not_an_image"}

    empty = upload(client, give_consent(client), P.same_person_photos(2) + [b""])
    assert empty.status_code == 400
    assert any(f.startswith("photos") for f in empty.json()["error"]["fields"])


def test_end_user_erased_during_the_upload_gets_409_and_nothing_is_stored(consumer):
    """The erasure wins: the upload that was being checked meanwhile stores nothing."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from avatars import services
    from avatars.intake import receive_photos
    from workstation.errors import ConflictError

    client = consumer("alice")
    consent = ConsentRecord.objects.get(pk=give_consent(client))
    end_user = consent.end_user
    received = receive_photos(
        front=SimpleUploadedFile("front.jpg", P.front_photo()),
        photos=[SimpleUploadedFile(f"{i}.jpg", d) for i, d in enumerate(P.same_person_photos(3))],
    )
    avatar = Avatar(end_user=end_user, consent=consent)
    assert client.post("/api/v1/me/erase").status_code == 200
    with pytest.raises(ConflictError, match="erased"):
        services._store_uploads_and_enqueue(avatar, received, train_lora=True)
    assert Avatar.objects.count() == 0 and list_objects("avatars") == []


def test_screening_again_on_a_redelivered_job_reports_each_issue_once(consumer):
    from avatars import crypto, services

    client = consumer("alice")
    photos = P.same_person_photos(3) + [P.text_file(), P.no_face()]
    avatar_id = upload(client, give_consent(client), photos).json()["id"]
    avatar = Avatar.objects.get(pk=avatar_id)
    data_key = crypto.unwrap_data_key(bytes(avatar.wrapped_data_key), owner_id=avatar_id)
    for _ in range(2):  # the first attempt's worker died after screening
        services._screen_stored_uploads(Avatar.objects.get(pk=avatar_id), data_key)
    avatar.refresh_from_db()
    assert [(i["field"], i["code"]) for i in avatar.photo_issues] == [
        ("photos.3", "not_an_image"),
        ("photos.4", "no_face"),
    ]
    assert avatar.photo_count == 3


def test_training_job_given_up_by_the_queue_fails_its_avatar_at_once(consumer):
    """E.g. its worker died on every attempt: the sweeper fails the job (refunded), and the
    avatar fails with it, its photos deleted, instead of waiting for the retention sweep."""
    from django.db import transaction

    from jobs.finishing import job_finished_without_running

    client = consumer("alice")
    balances = client.get("/api/v1/credits").json()["balances"]
    avatar_id = upload(client, give_consent(client), P.same_person_photos(3)).json()["id"]
    job = RenderJob.objects.get(avatar_id=avatar_id)
    with transaction.atomic():
        RenderJob.objects.select_for_update().get(pk=job.pk)
        job_finished_without_running(
            job, status="failed", code="worker_lost", message="The worker stopped. Not charged."
        )
    avatar = Avatar.objects.get(pk=avatar_id)
    assert (avatar.status, avatar.failure_code) == ("failed", "worker_lost")
    assert list_objects(f"avatars/{avatar_id}") == []
    assert client.get("/api/v1/credits").json()["balances"] == balances


def test_a_crash_while_screening_fails_the_avatar_and_deletes_the_photos(consumer, monkeypatch):
    from avatars import services

    def broken(**kwargs):
        raise RuntimeError("face model crashed")

    monkeypatch.setattr(services, "screen_photos", broken)
    client = consumer("alice")
    avatar_id = upload(client, give_consent(client), P.same_person_photos(3)).json()["id"]
    train(avatar_id)
    avatar = Avatar.objects.get(pk=avatar_id)
    assert (avatar.status, avatar.failure_code) == ("failed", "internal_error")
    assert "not charged" in avatar.failure_reason
    assert list_objects(f"avatars/{avatar_id}") == []
