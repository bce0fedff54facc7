"""The two avatar tiers: the instant tier from the intake job, the LoRA after it (issue #15)."""

import io
import json
import zipfile

import numpy as np
import pytest

from avatars import services
from avatars.kinds import INTAKE, TRAINING
from avatars.models import Avatar
from credits.services import balance
from generations.models import WebhookDelivery
from jobs.models import RenderJob
from workstation.accounts.models import ApiClient

from ... import photos as P
from ...factories import give_consent, published_template
from ...storage_utils import list_objects
from .conftest import intake, train, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_avatar(consumer):
    def make(end_user: str = "alice", **fields) -> str:
        client = consumer(end_user)
        consent = give_consent(client)
        response = upload(client, consent, P.same_person_photos(3), **fields)
        assert response.status_code == 202, response.content
        return response.json()["id"]

    return make


def _get(consumer, avatar_id: str, end_user: str = "alice") -> dict:
    response = consumer(end_user, credits=False).get(f"/api/v1/avatars/{avatar_id}")
    assert response.status_code == 200, response.content
    return response.json()


def test_intake_makes_the_instant_tier_and_queues_the_lora(make_avatar, consumer, tiny_models):
    ApiClient.objects.update(webhook_url="https://partner.example/hooks", webhook_secret="s" * 32)
    avatar_id = make_avatar()
    body = _get(consumer, avatar_id)
    assert body["status"] == "queued" and body["tier"] is None and body["identities"] == []
    assert body["stages"]["instant"]["status"] == "pending"
    assert body["stages"]["instant"]["eta_seconds"] > 0
    assert body["stages"]["lora"] == {
        "status": "waiting",
        "ready_at": None,
        "eta_seconds": body["stages"]["lora"]["eta_seconds"],
        "failure": None,
    }
    assert body["stages"]["lora"]["eta_seconds"] > body["stages"]["instant"]["eta_seconds"]

    intake(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["status"] == "training" and body["tier"] == "instant"
    assert body["identities"] == ["instant"] and body["lora_status"] == "queued"
    assert body["stages"]["instant"]["status"] == "ready" and body["instant_ready_at"]
    assert body["stages"]["lora"]["eta_seconds"] > 0
    # The uploads are gone; the checked crops the LoRA needs are kept, encrypted.
    assert list_objects(f"avatars/{avatar_id}/uploads") == []
    assert len(list_objects(f"avatars/{avatar_id}/photos")) == 3
    avatar = Avatar.objects.get(pk=avatar_id)
    embedding = services.avatar_identity_embedding(avatar=avatar)
    assert embedding.dtype == np.float32 and embedding.ndim == 1 and np.abs(embedding).sum() > 0
    assert avatar.identity_adapter == "tiny-identity" and avatar.identity_kind == "image_encoder"
    assert avatar.jobs.get(kind=TRAINING).status == "queued"

    train(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["status"] == "ready" and body["tier"] == "studio"
    assert body["identities"] == ["both", "lora", "instant"]
    assert body["stages"]["lora"]["status"] == "ready" and body["stages"]["lora"]["ready_at"]
    assert list_objects(f"avatars/{avatar_id}") == [f"avatars/{avatar_id}/lora.bin"]

    # Each stage was announced to the client's webhook, with no face data.
    events = {
        d.event_type: d.payload
        for d in WebhookDelivery.objects.filter(event_type__startswith="avatar.")
    }
    assert set(events) == {"avatar.instant_ready", "avatar.studio_ready"}
    assert events["avatar.instant_ready"]["tier"] == "instant"
    assert events["avatar.studio_ready"]["identities"] == ["both", "lora", "instant"]
    assert events["avatar.instant_ready"]["end_user"] == "alice"
    text = json.dumps(events)
    assert "embedding" not in text and "photos/" not in text


def test_without_the_lora_photos_go_at_intake(make_avatar, consumer, tiny_models):
    avatar_id = make_avatar(train_lora="false")
    assert _get(consumer, avatar_id)["stages"]["lora"]["status"] == "not_requested"
    intake(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["status"] == "ready" and body["tier"] == "instant"
    assert body["lora_status"] == "not_requested" and body["stages"]["lora"]["eta_seconds"] is None
    assert list_objects(f"avatars/{avatar_id}") == []  # nothing but the encrypted embedding
    assert not RenderJob.objects.filter(avatar_id=avatar_id, kind=TRAINING).exists()
    assert balance(end_user=Avatar.objects.get(pk=avatar_id).end_user, credit_type="avatar") == 4


def test_the_clients_default_decides_when_the_upload_does_not(make_avatar, consumer, tiny_models):
    ApiClient.objects.update(train_lora_by_default=False)
    assert _get(consumer, make_avatar())["lora_status"] == "not_requested"
    assert _get(consumer, make_avatar(end_user="bob"), "bob")["lora_status"] == "not_requested"
    assert _get(consumer, make_avatar(end_user="carol", train_lora="true"), "carol")[
        "lora_status"
    ] == ("waiting")


def test_without_an_identity_adapter_the_lora_is_the_avatar(
    make_avatar, consumer, tiny_models, settings
):
    settings.AVATAR_INSTANT_TIER = False
    avatar_id = make_avatar(train_lora="false")  # asked for none, but it is the only tier
    intake(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["tier"] is None and body["stages"]["instant"]["status"] == "unavailable"
    assert body["lora_status"] == "queued" and body["identities"] == []
    assert len(list_objects(f"avatars/{avatar_id}/photos")) == 3  # kept for the LoRA


def test_a_lora_that_fails_leaves_the_instant_tier_and_refunds(
    make_avatar, consumer, tiny_models, settings
):
    avatar_id = make_avatar()
    intake(avatar_id)
    settings.AVATAR_TRAINING_RANK = 0  # an invalid recipe: the engine refuses it
    train(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["status"] == "ready" and body["tier"] == "instant" and body["failure"] is None
    assert body["stages"]["lora"]["status"] == "failed"
    failure = body["stages"]["lora"]["failure"]
    assert failure["code"] == "training_error" and "refunded" in failure["reason"]
    assert list_objects(f"avatars/{avatar_id}") == []  # the crops went with the failure
    avatar = Avatar.objects.get(pk=avatar_id)
    assert balance(end_user=avatar.end_user, credit_type="avatar") == 5  # refunded
    assert avatar.available_identities() == ["instant"]


def test_rejected_photos_fail_the_intake_and_refund(make_avatar, consumer, tiny_models, settings):
    settings.AVATAR_MIN_USABLE_PHOTOS = 3
    client = consumer("alice")
    response = upload(
        client, give_consent(client), P.same_person_photos(2) + [P.different_person()]
    )
    assert response.status_code == 202
    avatar_id = response.json()["id"]
    intake(avatar_id)
    body = _get(consumer, avatar_id)
    assert body["status"] == "failed" and body["tier"] is None
    assert body["stages"]["instant"]["status"] == "failed"
    assert body["lora_status"] == "failed" and body["failure"]["code"] == "too_few_usable_photos"
    assert not RenderJob.objects.filter(avatar_id=avatar_id, kind=TRAINING).exists()
    assert Avatar.objects.get(pk=avatar_id).identity_embedding is None
    assert balance(end_user=Avatar.objects.get(pk=avatar_id).end_user, credit_type="avatar") == 5


def test_a_redelivered_intake_does_nothing_twice(make_avatar, tiny_models):
    from jobs.registry import get

    avatar_id = make_avatar()
    intake(avatar_id)
    job = RenderJob.objects.get(avatar_id=avatar_id, kind=INTAKE)
    before = Avatar.objects.get(pk=avatar_id)
    outcome = get(INTAKE).run(job)  # as if the message came again after the work was done
    assert outcome.succeeded
    after = Avatar.objects.get(pk=avatar_id)
    assert after.attempts == before.attempts and after.instant_ready_at == before.instant_ready_at
    assert RenderJob.objects.filter(avatar_id=avatar_id, kind=TRAINING).count() == 1


def test_generations_use_the_tier_asked_for_or_the_best(
    make_avatar, consumer, make_user, tiny_models
):
    template = published_template(owner=make_user("designer"))
    avatar_id = make_avatar()
    client = consumer("alice", credits=False)

    def generate(**extra):
        return client.post(
            "/api/v1/generations",
            {"template": str(template.pk), "avatar": avatar_id, **extra},
            format="json",
        )

    response = generate()
    assert response.status_code == 409 and "no usable tier" in response.json()["error"]["message"]
    intake(avatar_id)
    response = generate(identity="lora")
    assert response.status_code == 409
    assert "instant" in response.json()["error"]["message"]
    response = generate()
    assert response.status_code == 201 and response.json()["identity"] == "instant"
    job = RenderJob.objects.get(pk=response.json()["id"])
    assert job.spec["identity"]["id"] == avatar_id and "avatar" not in job.spec
    train(avatar_id)  # also runs the queued generation (the avatar's jobs only)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    # "More like me" on an instant portrait raises the identity adapter's scale.
    refined = client.post(f"/api/v1/generations/{job.pk}/refine")
    assert refined.status_code == 201, refined.content
    assert refined.json()["identity"] == "instant"
    refined_spec = RenderJob.objects.get(pk=refined.json()["id"]).spec
    assert refined_spec["identity"]["scale"] > job.spec["identity"]["scale"]
    response = generate()
    assert response.status_code == 201 and response.json()["identity"] == "both"
    spec = RenderJob.objects.get(pk=response.json()["id"]).spec
    assert spec["avatar"]["id"] == avatar_id and spec["identity"]["id"] == avatar_id
    assert spec["identity"]["scale"] < spec["avatar"]["weight"]
    assert generate(identity="lora").json()["identity"] == "lora"
    assert generate(identity="bogus").status_code == 400


def test_export_has_the_identity_embedding_and_erasure_destroys_it(
    make_avatar, consumer, tiny_models
):
    avatar_id = make_avatar(train_lora="false")
    intake(avatar_id)
    client = consumer("alice", credits=False)
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/v1/me/export").content))
    exported = json.loads(archive.read(f"avatars/{avatar_id}/identity_embedding.json"))
    held = services.avatar_identity_embedding(avatar=Avatar.objects.get(pk=avatar_id))
    assert np.allclose(exported["values"], held, atol=1e-6)
    manifest = json.loads(archive.read("export.json"))
    assert manifest["avatars"][0]["holds_identity_embedding"] is True
    assert manifest["avatars"][0]["tier"] == "instant"

    assert client.delete(f"/api/v1/avatars/{avatar_id}").status_code == 204
    assert not Avatar.objects.filter(pk=avatar_id).exists()
    assert list_objects(f"avatars/{avatar_id}") == []


def test_provider_serves_the_identity_only_while_it_exists(make_avatar, tiny_models):
    from engine.errors import ModelNotFoundError
    from jobs import providers

    avatar_id = make_avatar(train_lora="false")
    with pytest.raises(ModelNotFoundError):
        providers.load_identity(avatar_id)  # not made yet
    intake(avatar_id)
    identity = providers.load_identity(avatar_id)
    assert identity.adapter == "tiny-identity" and identity.vector.ndim == 1
    with pytest.raises(ModelNotFoundError):
        providers.load_avatar_lora(avatar_id)  # no LoRA was asked for
    services.avatar_erase(avatar=Avatar.objects.get(pk=avatar_id), actor="test", purpose="test")
    with pytest.raises(ModelNotFoundError):
        providers.load_identity(avatar_id)


def test_instant_generations_of_different_users_share_a_batch_group(
    make_user, tiny_models, settings
):
    """Identity is an input tensor: the dispatcher may batch different users' instant
    generations (their candidates included) into one forward pass."""
    from generations.services import generation_create
    from workstation.accounts.services import api_client_create, end_user_get_or_create

    from ...factories import ready_consumer_avatar

    settings.RENDER_BATCH_LIMIT = 4
    template = published_template(owner=make_user("designer"), candidates=2, keep=1)
    client = api_client_create(name="partner-batch").client
    jobs = []
    for ref in ("u1", "u2"):
        end_user = end_user_get_or_create(client=client, external_ref=ref)
        avatar = ready_consumer_avatar(end_user=end_user, tiers=("instant",))
        job, _ = generation_create(
            end_user=end_user, template_id=template.pk, avatar_id=avatar.pk, likeness=None
        )
        jobs.append(job)
    assert [j.spec["num_images"] for j in jobs] == [2, 2]
    assert jobs[0].batch_group and jobs[0].batch_group == jobs[1].batch_group
    assert jobs[0].spec["identity"]["id"] != jobs[1].spec["identity"]["id"]


def test_an_interrupted_intake_leaves_no_photo_behind_and_runs_again(
    make_avatar, tiny_models, monkeypatch
):
    """A crash while recording the intake (here: queuing the LoRA fails) keeps the uploads and
    deletes the crops it stored; crops a dead worker left (no row names them) are deleted by
    the next attempt, which then completes."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    avatar_id = make_avatar()

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "job_create", broken)
    with pytest.raises(RuntimeError):
        services.avatar_intake_execute(avatar_id=avatar_id)
    monkeypatch.undo()
    assert len(list_objects(f"avatars/{avatar_id}/uploads")) == 4  # kept for the next attempt
    assert list_objects(f"avatars/{avatar_id}/photos") == []
    stray = default_storage.save(f"avatars/{avatar_id}/photos/9-x.bin", ContentFile(b"left over"))

    intake(avatar_id)  # the job runs again (a redelivery after the crash)
    stored = list_objects(f"avatars/{avatar_id}/photos")
    names = set(Avatar.objects.get(pk=avatar_id).photos.values_list("storage_name", flat=True))
    assert len(stored) == 3 and set(stored) == names and stray not in names
    assert list_objects(f"avatars/{avatar_id}/uploads") == []
    assert RenderJob.objects.filter(avatar_id=avatar_id, kind=TRAINING).count() == 1


def test_erasing_an_avatar_deletes_everything_under_its_prefix(make_avatar, tiny_models):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    avatar_id = make_avatar()
    intake(avatar_id)
    default_storage.save(f"avatars/{avatar_id}/photos/orphan.bin", ContentFile(b"x"))
    services.avatar_erase(avatar=Avatar.objects.get(pk=avatar_id), actor="test", purpose="test")
    assert list_objects(f"avatars/{avatar_id}") == []
    assert not Avatar.objects.filter(pk=avatar_id).exists()


def test_a_retention_failed_lora_is_not_kept_when_its_training_ends(
    make_avatar, tiny_models, monkeypatch
):
    """The 24 h photo limit failed the LoRA (refunded) while it trained: the finished training
    must not turn it into a free LoRA."""
    from datetime import timedelta

    from django.utils import timezone

    import engine.training
    from avatars.models import AvatarPhoto, LoraStatus

    avatar_id = make_avatar()
    intake(avatar_id)
    real = engine.training.train_avatar_lora

    def sweep_during_training(**kwargs):
        trained = real(**kwargs)
        AvatarPhoto.objects.filter(avatar_id=avatar_id).update(
            created_at=timezone.now() - timedelta(hours=25)
        )
        assert services.retention_sweep()["photos_deleted"] == 3
        return trained

    monkeypatch.setattr(engine.training, "train_avatar_lora", sweep_during_training)
    train(avatar_id)
    avatar = Avatar.objects.get(pk=avatar_id)
    assert avatar.lora_status == LoraStatus.FAILED and avatar.lora_failure_code == "photos_expired"
    assert avatar.tier == "instant" and not avatar.lora_object
    assert list_objects(f"avatars/{avatar_id}") == []
    assert balance(end_user=avatar.end_user, credit_type="avatar") == 5  # refunded once
