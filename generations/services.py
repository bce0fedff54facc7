"""Consumer generation and "more like me" refinement, on the queue of record."""

from __future__ import annotations

import copy
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from avatars.models import Avatar
from credits import services as credits
from credits.models import CreditType
from engine.errors import SpecError
from engine.likeness import refine_spec
from engine.spec import RenderSpec
from jobs.assets import with_placeholder_images
from jobs.models import JobStatus, RenderJob, RenderOutput
from jobs.services import job_create
from templates_studio.models import Template
from templates_studio.selectors import published_templates
from templates_studio.services import template_stats_record
from templates_studio.spec import identity_of_spec, render_spec_for_cell
from workstation.accounts.models import EndUser
from workstation.errors import ConflictError, InvalidInput
from workstation.ownership import owner_key

from .kinds import CONSUMER_KINDS, GENERATION, REFINEMENT

OUTPUT_SALT = "render-output"
IDENTICAL_REFINEMENT_NOTICE = (
    "This refinement came out identical to the portrait it refines: you were not charged."
)


def _existing(
    end_user: EndUser, idempotency_key: str, *, kind: str, parent: RenderJob | None = None
) -> RenderJob | None:
    """The job this key already created; 409 if the key was used for a different request."""
    if not idempotency_key:
        return None
    job = RenderJob.objects.filter(
        owner_key=owner_key(end_user_id=end_user.pk), idempotency_key=idempotency_key
    ).first()
    if job is not None and (job.kind != kind or job.parent_id != (parent.pk if parent else None)):
        raise ConflictError("This Idempotency-Key was already used for a different request.")
    return job


def generation_cost(*, avatar: Avatar) -> int:
    """0 within the avatar's included allowance (AVATAR_GENERATION_ALLOWANCE), else 1
    generation credit."""
    used = RenderJob.objects.filter(
        kind__in=CONSUMER_KINDS,
        avatar=avatar,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED],
    ).count()
    return 0 if used < settings.AVATAR_GENERATION_ALLOWANCE else 1


def _deadline(cancel_after_s: float | None) -> datetime | None:
    return timezone.now() + timedelta(seconds=cancel_after_s) if cancel_after_s else None


def _create(
    *,
    end_user: EndUser,
    kind: str,
    spec: dict,
    template: Template,
    avatar: Avatar,
    idempotency_key: str,
    cancel_after_s: float | None,
    parent: RenderJob | None = None,
) -> tuple[RenderJob, bool]:
    try:
        with transaction.atomic():
            # Lock the end user first: allowance counting and spending are serialized per user.
            EndUser.objects.select_for_update().get(pk=end_user.pk)
            # And the avatar: an erasure racing this request either happens before (409
            # here) or waits for this job, which it then deletes with the avatar's jobs.
            if not Avatar.objects.select_for_update().filter(pk=avatar.pk).exists():
                raise ConflictError("The avatar was deleted.")
            cost = generation_cost(avatar=avatar)
            job = job_create(
                kind=kind,
                spec=spec,
                end_user=end_user,
                template=template,
                avatar=avatar,
                parent=parent,
                idempotency_key=idempotency_key,
                deadline_at=_deadline(cancel_after_s),
            )
            if cost and settings.ENTITLEMENTS_ENFORCED:
                credits.charge(
                    end_user=end_user,
                    credit_type=CreditType.GENERATION,
                    amount=cost,
                    note=f"{kind} beyond the allowance",
                    job=job,
                )
            Avatar.objects.filter(pk=avatar.pk).update(
                last_used_at=timezone.now(), deletion_notice_at=None
            )
    except IntegrityError:  # the same Idempotency-Key raced in a parallel request
        existing = _existing(end_user, idempotency_key, kind=kind, parent=parent)
        if existing is None:
            raise
        return existing, False
    field = "refinements" if kind == REFINEMENT else "generations"
    template_stats_record(template_id=template.pk, field=field)
    return job, True


def _usable_identity(avatar: Avatar, identity: str | None) -> str:
    """The identity to render with: the one asked for, or the best the avatar has now; 409
    with what it has (and when the rest is due) otherwise."""
    available = avatar.available_identities()
    if not available:
        raise ConflictError(
            f"The avatar is {avatar.status} and has no usable tier yet"
            + (f" ({avatar.failure_reason})" if avatar.failure_reason else ".")
        )
    if identity is None:
        return available[0]
    if identity not in available:
        raise ConflictError(
            f'The avatar cannot render with identity "{identity}" now; it has: '
            f"{', '.join(available)} (LoRA: {avatar.lora_status})."
        )
    return identity


def generation_create(
    *,
    end_user: EndUser,
    template_id: uuid.UUID | str,
    avatar_id: uuid.UUID | str,
    likeness: float | None,
    identity: str | None = None,
    idempotency_key: str = "",
    cancel_after_s: float | None = None,
) -> tuple[RenderJob, bool]:
    """Renders a published template's candidates for the end user's avatar and keeps the
    best by likeness. ``identity`` ("instant", "lora", "both"; None: the best the avatar has
    now) says which tier carries the face. The same Idempotency-Key returns the same job
    (created=False)."""
    existing = _existing(end_user, idempotency_key, kind=GENERATION)
    if existing is not None:
        return existing, False
    template = published_templates().filter(pk=template_id).first()
    if template is None:
        raise InvalidInput({"template": ["No published template with this id."]})
    avatar = Avatar.objects.filter(pk=avatar_id, end_user=end_user, is_test_avatar=False).first()
    if avatar is None:
        raise InvalidInput({"avatar": ["No avatar with this id for this end user."]})
    identity = _usable_identity(avatar, identity)
    assert template.live_revision is not None  # published_templates() has a live revision
    live = template.live_revision.spec
    spec = render_spec_for_cell(
        live,
        avatar_id=str(avatar.id),
        seed=secrets.randbelow(2**31),
        asset_owner_id=template.live_revision.created_by_id,
        likeness=likeness,
        identity=identity,
    )
    spec["num_images"] = live["candidates"]
    spec["keep"] = live["keep"]
    return _create(
        end_user=end_user,
        kind=GENERATION,
        spec=spec,
        template=template,
        avatar=avatar,
        idempotency_key=idempotency_key,
        cancel_after_s=cancel_after_s,
    )


def refined_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The job spec one "more like me" level further, by the engine's own schedule
    (`engine.likeness.refine_spec`: more avatar weight, less style, a stronger face pass; the
    same seeds, so the same compositions). Asset references are kept as they are."""
    base = dict(spec)
    # The face pass needs at least one denoising step at its default strength (0.35).
    if "face_refine" not in base and base.get("steps", 0) * 0.35 >= 1:
        base["face_refine"] = {}
    try:
        refined = refine_spec(RenderSpec.from_dict(with_placeholder_images(base)), 1)
    except SpecError as exc:
        raise ConflictError(f"This portrait cannot be refined further ({exc.message}).") from exc
    out = copy.deepcopy(base)
    out["refine_level"] = refined.refine_level
    if refined.avatar is not None:
        out["avatar"] = {**out["avatar"], "weight": refined.avatar.weight}
    if refined.identity is not None:
        out["identity"] = {**out["identity"], "scale": refined.identity.scale}
    for index, lora in enumerate(refined.style_loras):
        out["style_loras"][index] = {**out["style_loras"][index], "weight": lora.weight}
    if refined.face_refine is not None:
        out["face_refine"] = {
            **out["face_refine"],
            "strength": refined.face_refine.strength,
            "avatar_boost": refined.face_refine.avatar_boost,
        }
    return out


def refinement_identical_to_parent(job: RenderJob) -> bool:
    """A finished refinement whose images are pixel for pixel its parent's (compared before
    the labels, which differ by job id)."""
    if job.kind != REFINEMENT or job.parent_id is None or job.status != JobStatus.SUCCEEDED:
        return False
    mine = sorted(job.outputs.values_list("content_sha256", flat=True))
    parents = sorted(
        RenderOutput.objects.filter(job_id=job.parent_id).values_list("content_sha256", flat=True)
    )
    return bool(mine) and "" not in mine and mine == parents


def refund_identical_refinement(job: RenderJob) -> None:
    """The refinement kind's terminal hook: a refinement that changed nothing is not charged."""
    if refinement_identical_to_parent(job):
        credits.refund_job(job=job, note=IDENTICAL_REFINEMENT_NOTICE)


def generation_refine(
    *,
    end_user: EndUser,
    parent: RenderJob,
    idempotency_key: str = "",
    cancel_after_s: float | None = None,
) -> tuple[RenderJob, bool]:
    """ "More like me": the same composition one refinement level further (the engine raises
    the avatar's weight, lowers the styles' and re-renders the face)."""
    existing = _existing(end_user, idempotency_key, kind=REFINEMENT, parent=parent)
    if existing is not None:
        return existing, False
    if parent.status != JobStatus.SUCCEEDED:
        raise ConflictError("Only a succeeded generation can be refined.")
    avatar = (
        Avatar.objects.filter(pk=parent.avatar_id).first() if parent.avatar_id is not None else None
    )
    if avatar is None or parent.template is None:
        raise ConflictError("The avatar or template of this generation is no longer available.")
    used = identity_of_spec(parent.spec)
    if used is not None and used not in avatar.available_identities():
        raise ConflictError(f'The avatar no longer has the identity "{used}" this generation used.')
    spec = refined_spec(parent.spec)
    return _create(
        end_user=end_user,
        kind=REFINEMENT,
        spec=spec,
        template=parent.template,
        avatar=avatar,
        idempotency_key=idempotency_key,
        cancel_after_s=cancel_after_s,
        parent=parent,
    )


def output_token(output: RenderOutput) -> str:
    return signing.dumps({"o": output.pk}, salt=OUTPUT_SALT, compress=True)


def output_from_token(token: str) -> RenderOutput | None:
    try:
        data = signing.loads(token, salt=OUTPUT_SALT, max_age=settings.OUTPUT_URL_TTL_S)
    except signing.BadSignature:
        return None
    return RenderOutput.objects.select_related("job").filter(pk=data.get("o")).first()
