"""The engine's `AvatarSource`: avatar LoRAs decrypted from our storage, by avatar id."""

from __future__ import annotations

from engine.errors import ModelNotFoundError
from engine.loras import AvatarLora


def load_avatar_lora(avatar_id: str) -> AvatarLora:
    from avatars.models import Avatar, AvatarStatus
    from avatars.services import avatar_lora_bytes
    from engine.training import lora_from_bytes

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
