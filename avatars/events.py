"""Avatar changes told to the streams watching them (`workstation.pubsub`, on commit)."""

from __future__ import annotations

import uuid

from workstation.pubsub import publish_on_commit


def avatar_topic(avatar_id: uuid.UUID | str) -> str:
    return f"avatar:{avatar_id}"


def avatar_changed(avatar_id: uuid.UUID | str) -> None:
    """Its status, progress or photo issues changed, or it was erased."""
    publish_on_commit(avatar_topic(avatar_id))
