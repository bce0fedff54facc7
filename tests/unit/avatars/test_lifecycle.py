"""Training, scoping, export, erasure, retention and key rotation of avatars."""

import io
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.utils import timezone

from avatars import crypto, services
from avatars.models import AuditEvent, Avatar, AvatarStatus, ConsentRecord, ErasureReceipt
from generations.kinds import GENERATION
from jobs.models import RenderJob, RenderOutput
from workstation.accounts.models import EndUser

from ... import photos as P
from ...factories import give_consent
from ...storage_utils import list_objects
from .conftest import intake, train, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_avatar(consumer):
    def make(end_user: str = "alice", key: str | None = None) -> str:
        client = consumer(end_user, key)
        response = upload(client, give_consent(client), P.same_person_photos(3))
        assert response.status_code == 202, response.content
        return response.json()["id"]

    return make


def test_training_succeeds_and_photos_are_gone_from_storage(make_avatar, consumer, tiny_models):
    avatar_id = make_avatar()
    # Held encrypted as received (the front photo and three more) until the job screens them.
    assert len(list_objects(f"avatars/{avatar_id}/uploads")) == 4
    train(avatar_id)

    body = consumer("alice").get(f"/api/v1/avatars/{avatar_id}").json()
    assert body["status"] == "ready", body
    assert body["progress"]["step"] == body["progress"]["total"] > 0
    assert body["queue"] is None and body["failure"] is None
    assert list_objects(f"avatars/{avatar_id}/uploads") == []  # listed, not trusted
    assert body["photo_count"] == 3 and body["photo_issues"] == []
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]

    avatar = Avatar.objects.get(pk=avatar_id)
    assert avatar.photos.count() == 0
    from engine.training import lora_from_bytes

    lora = lora_from_bytes(services.avatar_lora_bytes(avatar=avatar))
    assert lora.state_dict and lora.metadata["rank"] == django_settings.AVATAR_TRAINING_RANK
    with default_storage.open(avatar.lora_object, "rb") as handle:
        assert handle.read().startswith(crypto.BLOB_MAGIC)  # encrypted at rest
    embedding = services.avatar_reference_embedding(avatar=avatar)
    assert embedding.shape == (128,)


def test_redelivered_training_message_trains_once(make_avatar, tiny_models):
    avatar_id = make_avatar()
    train(avatar_id)
    finished = Avatar.objects.get(pk=avatar_id).finished_at
    train(avatar_id)  # the same job again: already succeeded, nothing happens
    avatar = Avatar.objects.get(pk=avatar_id)
    # One intake run and one training run, each once.
    assert avatar.attempts == 2 and avatar.finished_at == finished
    assert sorted(avatar.jobs.values_list("kind", "status")) == [
        ("avatar_intake", "succeeded"),
        ("training", "succeeded"),
    ]


def test_dead_workers_lease_expires_and_the_job_runs_again(make_avatar, tiny_models):
    from jobs import dispatch
    from jobs.models import JobStatus

    avatar_id = make_avatar()
    intake(avatar_id)
    job = Avatar.objects.get(pk=avatar_id).jobs.get(kind="training")
    claimed = dispatch.claim_next(lane="training", worker="doomed")
    assert claimed.pk == job.pk  # the doomed worker "dies" here, holding the lease
    assert dispatch.sweep()["requeued"] == 0  # a live lease is left alone

    type(job).objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert dispatch.sweep()["requeued"] == 1
    train(avatar_id)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert Avatar.objects.get(pk=avatar_id).status == AvatarStatus.READY


def test_training_failure_deletes_photos_and_records_reason(make_avatar, tiny_models, settings):
    """Without an instant tier the LoRA is the avatar: its failure fails the avatar
    (test_instant_tier covers a LoRA failing next to an instant tier)."""
    settings.AVATAR_INSTANT_TIER = False
    avatar_id = make_avatar()
    settings.AVATAR_TRAINING_RANK = 0  # an invalid recipe: the engine refuses it
    train(avatar_id)
    avatar = Avatar.objects.get(pk=avatar_id)
    assert avatar.status == AvatarStatus.FAILED
    assert avatar.failure_code == "training_error" and "not charged" in avatar.failure_reason
    assert list_objects(f"avatars/{avatar_id}") == []
    from credits.services import balance

    assert balance(end_user=avatar.end_user, credit_type="avatar") == 5  # refunded


def test_scoping_second_client_and_second_end_user_get_404(make_avatar, consumer, consumer_key):
    avatar_id = make_avatar("alice")
    other_client_key = consumer_key("partner-b")
    intruders = [consumer("bob"), consumer("alice", other_client_key)]
    for intruder in intruders:
        assert intruder.get(f"/api/v1/avatars/{avatar_id}").status_code == 404
        assert intruder.delete(f"/api/v1/avatars/{avatar_id}").status_code == 404
        assert intruder.get("/api/v1/avatars").json()["count"] == 0
        export = zipfile.ZipFile(io.BytesIO(intruder.get("/api/v1/me/export").content))
        manifest = export.read("export.json").decode()
        assert avatar_id not in manifest
        assert intruder.post("/api/v1/me/erase").status_code == 200
    assert Avatar.objects.filter(pk=avatar_id).exists()  # their erasure touched nothing of hers
    assert consumer("alice").get(f"/api/v1/avatars/{avatar_id}").status_code == 200


def test_studio_users_cannot_reach_consumer_data(make_avatar, signed_in, make_user):
    avatar_id = make_avatar()
    for role in ("designer", "reviewer", "operator"):
        client = signed_in(make_user(role))
        for method, path in [
            ("get", "/api/v1/avatars"),
            ("get", f"/api/v1/avatars/{avatar_id}"),
            ("delete", f"/api/v1/avatars/{avatar_id}"),
            ("get", "/api/v1/me/export"),
            ("post", "/api/v1/me/erase"),
        ]:
            assert getattr(client, method)(path).status_code in (403, 404), (role, path)
    assert Avatar.objects.filter(pk=avatar_id).exists()


def test_delete_avatar_removes_objects_and_row(make_avatar, consumer, tiny_models):
    avatar_id = make_avatar()
    train(avatar_id)
    assert consumer("alice").delete(f"/api/v1/avatars/{avatar_id}").status_code == 204
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert list_objects(f"avatars/{avatar_id}") == []


def test_export_holds_metadata_consents_and_generated_images(make_avatar, consumer, tiny_models):
    avatar_id = make_avatar()
    train(avatar_id)
    end_user = EndUser.objects.get(external_ref="alice")
    job = RenderJob.objects.create(kind=GENERATION, end_user=end_user, spec={})
    name = default_storage.save(f"renders/{job.id}/0.png", io.BytesIO(P.png(P.astronaut())))
    RenderOutput.objects.create(
        job=job, index=0, storage_name=name, width=1, height=1, seed=1, sha256="x"
    )

    response = consumer("alice").get("/api/v1/me/export")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    import json

    manifest = json.loads(archive.read("export.json"))
    assert [a["id"] for a in manifest["avatars"]] == [avatar_id]
    assert manifest["consents"][0]["text_shown"]
    assert archive.read(f"images/{job.id}/0.png").startswith(b"\x89PNG")
    assert AuditEvent.objects.filter(action="export").exists()


def test_erasure_leaves_only_the_receipt_and_copies_cannot_be_decrypted(
    make_avatar, consumer, tiny_models, tmp_path
):
    from credits.models import CreditEntry
    from jobs.models import OwnerTurn
    from jobs.runner import dispatch_once

    ready_id = make_avatar()
    dispatch_once(lane="render", worker="w")  # the intake; the fair claim remembers alice's turn
    dispatch_once(lane="training", worker="w")
    assert Avatar.objects.get(pk=ready_id).status == AvatarStatus.READY
    alice_turn = f"eu:{EndUser.objects.get(external_ref='alice').pk}"
    assert OwnerTurn.objects.filter(owner_key=alice_turn).exists()
    queued_id = make_avatar()  # photos still stored
    end_user = EndUser.objects.get(external_ref="alice")
    job = RenderJob.objects.create(
        kind=GENERATION, end_user=end_user, spec={"p": 1}, avatar_id=ready_id
    )  # deleting the avatar must not orphan it
    name = default_storage.save(f"renders/{job.id}/0.png", io.BytesIO(b"\x89PNG fake"))
    RenderOutput.objects.create(
        job=job, index=0, storage_name=name, width=1, height=1, seed=1, sha256="x"
    )
    bystander = make_avatar("bob")  # another end user's data stays

    copy = tmp_path / "storage-copy"
    shutil.copytree(Path(django_settings.MEDIA_ROOT), copy)
    copied_blobs = [p for p in copy.rglob("*.bin") if bystander not in str(p)]
    assert len(copied_blobs) == 1 + 4  # the ready avatar's LoRA, the queued one's uploads

    response = consumer("alice").post("/api/v1/me/erase")
    assert response.status_code == 200, response.content
    receipt = response.json()
    # render_jobs: the ready avatar's intake and training jobs, the queued one's intake job and
    # the generation.
    assert receipt["counts"] == {
        "avatars": 2,
        "photos": 4,
        "generated_images": 1,
        "render_jobs": 4,
        "consents": 2,
    }
    assert all(c["withdrawn_at"] for c in receipt["consents"])

    assert not EndUser.objects.filter(external_ref="alice").exists()
    assert not Avatar.objects.filter(pk__in=[ready_id, queued_id]).exists()
    assert not ConsentRecord.objects.filter(end_user__external_ref="alice").exists()
    assert not RenderJob.objects.filter(pk=job.pk).exists()
    assert AuditEvent.objects.filter(end_user__external_ref="alice").count() == 0
    assert not OwnerTurn.objects.filter(owner_key=alice_turn).exists()
    assert not CreditEntry.objects.exclude(end_user__external_ref="bob").exists()
    assert ErasureReceipt.objects.count() == 1
    leftovers = [n for n in list_objects() if bystander not in n and not n.startswith("health")]
    assert leftovers == []
    # No folder named by an erased avatar or job id is left behind either.
    erased_ids = {ready_id, queued_id, str(job.pk)}
    folders = [str(p) for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_dir()]
    assert [f for f in folders if any(i in f for i in erased_ids)] == []

    # The copied ciphertexts cannot be opened with anything the system still holds.
    remaining_keys = [
        (str(a.id), bytes(a.wrapped_data_key))
        for a in Avatar.objects.exclude(wrapped_data_key=None)
    ]
    for blob_path in copied_blobs:
        blob = blob_path.read_bytes()
        for owner, wrapped in remaining_keys:
            data_key = crypto.unwrap_data_key(wrapped, owner_id=owner)
            for purpose in ["lora"] + [f"upload:{i}" for i in range(4)]:
                with pytest.raises(crypto.DecryptionError):
                    crypto.decrypt_blob(blob, data_key=data_key, owner_id=owner, purpose=purpose)
    assert Avatar.objects.filter(pk=bystander).exists()


def test_withdrawing_consent_erases_its_avatars(make_avatar, consumer):
    avatar_id = make_avatar()
    consent_id = str(Avatar.objects.get(pk=avatar_id).consent_id)
    response = consumer("alice").post(f"/api/v1/consents/{consent_id}/withdraw")
    assert response.status_code == 200 and response.json()["avatars_erased"] == 1
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert list_objects(f"avatars/{avatar_id}") == []


def test_retention_notice_then_deletion_and_photo_hard_limit(make_avatar, tiny_models):
    ready_id = make_avatar()
    train(ready_id)
    stuck_id = make_avatar("bob")
    now = timezone.now()

    Avatar.objects.filter(pk=ready_id).update(last_used_at=now - timedelta(days=28))
    counts = services.retention_sweep(now=now)
    assert counts["notices"] == 1 and counts["avatars_deleted"] == 0
    assert Avatar.objects.get(pk=ready_id).deletion_notice_at is not None

    # Photos older than the hard limit go whatever the state; the avatar fails honestly.
    counts = services.retention_sweep(now=now + timedelta(hours=25))
    assert counts["photos_deleted"] == 4 and counts["avatars_deleted"] == 0
    stuck = Avatar.objects.get(pk=stuck_id)
    assert stuck.status == AvatarStatus.FAILED and stuck.failure_code == "photos_expired"
    assert list_objects(f"avatars/{stuck_id}") == []

    counts = services.retention_sweep(now=now + timedelta(days=3))
    assert counts["avatars_deleted"] == 1
    assert not Avatar.objects.filter(pk=ready_id).exists()
    assert list_objects(f"avatars/{ready_id}") == []


def test_master_key_rotation_rewraps_data_keys(make_avatar, settings, tiny_models):
    avatar_id = make_avatar()
    train(avatar_id)
    before = services.avatar_reference_embedding(avatar=Avatar.objects.get(pk=avatar_id))
    old = settings.DATA_MASTER_KEYS
    settings.DATA_MASTER_KEYS = f"{crypto.new_master_key_entry('k2')},{old}"
    assert services.master_keys_rotate() == 1
    avatar = Avatar.objects.get(pk=avatar_id)
    assert crypto.wrapped_key_id(bytes(avatar.wrapped_data_key)) == "k2"
    settings.DATA_MASTER_KEYS = settings.DATA_MASTER_KEYS.split(",")[0]  # old key removed
    assert (services.avatar_reference_embedding(avatar=avatar) == before).all()


def test_operator_test_avatars_are_separate_from_consumers(signed_in, operator, designer, consumer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = signed_in(operator)
    body = {
        "name": "Panel A",
        "gender": "female",
        "age_band": "30-44",
        "rights_declaration": "Photos of a consenting model; release on file.",
        "front_photo": SimpleUploadedFile("f.jpg", P.front_photo()),
        "photos": [
            SimpleUploadedFile(f"{i}.jpg", d) for i, d in enumerate(P.same_person_photos(3))
        ],
    }
    response = client.post("/api/v1/ops/test-avatars", body, format="multipart")
    assert response.status_code == 202, response.content
    test_id = response.json()["id"]
    assert Avatar.objects.get(pk=test_id).is_test_avatar
    assert client.get("/api/v1/ops/test-avatars").json()["count"] == 1
    assert signed_in(designer).get("/api/v1/ops/test-avatars").status_code == 403
    assert consumer("alice").get(f"/api/v1/avatars/{test_id}").status_code == 404

    missing = dict(body, rights_declaration="")
    missing["front_photo"] = SimpleUploadedFile("f.jpg", P.front_photo())
    assert client.post("/api/v1/ops/test-avatars", missing, format="multipart").status_code == 400


def test_avatar_queued_before_screening_moved_into_the_job_still_trains(make_avatar, tiny_models):
    """Avatars queued by the previous release hold prepared crops (`photo:<n>`), screened at
    upload; their training job trains on them without screening again."""
    avatar_id = make_avatar()
    avatar = Avatar.objects.get(pk=avatar_id)
    data_key = crypto.unwrap_data_key(bytes(avatar.wrapped_data_key), owner_id=avatar_id)
    for photo in list(avatar.photos.all()):
        default_storage.delete(photo.storage_name)
        photo.delete()
    for index in range(3):
        buffer = io.BytesIO()
        P.astronaut().resize((512, 512)).save(buffer, format="PNG")
        sealed = crypto.encrypt_blob(
            buffer.getvalue(), data_key=data_key, owner_id=avatar_id, purpose=f"photo:{index}"
        )
        name = default_storage.save(f"avatars/{avatar_id}/photos/{index}.bin", io.BytesIO(sealed))
        avatar.photos.create(index=index, storage_name=name)
    # That release queued a training job, not an intake job.
    RenderJob.objects.filter(avatar_id=avatar_id).update(kind="training", lane="training")

    train(avatar_id)

    avatar.refresh_from_db()
    assert avatar.status == AvatarStatus.READY, (avatar.failure_code, avatar.failure_reason)
    assert avatar.photo_issues == [] and avatar.photos.count() == 0
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]
