"""Writes for consent, avatars, training, retention, export and erasure."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image

from credits import services as credits
from credits.models import CreditType
from jobs.events import job_changed
from jobs.finishing import job_finished_without_running
from jobs.models import JobStatus, OwnerTurn, RenderJob, RenderOutput
from jobs.services import job_create
from workstation.accounts.models import EndUser, User
from workstation.accounts.principals import ConsumerPrincipal
from workstation.engine_host import get_engine, get_registry
from workstation.errors import ConflictError, InsufficientCredits, InvalidInput
from workstation.ownership import owner_key
from workstation.storage import delete_objects, delete_prefix, list_objects_under

from . import consent as agreement
from . import crypto
from .audit import actor_of, audit
from .events import avatar_changed, avatar_stage_reached
from .intake import PhotosRejected, ReceivedPhotos, ScreenedPhotos, receive_photos, screen_photos
from .kinds import INTAKE, TRAINING
from .models import (
    IN_FLIGHT,
    Avatar,
    AvatarPhoto,
    AvatarStatus,
    ConsentRecord,
    ErasureReceipt,
    LoraStatus,
)

logger = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL_S = 1.0


# --- Consent -------------------------------------------------------------------------------------


def consent_give(
    *, principal: ConsumerPrincipal, agreement_hash: str, items: list[str], age_confirmation: str
) -> ConsentRecord:
    language = agreement.current_hashes().get(agreement_hash)
    if language is None:
        raise InvalidInput(
            {
                "agreement_hash": [
                    "This is not the current agreement; fetch /api/v1/consent/current and show it again."
                ]
            }
        )
    document = agreement.agreement_document(language)
    required = {item["key"] for item in document["items"]}
    missing = required - set(items)
    if missing:
        raise InvalidInput(
            {
                "items": [
                    f"Every item must be accepted separately; missing: {', '.join(sorted(missing))}."
                ]
            }
        )
    if age_confirmation not in agreement.AGE_CHOICES:
        raise InvalidInput(
            {"age_confirmation": [f"Must be one of: {', '.join(agreement.AGE_CHOICES)}."]}
        )
    record = ConsentRecord.objects.create(
        end_user=principal.end_user,
        agreement_version=document["version"],
        agreement_hash=agreement_hash,
        language=language,
        text_shown=agreement.agreement_text(document),
        items=sorted(required),
        age_confirmation=age_confirmation,
    )
    audit(
        actor=actor_of(principal),
        action="consent_given",
        object_type="consent",
        object_id=record.id,
        purpose="consent ledger",
        end_user=principal.end_user,
    )
    return record


@transaction.atomic
def consent_withdraw(*, principal: ConsumerPrincipal, consent: ConsentRecord) -> int:
    """Withdrawal ends the purpose: the avatars made under this consent are erased."""
    consent = ConsentRecord.objects.select_for_update().get(pk=consent.pk)
    if consent.withdrawn_at is None:
        consent.withdrawn_at = timezone.now()
        consent.save(update_fields=["withdrawn_at"])
    erased = 0
    for avatar in list(consent.avatars.all()):
        avatar_erase(avatar=avatar, actor=actor_of(principal), purpose="consent withdrawn")
        erased += 1
    audit(
        actor=actor_of(principal),
        action="consent_withdrawn",
        object_type="consent",
        object_id=consent.id,
        purpose="consent ledger",
        end_user=consent.end_user,
    )
    return erased


# --- Intake ----------------------------------------------------------------------------------------


FRONT_PHOTO_INDEX = 0


def _upload_index(field_index: int) -> int:
    """`photos.i` of the upload is stored as index i + 1 (0 is the front photo)."""
    return field_index + 1


def instant_tier_available() -> bool:
    """Whether new avatars get the instant tier: switched on and an identity adapter is
    registered for the default base model."""
    if not settings.AVATAR_INSTANT_TIER:
        return False
    return get_registry().identity_adapter() is not None


def _store_uploads_and_enqueue(
    avatar: Avatar, received: ReceivedPhotos, *, train_lora: bool
) -> None:
    """Encrypts the received photos under a new data key, as received; queues the intake job,
    which screens them, makes the instant tier and queues the LoRA (`train_lora`, or always
    when there is no instant tier). The avatar credit is charged on the intake job."""
    avatar.lora_status = (
        LoraStatus.WAITING
        if train_lora or not instant_tier_available()
        else LoraStatus.NOT_REQUESTED
    )
    owner = str(avatar.id)
    data_key = crypto.new_data_key()
    stored: dict[int, str] = {}
    uploads = {FRONT_PHOTO_INDEX: received.front} | {
        _upload_index(i): upload for i, upload in received.photos.items()
    }
    try:
        # Written before the transaction, so no row lock waits on storage: nothing refers to
        # these objects until the rows below commit, and they are deleted if that fails.
        for index, upload in uploads.items():
            # One file in memory at a time: Django spooled the upload to disk.
            upload.seek(0)
            sealed = crypto.encrypt_blob(
                upload.read(), data_key=data_key, owner_id=owner, purpose=f"upload:{index}"
            )
            stored[index] = default_storage.save(
                f"avatars/{owner}/uploads/{index}.bin", ContentFile(sealed)
            )
        with transaction.atomic():
            avatar.wrapped_data_key = crypto.wrap_data_key(data_key, owner_id=owner)
            avatar.photo_count = len(received.photos)
            avatar.photo_issues = [issue.as_detail() for issue in received.dropped]
            if avatar.end_user is not None:
                # Serialize this end user's uploads, then re-check the quota.
                if not EndUser.objects.select_for_update().filter(pk=avatar.end_user.pk).exists():
                    raise ConflictError(
                        "This end user was erased while the photos were uploading; "
                        "nothing was stored."
                    )
                _check_quota(avatar.end_user)
            avatar.save()
            AvatarPhoto.objects.bulk_create(
                AvatarPhoto(avatar=avatar, index=index, storage_name=name)
                for index, name in stored.items()
            )
            job = job_create(
                kind=INTAKE,
                spec={},
                avatar=avatar,
                end_user=avatar.end_user,
                created_by=avatar.created_by if avatar.is_test_avatar else None,
            )
            if avatar.end_user is not None and settings.ENTITLEMENTS_ENFORCED:
                credits.charge(
                    end_user=avatar.end_user,
                    credit_type=CreditType.AVATAR,
                    note="avatar",
                    job=job,
                    avatar=avatar,
                )
    except Exception:
        delete_objects(stored.values())
        raise


def _check_quota(end_user: EndUser) -> None:
    in_flight = Avatar.objects.filter(end_user=end_user, status__in=IN_FLIGHT).count()
    if in_flight >= settings.AVATAR_MAX_IN_FLIGHT:
        raise ConflictError(
            f"You already have {in_flight} avatars being made; wait for one to finish "
            f"(limit {settings.AVATAR_MAX_IN_FLIGHT})."
        )


def avatar_create(
    *,
    principal: ConsumerPrincipal,
    consent_id: uuid.UUID | str,
    front: UploadedFile,
    photos: Sequence[UploadedFile],
    name: str = "",
    train_lora: bool | None = None,
) -> Avatar:
    """Checks consent, quota and each photo's header; stores the photos encrypted and queues
    the intake job (photo checks, then the instant tier). ``train_lora`` (None: the API
    client's `train_lora_by_default`) says whether the LoRA trains afterwards. Nothing here
    decodes a photo."""
    end_user = principal.end_user
    consent = ConsentRecord.objects.owned_by(principal).filter(pk=consent_id).first()
    if consent is None or not consent.is_active:
        raise InvalidInput({"consent": ["No active consent with this id for this end user."]})
    if consent.agreement_hash not in agreement.current_hashes():
        raise InvalidInput({"consent": ["The agreement has changed; ask for consent again."]})
    _check_quota(end_user)
    if (
        settings.ENTITLEMENTS_ENFORCED
        and credits.balance(end_user=end_user, credit_type=CreditType.AVATAR) < 1
    ):
        raise InsufficientCredits("Making an avatar needs 1 avatar credit; the balance is 0.")
    received = receive_photos(front=front, photos=photos)
    avatar = Avatar(end_user=end_user, consent=consent, name=name[:80])
    if train_lora is None:
        train_lora = principal.client.train_lora_by_default
    _store_uploads_and_enqueue(avatar, received, train_lora=train_lora)
    audit(
        actor=actor_of(principal),
        action="photos_uploaded",
        object_type="avatar",
        object_id=avatar.id,
        purpose="train the end user's avatar",
        end_user=end_user,
    )
    logger.info("avatar %s queued with %d photos", avatar.id, avatar.photo_count)
    return avatar


def test_avatar_create(
    *,
    user: User,
    front: UploadedFile,
    photos: Sequence[UploadedFile],
    name: str,
    gender: str,
    age_band: str,
    rights_declaration: str,
) -> Avatar:
    """An operator adds a test avatar to the designers' preview panel (same pipeline)."""
    if not rights_declaration.strip():
        raise InvalidInput(
            {
                "rights_declaration": [
                    "Declare that you hold the rights to these photos and the person's consent."
                ]
            }
        )
    received = receive_photos(front=front, photos=photos)
    avatar = Avatar(
        is_test_avatar=True,
        created_by=user,
        name=name[:80],
        panel_gender=gender,
        panel_age_band=age_band,
        rights_declaration=rights_declaration,
    )
    # The panel compares both tiers, so test avatars always train their LoRA too.
    _store_uploads_and_enqueue(avatar, received, train_lora=True)
    audit(
        actor=actor_of(user),
        action="photos_uploaded",
        object_type="test_avatar",
        object_id=avatar.id,
        purpose="test avatar panel",
    )
    return avatar


# --- Training (worker) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingOutcome:
    succeeded: bool
    code: str = ""
    reason: str = ""
    details: tuple[dict[str, str], ...] = ()


def _claim_for_training(avatar_id: str) -> Avatar | None:
    """The training job's claim makes this worker the only one; this moves the avatar on."""
    with transaction.atomic():
        avatar = Avatar.objects.select_for_update().filter(pk=avatar_id).first()
        if avatar is None or avatar.lora_status in (LoraStatus.READY, LoraStatus.FAILED):
            return None  # erased meanwhile, or already done: a redelivery is harmless
        if avatar.status == AvatarStatus.FAILED:
            return None
        if not avatar.has_instant_tier:
            # Avatars queued before the intake job existed screen their photos here first.
            avatar.status = AvatarStatus.PREPARING
        avatar.lora_status = LoraStatus.TRAINING
        avatar.attempts += 1
        avatar.started_at = avatar.started_at or timezone.now()
        avatar.save(update_fields=["status", "lora_status", "attempts", "started_at"])
        avatar_changed(avatar.pk)
    return avatar


class _PastIntake(Exception):
    """A redelivered intake job whose avatar is already past intake."""


def _claim_for_intake(avatar_id: str) -> Avatar | None:
    with transaction.atomic():
        avatar = Avatar.objects.select_for_update().filter(pk=avatar_id).first()
        if avatar is None:
            return None
        if avatar.status not in (AvatarStatus.QUEUED, AvatarStatus.PREPARING):
            raise _PastIntake()
        avatar.status = AvatarStatus.PREPARING
        avatar.attempts += 1
        avatar.started_at = timezone.now()
        avatar.save(update_fields=["status", "attempts", "started_at"])
        avatar_changed(avatar.pk)
    return avatar


def _build_identity(avatar: Avatar, screened: ScreenedPhotos) -> tuple[str, str, np.ndarray] | None:
    """The instant tier's identity embedding from the checked crops, or None (no identity
    adapter, switched off, or the engine failed: the LoRA then carries the avatar alone)."""
    if not instant_tier_available():
        return None
    try:
        return get_engine().build_identity(
            screened.crops, face_embeddings=[screened.reference_embedding]
        )
    except Exception as exc:
        logger.error(
            "avatar %s: no instant tier, the identity embedding failed (%s)",
            avatar.pk,
            type(exc).__name__,
        )
        return None


def _store_crops(avatar: Avatar, crops: list[Image.Image], data_key: bytes) -> list[str]:
    """The checked, aligned crops the LoRA trains on, encrypted (JPEG, no metadata): what the
    studio tier needs instead of the photos as uploaded."""
    owner = str(avatar.id)
    names = []
    try:
        for index, crop in enumerate(crops):
            buffer = io.BytesIO()
            crop.convert("RGB").save(buffer, "JPEG", quality=95)
            sealed = crypto.encrypt_blob(
                buffer.getvalue(), data_key=data_key, owner_id=owner, purpose=f"photo:{index}"
            )
            names.append(
                default_storage.save(f"avatars/{owner}/photos/{index}.bin", ContentFile(sealed))
            )
    except Exception:
        delete_objects(names)
        raise
    return names


_Read = TypeVar("_Read")


def _read_photos(
    avatar: Avatar, read: Callable[[bytes], _Read]
) -> tuple[bytes, _Read] | TrainingOutcome:
    """(the avatar's data key, ``read(data_key)``: decrypt and screen the stored photos), or
    the avatar failed (refunded) when they cannot be read, or when screening crashes: it
    decodes untrusted files and runs face models, and whatever breaks, the avatar fails now
    (photos deleted) rather than waiting for the retention sweep."""
    try:
        data_key = crypto.unwrap_data_key(avatar.wrapped_data_key, owner_id=str(avatar.pk))
        return data_key, read(data_key)
    except (crypto.DecryptionError, OSError) as exc:
        logger.error("avatar %s: photos unavailable (%s)", avatar.pk, type(exc).__name__)
        return _finish_failed(
            avatar,
            code="photos_unavailable",
            reason="Your photos could not be read. You were not charged.",
        )
    except Exception:
        logger.exception("avatar %s: photo screening crashed", avatar.pk)
        return _finish_failed(
            avatar,
            code="internal_error",
            reason="Your photos could not be checked because of an internal error. "
            "You were not charged.",
        )


def avatar_intake_execute(*, avatar_id: str, job: RenderJob | None = None) -> TrainingOutcome:
    """The intake job: screens the stored uploads, makes the instant tier (identity embedding)
    and, when the LoRA is wanted, keeps only the checked crops and queues its training.
    Photos the remaining tiers do not need are deleted here."""
    try:
        avatar = _claim_for_intake(avatar_id)
    except _PastIntake:
        return TrainingOutcome(True)  # a redelivery after the work was done
    if avatar is None:
        return TrainingOutcome(False, "gone", "The avatar no longer exists.")
    owner = str(avatar.id)
    started = time.monotonic()
    read = _read_photos(avatar, lambda key: _screen_stored_uploads(avatar, key))
    if isinstance(read, TrainingOutcome):
        return read
    data_key, screened = read
    if isinstance(screened, TrainingOutcome):
        return screened
    identity = _build_identity(avatar, screened)
    wants_lora = avatar.lora_status == LoraStatus.WAITING or identity is None
    # Crops an earlier attempt stored before its worker died (no row names them) go first.
    _delete_unreferenced_crops(avatar)
    crops = _store_crops(avatar, screened.crops, data_key) if wants_lora else []
    del screened
    try:
        with transaction.atomic():
            outcome, uploads = _finish_intake(
                avatar, identity, crops, data_key, wants_lora=wants_lora
            )
    except Exception:
        delete_objects(crops)  # nothing committed refers to them; the uploads stay
        raise
    if outcome is not None:
        delete_objects(crops)
        return outcome
    delete_objects(uploads)  # only once their rows' deletion is committed
    logger.info(
        "avatar %s: intake done in %.2fs (instant tier: %s, LoRA: %s)",
        owner,
        time.monotonic() - started,
        "ready" if identity is not None else "none",
        "queued" if wants_lora else "not requested",
    )
    return TrainingOutcome(True)


def _delete_unreferenced_crops(avatar: Avatar) -> None:
    referenced = set(avatar.photos.values_list("storage_name", flat=True))
    stray = [n for n in list_objects_under(f"avatars/{avatar.pk}/photos") if n not in referenced]
    if stray:
        logger.warning(
            "avatar %s: %d crops of an interrupted intake deleted", avatar.pk, len(stray)
        )
        delete_objects(stray)


def _finish_intake(
    avatar: Avatar,
    identity: tuple[str, str, np.ndarray] | None,
    crops: list[str],
    data_key: bytes,
    *,
    wants_lora: bool,
) -> tuple[TrainingOutcome | None, list[str]]:
    """Records the intake's result under the avatar's row lock: (None, the uploads' storage
    names to delete once committed) when recorded, else (why not, []) (erased, or another
    attempt took over: this one's crops are then not used)."""
    owner = str(avatar.pk)
    locked = Avatar.objects.select_for_update().filter(pk=owner).first()
    if locked is None:
        return TrainingOutcome(False, "erased", "The avatar was deleted."), []
    if locked.status not in (AvatarStatus.QUEUED, AvatarStatus.PREPARING):
        return TrainingOutcome(True), []  # a later attempt finished first
    if locked.attempts != avatar.attempts:
        return TrainingOutcome(False, "superseded", "Another attempt is making this avatar."), []
    uploads = list(locked.photos.all())
    # The uploads' clock keeps running for the crops: photos never outlive
    # PHOTO_HARD_LIMIT_HOURS after upload, whatever waited in the queue.
    uploaded_at = min((photo.created_at for photo in uploads), default=timezone.now())
    names = [photo.storage_name for photo in uploads]
    AvatarPhoto.objects.filter(pk__in=[photo.pk for photo in uploads]).delete()
    now = timezone.now()
    changes: dict = {}
    if identity is not None:
        adapter, kind, vector = identity
        changes.update(
            identity_embedding=crypto.encrypt_blob(
                vector.astype(np.float32).tobytes(),
                data_key=data_key,
                owner_id=owner,
                purpose="identity_embedding",
            ),
            identity_adapter=adapter,
            identity_kind=kind,
            instant_ready_at=now,
        )
    if wants_lora:
        AvatarPhoto.objects.bulk_create(
            AvatarPhoto(avatar=locked, index=index, storage_name=name, created_at=uploaded_at)
            for index, name in enumerate(crops)
        )
        waiting = locked.jobs.filter(
            kind=TRAINING, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
        ).exists()
        if not waiting:
            job_create(
                kind=TRAINING,
                spec={},
                avatar=locked,
                end_user=locked.end_user,
                created_by=locked.created_by if locked.is_test_avatar else None,
            )
        changes.update(status=AvatarStatus.TRAINING, lora_status=LoraStatus.QUEUED)
    else:
        changes.update(status=AvatarStatus.READY, finished_at=now)
    Avatar.objects.filter(pk=owner).update(**changes)
    locked.refresh_from_db()
    avatar_changed(owner)
    if identity is not None:
        avatar_stage_reached.send(sender=Avatar, avatar=locked, stage="instant_ready")
    audit(
        actor=f"system:intake:{owner}",
        action="avatar_identity_made" if identity is not None else "avatar_photos_checked",
        object_type="avatar",
        object_id=owner,
        purpose="make the end user's avatar",
        end_user=locked.end_user,
    )
    return None, names


def _decrypt_stored(avatar: Avatar, data_key: bytes, *, purpose: str) -> dict[int, bytes]:
    stored = {}
    for photo in avatar.photos.order_by("index"):
        with default_storage.open(photo.storage_name, "rb") as handle:
            stored[photo.index] = crypto.decrypt_blob(
                handle.read(),
                data_key=data_key,
                owner_id=str(avatar.id),
                purpose=f"{purpose}:{photo.index}",
            )
    return stored


def _was_stored(field: str, stored: dict[int, bytes]) -> bool:
    """Whether the photo an issue names ("front_photo", "photos.<i>") was stored at upload."""
    if not field.startswith("photos."):
        return True
    return _upload_index(int(field.removeprefix("photos."))) in stored


def _holds_prepared_crops(avatar: Avatar) -> bool:
    """Avatars queued before screening moved into the job hold prepared crops, not uploads."""
    names = list(avatar.photos.values_list("storage_name", flat=True))
    return bool(names) and not any("/uploads/" in name for name in names)


def _screen_stored_uploads(avatar: Avatar, data_key: bytes) -> ScreenedPhotos | TrainingOutcome:
    """The training job's first stage: decode and screen the photos stored at upload. Records
    the reference embedding and every photo's issue on the avatar; fails the avatar (refunded)
    when too few photos are usable."""
    uploads = _decrypt_stored(avatar, data_key, purpose="upload")
    # Issues found at the upload are those of photos never stored; what an earlier attempt's
    # screening found (a redelivered job) is found again, not kept twice.
    door_issues = [
        issue for issue in avatar.photo_issues or [] if not _was_stored(issue["field"], uploads)
    ]
    front = uploads.pop(FRONT_PHOTO_INDEX, None)
    if front is None or not uploads:
        return _finish_failed(
            avatar,
            code="photos_expired",
            reason="Your photos were deleted before training could start. You were not charged.",
        )
    try:
        screened = screen_photos(
            front=front,
            photos={index - 1: data for index, data in uploads.items()},
            count=len(uploads) + len(door_issues),
        )
    except PhotosRejected as exc:
        issues = door_issues + [issue.as_detail() for issue in exc.issues]
        return _finish_failed(
            avatar, code=exc.code, reason=f"{exc.message} You were not charged.", issues=issues
        )
    finally:
        del uploads
    owner = str(avatar.id)
    Avatar.objects.filter(pk=owner).update(
        reference_embedding=crypto.encrypt_blob(
            screened.reference_embedding.astype(np.float32).tobytes(),
            data_key=data_key,
            owner_id=owner,
            purpose="reference_embedding",
        ),
        photo_issues=door_issues + [issue.as_detail() for issue in screened.dropped],
        photo_count=len(screened.crops),
    )
    avatar_changed(owner)
    logger.info(
        "avatar %s: screening kept %d photos, dropped %d",
        owner,
        len(screened.crops),
        len(screened.dropped) + len(door_issues),
    )
    return screened


def _training_photos(avatar: Avatar, data_key: bytes) -> list[Image.Image] | TrainingOutcome:
    if _holds_prepared_crops(avatar):
        crops = _decrypt_stored(avatar, data_key, purpose="photo")
        return [Image.open(io.BytesIO(crops[i])).convert("RGB") for i in sorted(crops)]
    screened = _screen_stored_uploads(avatar, data_key)
    return screened if isinstance(screened, TrainingOutcome) else screened.crops


def avatar_photos_delete(*, avatar: Avatar) -> int:
    """Deletes photo objects from storage, then their rows. Returns how many."""
    photos = list(avatar.photos.all())
    delete_objects(photo.storage_name for photo in photos)
    AvatarPhoto.objects.filter(pk__in=[p.pk for p in photos]).delete()
    return len(photos)


LORA_FAILED_NOTE = " Your avatar credit was refunded; the instant avatar stays usable."


def _refund_avatar_credit(avatar: Avatar, *, note: str) -> None:
    """Refunds the avatar credit, charged on the intake job, once (a second refund is refused
    by the ledger's constraint, so the intake job's own refund hook and this never both
    count). Avatars queued before the intake job existed were charged on their training job,
    whose failure hook refunds it."""
    intake = avatar.jobs.filter(kind=INTAKE).first()
    if intake is not None:
        credits.refund_job(job=intake, note=note)


def _lora_failed(avatar: Avatar, *, code: str, reason: str) -> TrainingOutcome:
    """The LoRA failed after the instant tier was made: the avatar stays usable at the instant
    tier, its photos are deleted, and the avatar credit is refunded."""
    avatar_photos_delete(avatar=avatar)
    reason = reason.replace(" You were not charged.", "")
    Avatar.objects.filter(pk=avatar.pk).update(
        status=AvatarStatus.READY,
        lora_status=LoraStatus.FAILED,
        lora_failure_code=code,
        lora_failure_reason=reason + LORA_FAILED_NOTE,
        finished_at=timezone.now(),
    )
    _refund_avatar_credit(avatar, note=f"LoRA failed: {code}")
    avatar = Avatar.objects.filter(pk=avatar.pk).first() or avatar
    avatar_changed(avatar.pk)
    avatar_stage_reached.send(sender=Avatar, avatar=avatar, stage="lora_failed")
    logger.info("avatar %s: LoRA failed (%s); instant tier kept", avatar.pk, code)
    return TrainingOutcome(False, code, reason + LORA_FAILED_NOTE)


def _finish_failed(
    avatar: Avatar, *, code: str, reason: str, issues: list[dict[str, str]] | None = None
) -> TrainingOutcome:
    """The avatar failed: nothing usable (or only its LoRA failed: `_lora_failed`)."""
    current = Avatar.objects.filter(pk=avatar.pk).first()
    if current is None:
        return TrainingOutcome(False, "erased", "The avatar was deleted.")
    avatar = current
    if avatar.has_instant_tier:
        return _lora_failed(avatar, code=code, reason=reason)
    avatar_photos_delete(avatar=avatar)
    changes: dict = {
        "status": AvatarStatus.FAILED,
        "failure_code": code,
        "failure_reason": reason,
        "finished_at": timezone.now(),
    }
    if issues is not None:
        changes["photo_issues"] = issues
    if avatar.lora_status != LoraStatus.NOT_REQUESTED:
        changes["lora_status"] = LoraStatus.FAILED
    Avatar.objects.filter(pk=avatar.pk).update(**changes)
    _refund_avatar_credit(avatar, note=f"avatar failed: {code}")
    avatar = Avatar.objects.filter(pk=avatar.pk).first() or avatar
    avatar_changed(avatar.pk)
    avatar_stage_reached.send(sender=Avatar, avatar=avatar, stage="failed")
    logger.info("avatar %s failed: %s", avatar.pk, code)
    return TrainingOutcome(False, code, reason, tuple(issues or ()))


def avatar_job_finished(job: RenderJob) -> None:
    """Terminal hook of intake and training jobs: a job that ended without success while its
    avatar is still in flight (the sweeper gave up after a worker died each attempt, a
    deadline) fails the avatar too (or only its LoRA, when the instant tier exists), and
    deletes its photos at once. Idempotent."""
    if job.status == JobStatus.SUCCEEDED or job.avatar_id is None:
        return
    avatar = Avatar.objects.select_for_update().filter(pk=job.avatar_id).first()
    if avatar is None or not avatar.is_in_flight:
        return
    if job.kind == INTAKE and avatar.status not in (AvatarStatus.QUEUED, AvatarStatus.PREPARING):
        return  # past intake: the training job answers for the rest
    _finish_failed(
        avatar,
        code=job.error_code or "training_failed",
        reason=job.error_message or "Making your avatar failed. You were not charged.",
    )


def _fail_waiting_training(avatar: Avatar, *, code: str, reason: str) -> None:
    """Fails the avatar's queued training job (which refunds the avatar credit)."""
    for job in avatar.jobs.select_for_update().filter(
        status=JobStatus.QUEUED, kind__in=(INTAKE, TRAINING)
    ):
        job_finished_without_running(job, status=JobStatus.FAILED, code=code, message=reason)


def avatar_train_execute(*, avatar_id: str, job: RenderJob | None = None) -> TrainingOutcome:
    """Screens the stored photos, then trains the LoRA, for the worker holding the training
    job's lease. Photos are gone afterwards whatever happens."""
    from engine.errors import EngineError
    from engine.training import TrainingCanceled, TrainingConfig, lora_to_bytes, train_avatar_lora

    avatar = _claim_for_training(avatar_id)
    if avatar is None:
        return TrainingOutcome(False, "gone", "The avatar no longer exists.")
    owner = str(avatar.id)
    read = _read_photos(avatar, lambda key: _training_photos(avatar, key))
    if isinstance(read, TrainingOutcome):
        return read
    data_key, photos = read
    if isinstance(photos, TrainingOutcome):
        return photos
    if not photos:
        return _finish_failed(
            avatar,
            code="photos_expired",
            reason="Your photos were deleted before training could start. You were not charged.",
        )

    last = {"write": 0.0}

    def on_progress(step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if step < total and now - last["write"] < PROGRESS_MIN_INTERVAL_S:
            return
        last["write"] = now
        Avatar.objects.filter(pk=owner).update(progress_step=step, progress_total=total)
        avatar_changed(owner)
        if job is not None:
            type(job).objects.filter(pk=job.pk).update(progress_step=step, progress_total=total)
            job_changed(job.pk)

    def erased() -> bool:
        return not Avatar.objects.filter(pk=owner).exists()

    started = time.monotonic()
    try:
        config = TrainingConfig(
            rank=settings.AVATAR_TRAINING_RANK,
            steps=settings.AVATAR_TRAINING_STEPS,
            resolution=settings.AVATAR_TRAINING_RESOLUTION,
            seed=avatar.attempts,
            time_budget_s=settings.AVATAR_TRAINING_TIME_BUDGET_S,
        )
        Avatar.objects.filter(pk=owner).update(
            status=AvatarStatus.TRAINING, progress_total=config.steps, progress_step=0
        )
        avatar_changed(owner)
        registry = get_registry()
        trained = train_avatar_lora(
            pipeline=get_engine().pipeline(),
            photos=photos,
            config=config,
            on_progress=on_progress,
            should_cancel=erased,
            base_model=registry.default_base,
        )
    except TrainingCanceled:
        logger.info("avatar %s erased during training; result discarded", owner)
        return TrainingOutcome(False, "erased", "The avatar was deleted during training.")
    except EngineError as exc:
        logger.error("avatar %s: training failed: %s: %s", owner, type(exc).__name__, exc)
        return _finish_failed(
            avatar,
            code="training_error",
            reason=("Training failed because of a technical problem. You were not charged."),
        )
    except Exception:
        logger.exception("avatar %s: training crashed", owner)
        return _finish_failed(
            avatar,
            code="internal_error",
            reason=("Training failed because of an internal error. You were not charged."),
        )
    finally:
        del photos

    sealed = crypto.encrypt_blob(
        lora_to_bytes(trained), data_key=data_key, owner_id=owner, purpose="lora"
    )
    with transaction.atomic():
        locked = Avatar.objects.select_for_update().filter(pk=owner).first()
        if locked is None:  # erased while we trained: keep nothing
            return TrainingOutcome(False, "erased", "The avatar was deleted during training.")
        if locked.lora_status != LoraStatus.TRAINING or locked.attempts != avatar.attempts:
            # The retention sweep failed this LoRA meanwhile (photos past their limit, credit
            # refunded), or another attempt took over: this result is not kept.
            return TrainingOutcome(
                False, locked.lora_failure_code or "superseded", "This training was stopped."
            )
        name = default_storage.save(f"avatars/{owner}/lora.bin", ContentFile(sealed))
        avatar_photos_delete(avatar=locked)  # photos go the moment the avatar exists
        metadata = {
            k: v for k, v in trained.metadata.items() if isinstance(v, (str, int, float, bool))
        }
        metadata["wall_seconds"] = round(time.monotonic() - started, 2)
        now = timezone.now()
        Avatar.objects.filter(pk=owner).update(
            status=AvatarStatus.READY,
            lora_status=LoraStatus.READY,
            lora_object=name,
            lora_ready_at=now,
            training_metadata=metadata,
            progress_step=config.steps,
            finished_at=now,
            last_used_at=now,
        )
        locked.refresh_from_db()
        avatar_changed(owner)
        avatar_stage_reached.send(sender=Avatar, avatar=locked, stage="studio_ready")
    audit(
        actor=f"system:training:{owner}",
        action="avatar_trained",
        object_type="avatar",
        object_id=owner,
        purpose="train the end user's avatar",
        end_user=avatar.end_user,
    )
    logger.info("avatar %s ready in %.1fs", owner, time.monotonic() - started)
    return TrainingOutcome(True)


def avatar_reference_embedding(*, avatar: Avatar) -> np.ndarray:
    data_key = crypto.unwrap_data_key(avatar.wrapped_data_key, owner_id=str(avatar.id))
    blob = avatar.reference_embedding
    if blob is None:
        raise crypto.DecryptionError("The reference embedding has been destroyed.")
    plain = crypto.decrypt_blob(
        bytes(blob),
        data_key=data_key,
        owner_id=str(avatar.id),
        purpose="reference_embedding",
    )
    return np.frombuffer(plain, dtype=np.float32)


def avatar_identity_embedding(*, avatar: Avatar) -> np.ndarray:
    """The instant tier's identity embedding, decrypted (only in the process that renders)."""
    data_key = crypto.unwrap_data_key(avatar.wrapped_data_key, owner_id=str(avatar.id))
    blob = avatar.identity_embedding
    if blob is None:
        raise crypto.DecryptionError("The identity embedding has been destroyed.")
    plain = crypto.decrypt_blob(
        bytes(blob), data_key=data_key, owner_id=str(avatar.id), purpose="identity_embedding"
    )
    return np.frombuffer(plain, dtype=np.float32).copy()


def avatar_lora_bytes(*, avatar: Avatar) -> bytes:
    data_key = crypto.unwrap_data_key(avatar.wrapped_data_key, owner_id=str(avatar.id))
    with default_storage.open(avatar.lora_object, "rb") as handle:
        return crypto.decrypt_blob(
            handle.read(), data_key=data_key, owner_id=str(avatar.id), purpose="lora"
        )


# --- Erasure, retention, export --------------------------------------------------------------------


def avatar_erase(*, avatar: Avatar, actor: str, purpose: str) -> dict[str, int]:
    """Deletes photos and the LoRA from storage, destroys the data key and the embeddings,
    deletes the row. The row stays locked throughout, so an intake or a training run finishing
    right now cannot store photos or a LoRA that would outlive it; everything under the
    avatar's storage prefix goes too (what an interrupted attempt may have left)."""
    with transaction.atomic():
        locked = Avatar.objects.select_for_update().filter(pk=avatar.pk).first()
        if locked is None:
            return {"avatars": 0, "photos": 0}
        photos = avatar_photos_delete(avatar=locked)
        if locked.lora_object:
            delete_objects([locked.lora_object])
        delete_prefix(f"avatars/{locked.pk}")
        end_user = locked.end_user
        avatar_id = str(locked.pk)
        Avatar.objects.filter(pk=locked.pk).update(
            wrapped_data_key=None, reference_embedding=None, identity_embedding=None
        )
        Avatar.objects.filter(pk=locked.pk).delete()
        avatar_changed(avatar_id)  # its streams end
    audit(
        actor=actor,
        action="avatar_erased",
        object_type="avatar",
        object_id=avatar_id,
        purpose=purpose,
        end_user=end_user,
    )
    return {"avatars": 1, "photos": photos}


def _end_user_digest(end_user: EndUser) -> str:
    message = f"{end_user.client_id}:{end_user.external_ref}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def _generated_outputs(end_user: EndUser) -> QuerySet[RenderOutput]:

    return RenderOutput.objects.filter(job__end_user=end_user).select_related("job")


@transaction.atomic
def end_user_erase(*, principal: ConsumerPrincipal) -> ErasureReceipt:
    """Removes everything held about this end user; keeps only a minimal receipt."""

    end_user = principal.existing_end_user()
    counts = {"avatars": 0, "photos": 0, "generated_images": 0, "render_jobs": 0, "consents": 0}
    consents: list[dict] = []
    if end_user is not None:
        end_user = EndUser.objects.select_for_update().get(pk=end_user.pk)
        for avatar in Avatar.objects.filter(end_user=end_user):
            erased = avatar_erase(
                avatar=avatar, actor=actor_of(principal), purpose="erasure request"
            )
            counts["avatars"] += erased["avatars"]
            counts["photos"] += erased["photos"]
        counts["generated_images"] = delete_objects(
            output.storage_name for output in _generated_outputs(end_user)
        )
        # Job rows carry the specs (queue payloads of record); they go too.
        _, deleted = RenderJob.objects.filter(end_user=end_user).delete()
        counts["render_jobs"] = deleted.get("jobs.RenderJob", 0)
        now = timezone.now()
        for record in ConsentRecord.objects.filter(end_user=end_user).order_by("created_at"):
            consents.append(
                {
                    "version": record.agreement_version,
                    "hash": record.agreement_hash,
                    "given_at": record.created_at.isoformat(),
                    "withdrawn_at": (record.withdrawn_at or now).isoformat(),
                }
            )
        counts["consents"] = len(consents)
        digest = _end_user_digest(end_user)
        ConsentRecord.objects.filter(end_user=end_user).delete()

        OwnerTurn.objects.filter(owner_key=owner_key(end_user_id=end_user.pk)).delete()
        # Cascades to credit entries and webhook events; audit rows keep no link (SET_NULL).
        end_user.delete()
    else:
        digest = _end_user_digest(
            EndUser(client=principal.client, external_ref=principal.end_user_ref or "")
        )
    receipt = ErasureReceipt.objects.create(
        client=principal.client, end_user_digest=digest, counts=counts, consents=consents
    )
    audit(
        actor=actor_of(principal),
        action="end_user_erased",
        object_type="erasure_receipt",
        object_id=receipt.id,
        purpose="erasure request",
    )
    return receipt


def end_user_export(*, principal: ConsumerPrincipal) -> bytes:
    """A zip of everything held about this end user: metadata, consents, generated images."""
    end_user = principal.existing_end_user()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        manifest: dict = {
            "end_user": principal.end_user_ref,
            "exported_at": timezone.now().isoformat(),
            "avatars": [],
            "consents": [],
            "generated_images": [],
        }
        if end_user is not None:
            for avatar in Avatar.objects.filter(end_user=end_user):
                manifest["avatars"].append(
                    {
                        "id": str(avatar.id),
                        "name": avatar.name,
                        "status": avatar.status,
                        "created_at": avatar.created_at.isoformat(),
                        "last_used_at": avatar.last_used_at.isoformat(),
                        "photos_held": avatar.photos.count(),
                        "tier": avatar.tier,
                        "lora_status": avatar.lora_status,
                        "instant_ready_at": avatar.instant_ready_at.isoformat()
                        if avatar.instant_ready_at
                        else None,
                        "training": avatar.training_metadata,
                        "holds_face_embedding": bool(avatar.reference_embedding),
                        "holds_identity_embedding": bool(avatar.identity_embedding),
                        "identity_adapter": avatar.identity_adapter,
                    }
                )
                if avatar.identity_embedding:
                    # A copy of the biometric data we hold (access right), as numbers.
                    archive.writestr(
                        f"avatars/{avatar.id}/identity_embedding.json",
                        json.dumps(
                            {
                                "adapter": avatar.identity_adapter,
                                "kind": avatar.identity_kind,
                                "values": [
                                    round(float(v), 7)
                                    for v in avatar_identity_embedding(avatar=avatar)
                                ],
                            }
                        ),
                    )
            for record in ConsentRecord.objects.filter(end_user=end_user):
                manifest["consents"].append(
                    {
                        "id": str(record.id),
                        "version": record.agreement_version,
                        "hash": record.agreement_hash,
                        "language": record.language,
                        "text_shown": record.text_shown,
                        "items": record.items,
                        "age_confirmation": record.age_confirmation,
                        "given_at": record.created_at.isoformat(),
                        "withdrawn_at": record.withdrawn_at.isoformat()
                        if record.withdrawn_at
                        else None,
                    }
                )
            for output in _generated_outputs(end_user):
                path = f"images/{output.job_id}/{output.index}.png"
                with default_storage.open(output.storage_name, "rb") as handle:
                    archive.writestr(path, handle.read())
                manifest["generated_images"].append(
                    {
                        "path": path,
                        "job": str(output.job_id),
                        "created_at": output.created_at.isoformat(),
                    }
                )
        archive.writestr("export.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    audit(
        actor=actor_of(principal),
        action="export",
        object_type="end_user",
        purpose="access request",
        end_user=end_user,
    )
    return buffer.getvalue()


def retention_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Deletes expired avatars and over-age photos; records deletion notices."""
    now = now or timezone.now()
    retention = timedelta(days=settings.AVATAR_RETENTION_DAYS)
    notice_at = retention - timedelta(days=settings.AVATAR_DELETION_NOTICE_DAYS)
    counts = {"avatars_deleted": 0, "notices": 0, "photos_deleted": 0}

    for avatar in Avatar.objects.filter(is_test_avatar=False, last_used_at__lt=now - retention):
        avatar_erase(avatar=avatar, actor="system:retention", purpose="retention period ended")
        counts["avatars_deleted"] += 1
    counts["notices"] = Avatar.objects.filter(
        is_test_avatar=False,
        last_used_at__lt=now - notice_at,
        deletion_notice_at__isnull=True,
    ).update(deletion_notice_at=now)

    hard_limit = now - timedelta(hours=settings.PHOTO_HARD_LIMIT_HOURS)
    stale = Avatar.objects.filter(photos__created_at__lt=hard_limit).distinct()
    for avatar in stale:
        with transaction.atomic():
            locked = Avatar.objects.select_for_update().filter(pk=avatar.pk).first()
            if locked is None:
                continue
            counts["photos_deleted"] += avatar_photos_delete(avatar=locked)
            if locked.is_in_flight:
                reason = (
                    "Training did not finish within the photo retention limit; your "
                    "photos were deleted. You were not charged."
                )
                _finish_failed(locked, code="photos_expired", reason=reason)
                _fail_waiting_training(locked, code="photos_expired", reason=reason)
    if any(counts.values()):
        logger.info("retention sweep: %s", counts)
    return counts


def master_keys_rotate() -> int:
    """Re-wraps every data key with the current master key. Returns how many changed."""
    current = crypto.master_keys().current_id
    changed = 0
    for avatar in Avatar.objects.exclude(wrapped_data_key=None).iterator():
        if avatar.wrapped_data_key is None:
            continue
        wrapped = bytes(avatar.wrapped_data_key)
        if crypto.wrapped_key_id(wrapped) == current:
            continue
        data_key = crypto.unwrap_data_key(wrapped, owner_id=str(avatar.id))
        Avatar.objects.filter(pk=avatar.pk).update(
            wrapped_data_key=crypto.wrap_data_key(data_key, owner_id=str(avatar.id))
        )
        changed += 1
    return changed
