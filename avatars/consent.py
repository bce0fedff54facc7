"""The consent agreement shown to end users. Changing any text makes a new version and hash."""

from __future__ import annotations

import hashlib
import json

AGREEMENT_VERSION = "2026-11-21"

# Separate items: each is consented to on its own (PIPL separate consent for sensitive data).
AGREEMENT_ITEMS = [
    {
        "key": "face_processing",
        "title": "Processing your face photos to make your avatar",
        "text": (
            "We process the front photo and the photos you upload only to train your personal "
            "avatar (a small model of your face) that renders your portraits. The photos are "
            "encrypted while stored and deleted as soon as the avatar is made, or within 24 "
            "hours at the latest, whether or not training succeeded."
        ),
    },
    {
        "key": "identity_check",
        "title": "Checking the photos show you, and keeping one face embedding",
        "text": (
            "We compare every photo with your front photo to make sure all show the same person, "
            "and we keep one face embedding (a list of numbers describing your face, the average "
            "of your photos) encrypted inside your avatar, to score how much each portrait looks "
            "like you. It is deleted together with your avatar."
        ),
    },
]

PROMISES = [
    "Your photos are never used to train anything other than your own avatar.",
    "Your photos are deleted when your avatar is made (within 24 hours at the latest).",
    "Your avatar is deleted 30 days after you last use it, or at once when you ask.",
    "Only you can see your photos, avatar and portraits.",
]

AGE_CONFIRMATION = (
    "I am 18 or older, or my parent or guardian has agreed to this on my behalf where the law "
    "requires it (in China, under 14)."
)
AGE_CHOICES = ("adult", "guardian_consent")


def agreement_document() -> dict:
    return {
        "version": AGREEMENT_VERSION,
        "items": AGREEMENT_ITEMS,
        "promises": PROMISES,
        "age_confirmation": AGE_CONFIRMATION,
    }


def agreement_hash(document: dict | None = None) -> str:
    canonical = json.dumps(document or agreement_document(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def agreement_text(document: dict | None = None) -> str:
    document = document or agreement_document()
    parts = [f"{item['title']}\n{item['text']}" for item in document["items"]]
    parts.append("\n".join(document["promises"]))
    parts.append(document["age_confirmation"])
    return "\n\n".join(parts)
