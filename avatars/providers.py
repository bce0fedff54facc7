"""What the avatars app provides to the queue of record (jobs.providers), at start-up.

- Avatar LoRAs for the engine, decrypted from our storage, by avatar id.
- The owner's reference face embedding, for likeness ranking.
- The content-safety screen over rendered outputs (avatars/safety.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from engine.errors import ModelNotFoundError
from engine.loras import AvatarLora

from . import safety
from .models import Avatar, AvatarStatus
from .services import avatar_lora_bytes, avatar_reference_embedding


class StoredAvatars:
    """The `jobs.providers.AvatarProvider` backed by avatars' encrypted storage."""

    def load_lora(self, avatar_id: str) -> AvatarLora:
        from engine.training import lora_from_bytes  # torch: only in processes that render

        avatar = Avatar.objects.filter(pk=avatar_id, status=AvatarStatus.READY).first()
        if avatar is None:
            raise ModelNotFoundError(f"avatar {avatar_id} is not ready or no longer exists")
        trained = lora_from_bytes(avatar_lora_bytes(avatar=avatar))
        return AvatarLora(
            avatar_id=str(avatar.id),
            state_dict=trained.state_dict,
            trigger=str(trained.metadata.get("trigger", "a person")),
            revision=avatar.finished_at.isoformat() if avatar.finished_at else "",
        )

    def reference_embedding(self, avatar_id: str) -> np.ndarray | None:
        avatar = Avatar.objects.filter(pk=avatar_id).first()
        if avatar is None or not avatar.reference_embedding:
            return None
        return avatar_reference_embedding(avatar=avatar)


def screen_outputs(images: Sequence[Image.Image]) -> list[bool]:
    """Per image: flagged by the configured content-safety checker (none configured: none)."""
    checker = safety.get_checker()
    if checker is None or not images:
        return [False] * len(images)
    return [verdict.flagged for verdict in checker.check(list(images))]
