"""What the avatars app provides to the queue of record (jobs.providers), at start-up.

- Avatar LoRAs (studio tier) and identity embeddings (instant tier) for the engine, decrypted
  from our storage, by avatar id.
- The owner's reference face embedding, for likeness ranking.
- The content-safety screen over rendered outputs (avatars/safety.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine.errors import ModelNotFoundError
from engine.loras import AvatarLora

from . import safety
from .models import Avatar
from .services import avatar_identity_embedding, avatar_lora_bytes, avatar_reference_embedding

if TYPE_CHECKING:
    from engine.identity import IdentityEmbedding


class StoredAvatars:
    """The `jobs.providers.AvatarProvider` backed by avatars' encrypted storage."""

    def load_lora(self, avatar_id: str) -> AvatarLora:
        from engine.training import lora_from_bytes  # torch: only in processes that render

        avatar = Avatar.objects.filter(pk=avatar_id).exclude(lora_object="").first()
        if avatar is None:
            raise ModelNotFoundError(f"avatar {avatar_id} has no LoRA or no longer exists")
        trained = lora_from_bytes(avatar_lora_bytes(avatar=avatar))
        return AvatarLora(
            avatar_id=str(avatar.id),
            state_dict=trained.state_dict,
            trigger=str(trained.metadata.get("trigger", "a person")),
            revision=avatar.finished_at.isoformat() if avatar.finished_at else "",
        )

    def load_identity(self, avatar_id: str) -> IdentityEmbedding:
        from engine.identity import IdentityEmbedding

        avatar = Avatar.objects.filter(pk=avatar_id).exclude(identity_adapter="").first()
        if avatar is None or not avatar.identity_embedding:
            raise ModelNotFoundError(
                f"avatar {avatar_id} has no instant identity or no longer exists"
            )
        return IdentityEmbedding(
            avatar_id=str(avatar.id),
            adapter=avatar.identity_adapter,
            kind=avatar.identity_kind,
            vector=avatar_identity_embedding(avatar=avatar),
            revision=avatar.instant_ready_at.isoformat() if avatar.instant_ready_at else "",
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
