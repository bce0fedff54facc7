"""Photo intake, in two stages.

At the door (the web request, milliseconds, no pixel decoded): the number of photos; per photo
its size in bytes, JPEG/PNG/WEBP by magic bytes only and its declared width x height read from
the header against a per-photo pixel budget; the sum of all declared pixels against a
per-request budget. A photo that fails is dropped with its reason; the upload is refused (400,
nothing stored) only when the front photo fails or too few photos are left. What passes is
stored encrypted, exactly as received, until screening.

Screening (the first stage of the avatar's training job, in a worker): decoding (JPEG at reduced
size, every format within the pixel budget), EXIF orientation applied and all metadata dropped;
exactly one face; face size and sharpness; the same person as the front photo; and, when
configured, content safety. Only the kept, face-aligned crops move on: the minimum needed to
train. A web process therefore never holds a decoded photo, whatever it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image

from workstation.engine_host import get_engine
from workstation.errors import InvalidInput

NOT_MOST_CONSISTENT = "not_among_most_consistent"


@dataclass(frozen=True)
class PhotoIssue:
    field: str  # "front_photo" or "photos.<index>"
    code: str
    reason: str

    def as_detail(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class ReceivedPhotos:
    """What passed the door: the front photo, the other photos by their index in the upload
    (files spooled by Django, read one at a time when stored), and why the others were
    dropped."""

    front: UploadedFile
    photos: dict[int, UploadedFile]
    dropped: list[PhotoIssue]


@dataclass(frozen=True)
class ScreenedPhotos:
    crops: list[Image.Image]
    reference_embedding: np.ndarray
    dropped: list[PhotoIssue]


class PhotosRejected(Exception):
    """Screening left too few usable photos (or the front photo is unusable)."""

    def __init__(self, code: str, message: str, issues: list[PhotoIssue]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.issues = issues


def _declared_pixels(upload: UploadedFile, field: str) -> int | PhotoIssue:
    """Width x height from the header alone (the file is not read beyond it), within the
    byte limit and the per-photo pixel budget."""
    from engine.imageio import ImageDecodeError, read_header

    if upload.size is None or upload.size > settings.AVATAR_PHOTO_MAX_BYTES:
        return PhotoIssue(
            field,
            "file_too_large",
            f"The file is larger than {settings.AVATAR_PHOTO_MAX_BYTES // 2**20} MB.",
        )
    try:
        upload.seek(0)
        header = read_header(cast(BinaryIO, upload))
    except ImageDecodeError as exc:
        return PhotoIssue(field, exc.code, str(exc))
    if header.pixels > settings.AVATAR_PHOTO_MAX_PIXELS:
        return PhotoIssue(
            field,
            "image_too_large",
            f"The image is {header.width}x{header.height}; at most "
            f"{settings.AVATAR_PHOTO_MAX_PIXELS / 1e6:.0f} megapixels are accepted.",
        )
    return header.pixels


def _reject(issues: list[PhotoIssue], message: str) -> InvalidInput:
    fields: dict[str, list[str]] = {}
    for issue in issues:
        fields.setdefault(issue.field, []).append(issue.reason)
    return InvalidInput(fields, message=message, details=[i.as_detail() for i in issues])


def _too_few_message(usable: int, count: int, *, stored: bool) -> str:
    return (
        f"Only {usable} of {count} photos can be used; at least "
        f"{settings.AVATAR_MIN_USABLE_PHOTOS} are needed. "
        + ("Nothing was stored." if not stored else "Your photos were deleted.")
    )


def receive_photos(*, front: UploadedFile, photos: Sequence[UploadedFile]) -> ReceivedPhotos:
    """The door: cheap checks only. Raises a 400 naming every photo when the upload cannot
    make an avatar; otherwise returns what to store and what was dropped."""
    count = len(photos)
    if not settings.AVATAR_MIN_PHOTOS <= count <= settings.AVATAR_MAX_PHOTOS:
        raise InvalidInput(
            {
                "photos": [
                    f"Upload between {settings.AVATAR_MIN_PHOTOS} and {settings.AVATAR_MAX_PHOTOS} "
                    f"photos; you sent {count}."
                ]
            }
        )
    front_pixels = _declared_pixels(front, "front_photo")
    if isinstance(front_pixels, PhotoIssue):
        raise _reject([front_pixels], "The front photo cannot be used.")

    kept: dict[int, UploadedFile] = {}
    dropped: list[PhotoIssue] = []
    total = front_pixels
    for index, upload in enumerate(photos):
        pixels = _declared_pixels(upload, f"photos.{index}")
        if isinstance(pixels, PhotoIssue):
            dropped.append(pixels)
            continue
        total += pixels
        if total > settings.AVATAR_UPLOAD_MAX_PIXELS:
            raise InvalidInput(
                {
                    "photos": [
                        "Together the photos exceed "
                        f"{settings.AVATAR_UPLOAD_MAX_PIXELS / 1e6:.0f} megapixels; send smaller "
                        "photos (a phone's standard 12 megapixel photos fit)."
                    ]
                },
                message="The upload is too large. Nothing was stored.",
            )
        kept[index] = upload
    if len(kept) < settings.AVATAR_MIN_USABLE_PHOTOS:
        raise _reject(dropped, _too_few_message(len(kept), count, stored=False))
    return ReceivedPhotos(front=front, photos=kept, dropped=dropped)


def _screening_executor():
    """The worker engine's post-processing processes (dlib loaded; dlib holds the GIL, so
    threads would not help): screening shares the photos with them. None without any."""
    return get_engine().postprocess.executor()


def screen_photos(*, front: bytes, photos: dict[int, bytes], count: int) -> ScreenedPhotos:
    """Screening, in the intake job: returns the checked crops and the reference embedding,
    or raises :class:`PhotosRejected` naming every unusable photo. ``photos`` maps the upload
    index to the bytes received; ``count`` is how many photos the upload had."""
    from engine import faces

    indexes = sorted(photos)
    try:
        result = faces.prepare_training_photos(
            front,
            [photos[i] for i in indexes],
            resolution=512,
            keep=settings.AVATAR_KEEP_PHOTOS,
            min_face_px=settings.AVATAR_MIN_FACE_PX,
            decode_side=settings.AVATAR_DECODE_SIDE,
            max_pixels=settings.AVATAR_PHOTO_MAX_PIXELS,
            executor=_screening_executor(),
        )
    except faces.FrontPhotoError as exc:
        issue = PhotoIssue("front_photo", str(exc.code), str(exc))
        raise PhotosRejected(
            "front_photo_unusable", f"The front photo cannot be used: {exc}", [issue]
        ) from exc

    issues: list[PhotoIssue] = []
    for decision in result.decisions:
        if not decision.accepted:
            field = f"photos.{indexes[decision.index]}"
            issues.append(PhotoIssue(field, str(decision.code), decision.reason))
    crops = [photo.image for photo in result.accepted]

    from .safety import get_checker

    checker = get_checker()
    if checker is not None and crops:
        verdicts = checker.check(crops)
        flagged = {
            photo.index for photo, v in zip(result.accepted, verdicts, strict=True) if v.flagged
        }
        issues += [
            PhotoIssue(
                f"photos.{indexes[i]}",
                "unsafe_content",
                "This photo did not pass the content-safety check.",
            )
            for i in sorted(flagged)
        ]
        crops = [p.image for p in result.accepted if p.index not in flagged]

    usable = len(crops) + sum(1 for i in issues if i.code == NOT_MOST_CONSISTENT)
    if usable < settings.AVATAR_MIN_USABLE_PHOTOS or result.reference_embedding is None:
        rejected = [i for i in issues if i.code != NOT_MOST_CONSISTENT]
        raise PhotosRejected(
            "too_few_usable_photos", _too_few_message(usable, count, stored=True), rejected
        )
    return ScreenedPhotos(
        crops=crops, reference_embedding=result.reference_embedding, dropped=issues
    )
