"""Writes for templates: revisions, assets, previews and the review workflow.

Every workflow transition is one atomic function that locks the template, checks the state,
writes the new state and an event (the audit trail and the frontend's feed).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils.text import slugify
from PIL import Image

from avatars.models import Avatar, Identity
from jobs.assets import asset_storage_name
from jobs.models import JobStatus, RenderJob
from jobs.services import job_create
from workstation.accounts.models import Role, User
from workstation.errors import ConflictError, InvalidInput

from .kinds import PREVIEW

if TYPE_CHECKING:
    from engine.imageio import ImageHeader
from .models import (
    AssetKind,
    CellStatus,
    ControlAsset,
    Preview,
    PreviewCell,
    Review,
    ReviewState,
    Template,
    TemplateEvent,
    TemplateRevision,
    TemplateStats,
    TemplateStatus,
)
from .spec import render_spec_for_cell, validate_template_spec

logger = logging.getLogger(__name__)

# Assets are kept at most this long on their longer side.
ASSET_MAX_SIDE = 2048


def _event(
    *,
    template: Template,
    actor: User,
    action: str,
    from_status: str = "",
    revision: TemplateRevision | None = None,
    comment: str = "",
) -> TemplateEvent:
    return TemplateEvent.objects.create(
        template=template,
        revision=revision,
        actor=actor,
        action=action,
        from_status=from_status,
        to_status=template.status,
        comment=comment,
    )


def _locked(template: Template) -> Template:
    return Template.objects.select_for_update().get(pk=template.pk)


# --- Templates and revisions -------------------------------------------------------------------


def _unique_slug(title: str) -> str:
    base = slugify(title)[:120] or "template"
    slug, n = base, 1
    while Template.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _check_assets(spec: dict, user: User) -> None:
    for index, control in enumerate(spec["controls"]):
        asset = ControlAsset.objects.filter(owner=user, sha256=control["asset"]).first()
        if asset is None:
            raise InvalidInput({f"controls.{index}.asset": ["No such asset among your uploads."]})
        if control["kind"] != asset.kind and not (
            control["kind"] in ("reference", "lighting") and asset.kind in ("reference", "lighting")
        ):
            raise InvalidInput(
                {
                    f"controls.{index}.kind": [
                        f"The asset is a {asset.kind} image, not {control['kind']}."
                    ]
                }
            )


@transaction.atomic
def template_create(
    *,
    user: User,
    title: str,
    category: str,
    tags: list[str],
    intended_gender: str = "",
    intended_age: str = "",
    spec: dict,
) -> Template:
    spec = validate_template_spec(spec, base_size=settings.TEMPLATE_BASE_SIZE)
    _check_assets(spec, user)
    template = Template.objects.create(
        owner=user,
        title=title,
        slug=_unique_slug(title),
        category=category,
        tags=tags,
        intended_gender=intended_gender,
        intended_age=intended_age,
    )
    TemplateStats.objects.create(template=template)
    revision = TemplateRevision.objects.create(
        template=template,
        number=1,
        spec=spec,
        change_note=spec.get("change_note", ""),
        created_by=user,
    )
    _event(template=template, actor=user, action="created", revision=revision)
    return template


@transaction.atomic
def revision_create(*, template: Template, user: User, spec: dict) -> TemplateRevision:
    """Saves a new draft revision. The published revision keeps serving untouched."""
    template = _locked(template)
    if template.status == TemplateStatus.RETIRED:
        raise ConflictError("This template is retired; it cannot be edited.")
    spec = validate_template_spec(spec, base_size=settings.TEMPLATE_BASE_SIZE)
    _check_assets(spec, user)
    number = (template.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    revision = TemplateRevision.objects.create(
        template=template,
        number=number,
        spec=spec,
        change_note=spec.get("change_note", ""),
        created_by=user,
    )
    template.save(update_fields=["updated_at"])
    _event(
        template=template,
        actor=user,
        action="revised",
        revision=revision,
        from_status=template.status,
    )
    return revision


# --- Assets ----------------------------------------------------------------------------------------


def _store_asset(
    *, png: bytes, kind: str, width: int, height: int, user: User, keypoints: dict | None = None
) -> tuple[ControlAsset, bool]:
    """The user's own asset with these bytes, created unless they already uploaded them.

    Only the uploader's namespace is consulted: their rows and their own storage prefix. So
    nothing in the answer, its status or its timing depends on another owner's uploads."""
    digest = hashlib.sha256(png).hexdigest()
    existing = ControlAsset.objects.filter(owner=user, sha256=digest).first()
    if existing is not None:
        return existing, False
    name = asset_storage_name(digest, user.pk)
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(png))
    try:
        with transaction.atomic():
            asset = ControlAsset.objects.create(
                owner=user,
                sha256=digest,
                kind=kind,
                storage_name=name,
                width=width,
                height=height,
                keypoints=keypoints,
            )
    except IntegrityError:
        # The same user's concurrent upload of the same bytes won the race: theirs it is.
        return ControlAsset.objects.get(owner=user, sha256=digest), False
    return asset, True


def _draft_side(header: ImageHeader) -> int | None:
    """The `draft_side` that lets a JPEG decoder scale down as far as it can while both sides
    stay at least as long as the kept image's (its longer side ASSET_MAX_SIDE)."""
    longer, shorter = max(header.width, header.height), min(header.width, header.height)
    if longer <= ASSET_MAX_SIDE:
        return None
    return max(1, math.ceil(ASSET_MAX_SIDE * shorter / longer))


def asset_upload(*, user: User, data: bytes, kind: str) -> tuple[ControlAsset, bool]:
    """Decodes safely (magic bytes, pixel limit, EXIF orientation), re-encodes pixels as PNG.

    Bounded whatever the content: the declared size is read from the header and an image
    over ASSET_MAX_PIXELS is refused (400) before any pixel is decoded; a JPEG decodes
    at the smallest 1/2, 1/4 or 1/8 scale that still covers the kept size (longer side 2048)."""
    from engine.imageio import ImageDecodeError, decode_rgb, read_header

    if kind not in AssetKind.values:
        raise InvalidInput({"kind": [f"Must be one of: {', '.join(AssetKind.values)}."]})
    if len(data) > settings.AVATAR_PHOTO_MAX_BYTES:
        raise InvalidInput({"file": ["The file is too large."]})
    try:
        header = read_header(data)
        if header.pixels > settings.ASSET_MAX_PIXELS:
            raise InvalidInput(
                {
                    "file": [
                        f"The image is {header.width}x{header.height} "
                        f"({header.pixels / 1e6:.1f} megapixels); at most "
                        f"{settings.ASSET_MAX_PIXELS / 1e6:.1f} megapixels are accepted."
                    ]
                }
            )
        image = decode_rgb(
            data, max_pixels=settings.ASSET_MAX_PIXELS, draft_side=_draft_side(header)
        )
    except ImageDecodeError as exc:
        raise InvalidInput({"file": [str(exc)]}) from exc
    if max(image.size) > ASSET_MAX_SIDE or min(image.size) < 64:
        image.thumbnail((ASSET_MAX_SIDE, ASSET_MAX_SIDE))
        if min(image.size) < 64:
            raise InvalidInput({"file": ["The image must be at least 64 pixels on each side."]})
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    width, height = image.size
    del image  # the pixels go before the PNG is hashed and stored
    return _store_asset(png=buffer.getvalue(), kind=kind, width=width, height=height, user=user)


def pose_asset_create(*, user: User, pose: dict) -> tuple[ControlAsset, bool]:
    """COCO-18 keypoints -> an OpenPose-style control image, stored with its keypoints."""
    from engine.pose import PoseError, parse_pose, pose_to_json, render_openpose

    try:
        parsed = parse_pose(pose)
    except PoseError as exc:
        raise InvalidInput({f"pose.{exc.field}": [str(exc)]}) from exc
    image = render_openpose(parsed)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _store_asset(
        png=buffer.getvalue(),
        kind=AssetKind.POSE,
        width=image.width,
        height=image.height,
        user=user,
        keypoints=pose_to_json(parsed),
    )


# --- Previews --------------------------------------------------------------------------------------


def panel_avatars() -> list[Avatar]:
    """The test-avatar panel previews render on: test avatars with at least one tier ready
    (the instant tier is usable while the LoRA still trains), oldest first."""
    candidates = Avatar.objects.filter(is_test_avatar=True).filter(
        ~Q(lora_object="") | (Q(identity_embedding__isnull=False) & ~Q(identity_adapter=""))
    )
    return [a for a in candidates.order_by("created_at") if a.tier is not None]


def _avatar_label(avatar: Avatar) -> str:
    return f"{avatar.name} ({avatar.id})" if avatar.name else str(avatar.id)


def _cell_identities(chosen: list[Avatar], identity: str | None) -> dict[str, str]:
    """The identity each chosen avatar renders with: its best available one, or the one
    named (every chosen avatar must have it)."""
    if identity is None:
        return {str(a.id): a.available_identities()[0] for a in chosen}
    if identity not in Identity.values:
        raise InvalidInput({"identity": [f"Must be one of: {', '.join(Identity.values)}."]})
    lacking = [a for a in chosen if identity not in a.available_identities()]
    if lacking:
        label = Identity(identity).label
        raise InvalidInput(
            {
                "identity": [
                    f'"{identity}" is not available for the test avatars: '
                    f"{', '.join(_avatar_label(a) for a in lacking)}."
                ]
            },
            message=f'These test avatars cannot render with identity "{identity}" ({label}): '
            f"{', '.join(a.name or str(a.id) for a in lacking)}. Choose another identity, "
            "or preview without them.",
            details=[
                {
                    "field": "identity",
                    "code": "identity_unavailable",
                    "avatar": str(a.id),
                    "name": a.name,
                    "available": a.available_identities(),
                }
                for a in lacking
            ],
        )
    return {str(a.id): identity for a in chosen}


def preview_create(
    *,
    revision: TemplateRevision,
    user: User,
    avatar_ids: list[str] | None = None,
    identity: str | None = None,
) -> Preview:
    """Renders the revision on the panel x its seeds.

    `identity` (`avatars.models.Identity`) is how each avatar enters its renders: None = each
    avatar's best available (both tiers, else the LoRA, else the instant adapter); a named one
    is used for every chosen avatar, and a chosen avatar without it is a 400 naming it.
    Cells already rendered for this (revision, avatar, seed, engine version, identity) are
    reused: nothing is rendered twice."""
    panel = panel_avatars()
    if not panel:
        raise ConflictError("The test-avatar panel has no ready avatars yet.")
    by_id = {str(a.id): a for a in panel}
    if avatar_ids:
        unknown = [a for a in avatar_ids if str(a) not in by_id]
        if unknown:
            raise InvalidInput(
                {"avatars": [f"Not ready test avatars: {', '.join(map(str, unknown))}."]}
            )
        chosen = list({str(a): by_id[str(a)] for a in avatar_ids}.values())
    else:
        chosen = panel
    identities = _cell_identities(chosen, identity)
    seeds = list(revision.spec["seeds"])
    new_cells = 0
    with transaction.atomic():
        preview = Preview.objects.create(
            revision=revision,
            requested_by=user,
            avatar_ids=[str(a.id) for a in chosen],
            seeds=seeds,
            full_panel={str(a.id) for a in chosen} == set(by_id),
        )
        for avatar in chosen:
            cell_identity = identities[str(avatar.id)]
            for seed in seeds:
                cell, created = PreviewCell.objects.select_for_update().get_or_create(
                    revision=revision,
                    avatar=avatar,
                    seed=seed,
                    engine_version=settings.ENGINE_VERSION,
                    identity=cell_identity,
                )
                if created or cell.status == CellStatus.FAILED:
                    job = job_create(
                        kind=PREVIEW,
                        created_by=user,
                        spec=render_spec_for_cell(
                            revision.spec,
                            avatar_id=str(avatar.id),
                            seed=seed,
                            asset_owner_id=revision.created_by_id,
                            identity=cell_identity,
                        ),
                    )
                    cell.job, cell.status, cell.error = job, CellStatus.PENDING, ""
                    cell.save(update_fields=["job", "status", "error"])
                    new_cells += 1
                preview.cells.add(cell)
        preview.new_cells = new_cells
        preview.save(update_fields=["new_cells"])
    logger.info("preview %s: %d cells, %d new", preview.id, len(chosen) * len(seeds), new_cells)
    return preview


def preview_cell_finished(job: RenderJob) -> None:
    """The preview kind's terminal hook: the cell shows the job's image or its failure."""
    cell = PreviewCell.objects.filter(job=job).first()
    if cell is None:
        return
    output = job.outputs.order_by("index").first()
    if job.status == JobStatus.SUCCEEDED and output is not None:
        cell.status, cell.output_name, cell.likeness = (
            CellStatus.SUCCEEDED,
            output.storage_name,
            output.likeness,
        )
    else:
        cell.status, cell.error = CellStatus.FAILED, job.error_message[:500]
    cell.save(update_fields=["status", "output_name", "likeness", "error"])


def preview_is_complete(preview: Preview) -> bool:
    return not preview.cells.exclude(status=CellStatus.SUCCEEDED).exists()


# --- Review workflow ---------------------------------------------------------------------------------


@transaction.atomic
def template_submit(*, revision: TemplateRevision, user: User, note: str = "") -> Review:
    template = _locked(revision.template)
    if template.owner_id != user.pk:
        raise ConflictError("Only the template's owner can submit it.")
    if template.status == TemplateStatus.RETIRED:
        raise ConflictError("A retired template cannot be submitted.")
    preview = next(
        (
            p
            for p in revision.previews.filter(full_panel=True).order_by("-created_at")
            if preview_is_complete(p)
        ),
        None,
    )
    if preview is None:
        raise ConflictError(
            "Preview this exact revision on the full test-avatar panel, and wait for every "
            "cell to finish, before submitting."
        )
    if template.live_revision_id == revision.pk:
        raise ConflictError("This revision is already the published one.")
    previous = template.status
    try:
        with transaction.atomic():
            review = Review.objects.create(
                template=template, revision=revision, preview=preview, submitted_by=user, note=note
            )
    except IntegrityError as exc:
        raise ConflictError("This template already has an open review.") from exc
    template.status = TemplateStatus.IN_REVIEW
    template.save(update_fields=["status", "updated_at"])
    action = "resubmitted" if previous == TemplateStatus.CHANGES_REQUESTED else "submitted"
    _event(
        template=template,
        actor=user,
        action=action,
        revision=revision,
        from_status=previous,
        comment=note,
    )
    return review


def _open_review(review: Review, user: User) -> tuple[Review, Template]:
    template = _locked(review.template)
    review = Review.objects.select_for_update().get(pk=review.pk)
    if review.state != ReviewState.OPEN:
        raise ConflictError(f"This review is already {review.state}.")
    if not user.has_role(Role.REVIEWER):
        raise ConflictError("Only reviewers decide reviews.")
    if template.owner_id == user.pk:
        raise ConflictError("You cannot review your own template.")
    return review, template


@transaction.atomic
def review_approve(*, review: Review, user: User, comment: str = "") -> Template:
    """Approves and publishes: the catalog now serves this revision."""
    from django.utils import timezone

    review, template = _open_review(review, user)
    review.state, review.decided_by, review.comment = ReviewState.APPROVED, user, comment
    review.decided_at = timezone.now()
    review.save(update_fields=["state", "decided_by", "comment", "decided_at"])
    previous = template.status
    template.status = TemplateStatus.PUBLISHED
    template.live_revision = review.revision
    template.cover = (
        review.preview.cells.filter(status=CellStatus.SUCCEEDED)
        .order_by(F("likeness").desc(nulls_last=True), "avatar_id", "seed")
        .first()
    )
    if previous != TemplateStatus.PUBLISHED and not template.catalog_order:
        template.catalog_order = (Template.objects.aggregate(n=Max("catalog_order"))["n"] or 0) + 1
    template.save(update_fields=["status", "live_revision", "cover", "catalog_order", "updated_at"])
    _event(
        template=template,
        actor=user,
        action="approved",
        revision=review.revision,
        from_status=previous,
        comment=comment,
    )
    return template


@transaction.atomic
def review_request_changes(*, review: Review, user: User, comment: str) -> Template:
    from django.utils import timezone

    if not comment.strip():
        raise InvalidInput({"comment": ["Tell the designer what to change."]})
    review, template = _open_review(review, user)
    review.state, review.decided_by, review.comment = ReviewState.CHANGES_REQUESTED, user, comment
    review.decided_at = timezone.now()
    review.save(update_fields=["state", "decided_by", "comment", "decided_at"])
    previous = template.status
    # A published template keeps serving its live revision while the new one is reworked.
    template.status = (
        TemplateStatus.PUBLISHED if template.live_revision_id else TemplateStatus.CHANGES_REQUESTED
    )
    template.save(update_fields=["status", "updated_at"])
    _event(
        template=template,
        actor=user,
        action="changes_requested",
        revision=review.revision,
        from_status=previous,
        comment=comment,
    )
    return template


@transaction.atomic
def template_unpublish(*, template: Template, user: User, comment: str = "") -> Template:
    template = _locked(template)
    if template.status != TemplateStatus.PUBLISHED:
        raise ConflictError("Only a published template can be unpublished.")
    previous = template.status
    template.status, template.live_revision = TemplateStatus.DRAFT, None
    template.save(update_fields=["status", "live_revision", "updated_at"])
    _event(
        template=template, actor=user, action="unpublished", from_status=previous, comment=comment
    )
    return template


@transaction.atomic
def template_retire(*, template: Template, user: User, comment: str = "") -> Template:
    template = _locked(template)
    if template.status == TemplateStatus.RETIRED:
        raise ConflictError("This template is already retired.")
    previous = template.status
    from django.utils import timezone

    Review.objects.filter(template=template, state=ReviewState.OPEN).update(
        state=ReviewState.CHANGES_REQUESTED,
        decided_by=user,
        comment="Template retired.",
        decided_at=timezone.now(),
    )
    template.status, template.live_revision = TemplateStatus.RETIRED, None
    template.save(update_fields=["status", "live_revision", "updated_at"])
    _event(template=template, actor=user, action="retired", from_status=previous, comment=comment)
    return template


@transaction.atomic
def catalog_reorder(*, user: User, template_ids: list[uuid.UUID]) -> None:
    published = {
        t.pk: t
        for t in Template.objects.select_for_update().filter(status=TemplateStatus.PUBLISHED)
    }
    unknown = [str(t) for t in template_ids if t not in published]
    if unknown:
        raise InvalidInput({"templates": [f"Not published: {', '.join(unknown)}."]})
    for position, template_id in enumerate(template_ids, start=1):
        Template.objects.filter(pk=template_id).update(catalog_order=position)


def template_stats_record(*, template_id: uuid.UUID | str, field: str, amount: int = 1) -> None:
    """Counts a generation, refinement, download or failure (called by generations)."""
    if field not in ("generations", "refinements", "downloads", "failures"):
        raise ValueError(field)
    TemplateStats.objects.filter(template_id=template_id).update(**{field: F(field) + amount})


def cell_image(cell: PreviewCell) -> Image.Image:
    with default_storage.open(cell.output_name, "rb") as handle:
        return Image.open(io.BytesIO(handle.read())).convert("RGB")
