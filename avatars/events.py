"""Avatar changes told to the streams watching them (`workstation.pubsub`, on commit)."""

from __future__ import annotations

import uuid

from django.dispatch import Signal

from workstation.pubsub import publish_on_commit

# Sent inside the transaction that records an avatar's stage (so a webhook outbox row commits
# with it): sender=Avatar, avatar=<Avatar>, stage=one of AVATAR_STAGES.
avatar_stage_reached = Signal()
AVATAR_STAGES = ("instant_ready", "studio_ready", "lora_failed", "failed")


def avatar_topic(avatar_id: uuid.UUID | str) -> str:
    return f"avatar:{avatar_id}"


def avatar_changed(avatar_id: uuid.UUID | str) -> None:
    """Its status, progress or photo issues changed, or it was erased."""
    publish_on_commit(avatar_topic(avatar_id))
