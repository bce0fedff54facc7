"""Test objects made through the real code paths (engine, crypto, storage), built once.

Training a test avatar takes seconds, so the LoRA and reference embedding are trained once
per session with the real engine; each test then stores them for its own avatar row with a
fresh data key, as the training service does.
"""

from __future__ import annotations

from functools import lru_cache

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from . import photos as P


@lru_cache(maxsize=1)
def _trained_once() -> tuple[bytes, bytes]:
    from django.conf import settings

    from engine import faces
    from engine.training import TrainingConfig, lora_to_bytes, train_avatar_lora
    from workstation.engine_host import get_engine

    prepared = faces.prepare_training_photos(P.front_photo(), P.same_person_photos(3))
    trained = train_avatar_lora(
        pipeline=get_engine().pipeline(),
        photos=[p.image for p in prepared.accepted],
        config=TrainingConfig(
            rank=4,
            steps=settings.AVATAR_TRAINING_STEPS,
            resolution=settings.AVATAR_TRAINING_RESOLUTION,
        ),
    )
    return lora_to_bytes(trained), prepared.reference_embedding.astype("float32").tobytes()


@lru_cache(maxsize=1)
def _identity_once() -> tuple[str, str, bytes]:
    """(adapter key, kind, embedding bytes) of the instant tier, made once by the engine."""
    from engine import faces
    from workstation.engine_host import get_engine

    prepared = faces.prepare_training_photos(P.front_photo(), P.same_person_photos(3))
    adapter, kind, vector = get_engine().build_identity([p.image for p in prepared.accepted])
    return adapter, kind, vector.astype("float32").tobytes()


def _store_identity(avatar, key: bytes) -> None:
    from avatars import crypto

    adapter, kind, vector = _identity_once()
    avatar.identity_embedding = crypto.encrypt_blob(
        vector, data_key=key, owner_id=str(avatar.id), purpose="identity_embedding"
    )
    avatar.identity_adapter, avatar.identity_kind = adapter, kind
    avatar.instant_ready_at = timezone.now()


def ready_test_avatar(
    *,
    name: str = "Panel",
    gender: str = "female",
    age_band: str = "30-44",
    tiers: tuple[str, ...] = ("instant", "studio"),
):
    """A ready panel avatar with the given tiers: "instant" (identity embedding) and/or
    "studio" (LoRA)."""
    from avatars import crypto
    from avatars.models import Avatar, AvatarStatus, LoraStatus

    lora, embedding = _trained_once()
    avatar = Avatar(
        is_test_avatar=True,
        name=name,
        panel_gender=gender,
        panel_age_band=age_band,
        rights_declaration="test fixture",
        status=AvatarStatus.READY,
        finished_at=timezone.now(),
    )
    owner = str(avatar.id)
    key = crypto.new_data_key()
    avatar.wrapped_data_key = crypto.wrap_data_key(key, owner_id=owner)
    avatar.reference_embedding = crypto.encrypt_blob(
        embedding, data_key=key, owner_id=owner, purpose="reference_embedding"
    )
    if "studio" in tiers:
        avatar.lora_object = default_storage.save(
            f"avatars/{owner}/lora.bin",
            ContentFile(crypto.encrypt_blob(lora, data_key=key, owner_id=owner, purpose="lora")),
        )
        avatar.lora_status, avatar.lora_ready_at = LoraStatus.READY, timezone.now()
    else:
        avatar.lora_status = LoraStatus.NOT_REQUESTED
    if "instant" in tiers:
        _store_identity(avatar, key)
    avatar.save()
    return avatar


def consent_record(*, end_user):
    """An active consent of `end_user` to the current agreement, every item accepted."""
    from avatars import consent as agreement
    from avatars.models import ConsentRecord

    return ConsentRecord.objects.create(
        end_user=end_user,
        agreement_version=agreement.AGREEMENT_VERSION,
        agreement_hash=agreement.agreement_hash(),
        text_shown=agreement.agreement_text(),
        items=["face_processing", "identity_check", "identity_embedding"],
        age_confirmation="adult",
    )


def avatar_row(*, name: str, end_user=None, consent=None):
    """A `ready` avatar row without weights, for walks over endpoints that never render: a
    consumer's (with `end_user` and `consent`) or, without them, a panel test avatar."""
    from avatars.models import Avatar, AvatarStatus

    panel = (
        {}
        if end_user is not None
        else {
            "is_test_avatar": True,
            "panel_gender": "female",
            "panel_age_band": "30-44",
            "rights_declaration": "test fixture",
        }
    )
    return Avatar.objects.create(
        end_user=end_user,
        consent=consent,
        name=name,
        status=AvatarStatus.READY,
        finished_at=timezone.now(),
        **panel,
    )


def ready_consumer_avatar(*, end_user, tiers: tuple[str, ...] = ("instant", "studio")):
    """A ready avatar of a consumer end user (with a consent record), trained once per session."""
    from avatars.models import Avatar

    record = consent_record(end_user=end_user)
    test_avatar = ready_test_avatar(tiers=tiers)
    Avatar.objects.filter(pk=test_avatar.pk).update(
        is_test_avatar=False, end_user=end_user, consent=record
    )
    return Avatar.objects.get(pk=test_avatar.pk)


def published_template(*, owner, **spec_changes):
    """A template whose first revision is live (workflow state set directly for test setup;
    the review workflow itself is tested in tests/unit/templates_studio)."""
    from templates_studio.models import Template, TemplateStatus
    from templates_studio.services import template_create

    spec = {
        "prompt": "{subject}, business portrait",
        "seeds": [1],
        "steps": 4,
        "candidates": 2,
        "keep": 1,
        **spec_changes,
    }
    template = template_create(
        user=owner, title="Headshot", category="business", tags=[], spec=spec
    )
    Template.objects.filter(pk=template.pk).update(
        status=TemplateStatus.PUBLISHED, live_revision=template.revisions.get()
    )
    return Template.objects.get(pk=template.pk)


def give_consent(client) -> str:
    """The current agreement accepted in full by the client's end user, through the API; the
    consent record's id."""
    current = client.get("/api/v1/consent/current").json()
    response = client.post(
        "/api/v1/consents",
        {
            "agreement_hash": current["hash"],
            "items": [i["key"] for i in current["items"]],
            "age_confirmation": "adult",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]
