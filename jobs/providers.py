"""What the runner needs from higher apps, filled in by them at start-up (no imports upward).

- The avatar provider (avatars fills it in): an avatar's LoRA and identity embedding for the
  engine and its owner's reference face embedding for likeness ranking.
- The output screen (avatars' content-safety check): which rendered images may be kept.

Until an app provides them, renders that name an avatar fail with a clear engine error and
every output passes the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from engine.identity import IdentityEmbedding
    from engine.loras import AvatarLora


class AvatarProvider(Protocol):
    def load_lora(self, avatar_id: str) -> AvatarLora:
        """The avatar's LoRA, decrypted; raises engine.errors.ModelNotFoundError if gone."""
        ...

    def load_identity(self, avatar_id: str) -> IdentityEmbedding:
        """The avatar's instant-tier identity embedding, decrypted; raises
        engine.errors.ModelNotFoundError if it has none."""
        ...

    def reference_embedding(self, avatar_id: str) -> np.ndarray | None:
        """The avatar owner's face embedding, or None when it has none."""
        ...


# Returns, per image, whether it was flagged (and must be withheld).
OutputScreen = Callable[[Sequence["Image.Image"]], list[bool]]


@dataclass
class _Providers:
    avatars: AvatarProvider | None = None
    output_screen: OutputScreen | None = None


_providers = _Providers()


def provide_avatars(provider: AvatarProvider) -> None:
    _providers.avatars = provider


def provide_output_screen(screen: OutputScreen | None) -> None:
    _providers.output_screen = screen


def avatar_provider() -> AvatarProvider:
    if _providers.avatars is None:
        from engine.errors import ModelNotFoundError

        raise ModelNotFoundError("no avatar provider is installed (is the avatars app?)")
    return _providers.avatars


def load_avatar_lora(avatar_id: str) -> AvatarLora:
    """The engine's `AvatarSource`."""
    return avatar_provider().load_lora(avatar_id)


def load_identity(avatar_id: str) -> IdentityEmbedding:
    """The engine's `IdentitySource`."""
    return avatar_provider().load_identity(avatar_id)


def reference_embedding(avatar_id: str) -> np.ndarray | None:
    if _providers.avatars is None:
        return None
    return _providers.avatars.reference_embedding(avatar_id)


def output_screen() -> OutputScreen | None:
    return _providers.output_screen
