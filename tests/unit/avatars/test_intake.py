"""Consent and photo intake: bad uploads get a per-photo 400 and nothing is stored."""

import io

import pytest
from PIL import Image

from avatars import crypto
from avatars.models import AuditEvent, Avatar, ConsentRecord

from ... import photos as P
from ...storage_utils import list_objects
from .conftest import give_consent, upload

pytestmark = pytest.mark.django_db


def test_consent_current_lists_separate_items_and_promises(consumer):
    body = consumer("alice").get("/api/v1/consent/current").json()
    assert [item["key"] for item in body["items"]] == ["face_processing", "identity_check"]
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


BAD_UPLOADS = {
    "truncated": (P.truncated, "not_an_image"),
    "text_named_jpg": (P.text_file, "not_an_image"),
    "svg": (P.svg, "not_an_image"),
    "png_bomb": (P.png_bomb, "image_too_large"),
    "different_person": (P.different_person, "different_person"),
    "no_face": (P.no_face, "no_face"),
    "two_faces": (P.two_faces, "multiple_faces"),
}


@pytest.mark.parametrize("kind", sorted(BAD_UPLOADS))
def test_bad_photo_gets_400_with_reason_and_nothing_is_stored(consumer, kind):
    make, code = BAD_UPLOADS[kind]
    client = consumer("alice")
    consent_id = give_consent(client)
    photos = P.same_person_photos(2) + [make()]
    response = upload(client, consent_id, photos, names=["a.jpg", "b.jpg", "c.jpg"])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert {"field": "photos.2", "code": code} in [
        {k: d[k] for k in ("field", "code")} for d in error["details"]
    ]
    assert error["fields"]["photos.2"][0]
    assert "Nothing was stored" in error["message"]
    assert Avatar.objects.count() == 0
    assert list_objects("avatars") == []


def test_front_photo_without_face_is_rejected(consumer):
    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(3), front=P.no_face())
    assert response.status_code == 400
    assert response.json()["error"]["details"][0] == {
        "field": "front_photo",
        "code": "no_face",
        "reason": response.json()["error"]["details"][0]["reason"],
    }
    assert list_objects("avatars") == []


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


def test_gps_exif_photo_is_accepted_and_stored_bytes_hold_no_metadata(consumer):
    client = consumer("alice")
    photos = P.same_person_photos(2) + [P.with_gps_exif()]
    assert b"SecretPhoneMaker" in photos[2]
    response = upload(client, give_consent(client), photos)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["queue"]["position"] == 0
    avatar = Avatar.objects.get(pk=body["id"])

    stored = list_objects(f"avatars/{avatar.id}/photos")
    assert len(stored) == 3
    data_key = crypto.unwrap_data_key(bytes(avatar.wrapped_data_key), owner_id=str(avatar.id))
    from django.core.files.storage import default_storage

    for photo in avatar.photos.all():
        with default_storage.open(photo.storage_name, "rb") as handle:
            sealed = handle.read()
        assert b"SecretPhoneMaker" not in sealed
        plain = crypto.decrypt_blob(
            sealed, data_key=data_key, owner_id=str(avatar.id), purpose=f"photo:{photo.index}"
        )
        image = Image.open(io.BytesIO(plain))
        assert image.format == "PNG" and image.size == (512, 512)
        assert not image.getexif() and "exif" not in image.info
        assert b"Exif" not in plain and b"SecretPhoneMaker" not in plain


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
