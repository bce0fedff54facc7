"""Photo intake: every upload is checked before anything is stored.

Checks, per photo: size in bytes; JPEG/PNG/WEBP by magic bytes only; Pillow's pixel limit
(no decompression bombs); EXIF orientation applied and all metadata dropped (the engine
re-encodes pixels); exactly one face; face size and sharpness; the same person as the front
photo; and, when configured, content safety. Only the kept, face-aligned crops move on: the
minimum needed to train.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image

from workstation.errors import InvalidInput


@dataclass(frozen=True)
class PhotoIssue:
    field: str  # "front_photo" or "photos.<index>"
    code: str
    reason: str

    def as_detail(self) -> dict:
        return {"field": self.field, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class ScreenedPhotos:
    crops: list[Image.Image]
    reference_embedding: np.ndarray
    dropped: list[PhotoIssue]


def _read(upload: UploadedFile, field: str) -> bytes | PhotoIssue:
    if upload.size is not None and upload.size > settings.AVATAR_PHOTO_MAX_BYTES:
        return PhotoIssue(
            field,
            "file_too_large",
            f"The file is larger than {settings.AVATAR_PHOTO_MAX_BYTES // 2**20} MB.",
        )
    data = upload.read(settings.AVATAR_PHOTO_MAX_BYTES + 1)
    if len(data) > settings.AVATAR_PHOTO_MAX_BYTES:
        return PhotoIssue(field, "file_too_large", "The file is too large.")
    return data


def _reject(issues: list[PhotoIssue], message: str) -> InvalidInput:
    fields: dict[str, list[str]] = {}
    for issue in issues:
        fields.setdefault(issue.field, []).append(issue.reason)
    return InvalidInput(fields, message=message, details=[i.as_detail() for i in issues])


def screen_photos(*, front: UploadedFile, photos: Sequence[UploadedFile]) -> ScreenedPhotos:
    """Returns the training crops and reference embedding, or raises a 400 naming every photo."""
    from engine import faces

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
    front_data = _read(front, "front_photo")
    if isinstance(front_data, PhotoIssue):
        raise _reject([front_data], "The front photo cannot be used.")
    datas: list[bytes] = []
    early: dict[int, PhotoIssue] = {}
    for index, upload in enumerate(photos):
        data = _read(upload, f"photos.{index}")
        if isinstance(data, PhotoIssue):
            early[index] = data
            data = b""  # analysed as not_an_image, then replaced by the size issue below
        datas.append(data)

    try:
        result = faces.prepare_training_photos(
            front_data,
            datas,
            resolution=512,
            keep=settings.AVATAR_KEEP_PHOTOS,
            min_face_px=settings.AVATAR_MIN_FACE_PX,
        )
    except faces.FrontPhotoError as exc:
        raise _reject(
            [PhotoIssue("front_photo", str(exc.code), str(exc))], "The front photo cannot be used."
        ) from exc

    issues: list[PhotoIssue] = []
    for decision in result.decisions:
        if decision.index in early:
            issues.append(early[decision.index])
        elif not decision.accepted:
            issues.append(
                PhotoIssue(f"photos.{decision.index}", str(decision.code), decision.reason)
            )
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
                f"photos.{i}", "unsafe_content", "This photo did not pass the content-safety check."
            )
            for i in sorted(flagged)
        ]
        crops = [p.image for p in result.accepted if p.index not in flagged]

    rejected = [i for i in issues if i.code != "not_among_most_consistent"]
    usable = len(crops) + sum(1 for i in issues if i.code == "not_among_most_consistent")
    if usable < settings.AVATAR_MIN_USABLE_PHOTOS or result.reference_embedding is None:
        raise _reject(
            rejected,
            f"Only {usable} of {count} photos can be used; at least "
            f"{settings.AVATAR_MIN_USABLE_PHOTOS} are needed. Nothing was stored.",
        )
    return ScreenedPhotos(
        crops=crops, reference_embedding=result.reference_embedding, dropped=issues
    )
