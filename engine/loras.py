"""LoRA adapters at render time: the user's avatar and template style LoRAs.

The engine never reads avatar files itself. The caller gives an `AvatarSource`: a callable
``avatar_id -> AvatarLora`` (state dict + trigger word), backed by whatever stores the trained
LoRAs (`engine.adapters`' cache when present). Style LoRAs come from the registry (kind
``lora``) or a local path.

A LoRA manager puts the adapters a render wants on a pipeline (one ``activate(pipeline,
adapters)`` call per pass; with no adapter the pipeline renders exactly as the base model):

- `SlotLoraManager` (the default when `engine.adapters` is importable): the avatar is
  hot-swapped into the pipeline's one fixed `engine.adapters.AvatarSlot` (no new modules per
  avatar, no recompilation of a compiled UNet, ~15 ms from RAM); style LoRAs are loaded once
  each as ``style-<name>`` and the least recently used beyond ``max_styles`` unloaded.
- `LoraManager` (fallback): every adapter loaded under its own name with
  ``load_lora_weights(state_dict, adapter_name=...)``, activated with ``set_adapters``; the
  least recently used beyond ``max_loaded`` are deleted.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class AvatarLora:
    """A trained avatar: LoRA weights (diffusers or peft key format) and the trigger phrase
    that replaces ``{subject}`` in prompts. ``revision`` changes when the avatar is retrained,
    so a stale copy is never reused."""

    avatar_id: str
    state_dict: Mapping[str, Any]
    trigger: str
    revision: str = ""


@runtime_checkable
class AvatarSource(Protocol):
    """Loads an avatar's LoRA by id (raise `engine.errors.ModelNotFoundError` if unknown)."""

    def __call__(self, avatar_id: str, /) -> AvatarLora: ...


@dataclass(frozen=True)
class ActiveLora:
    """One adapter wanted for a render: a stable ``name``, its ``weight``, a ``load``
    function returning the state dict (called only when ``name`` is not loaded yet) and its
    ``kind`` (``style`` or ``avatar``; at most one avatar per pass)."""

    name: str
    weight: float
    load: Callable[[], Mapping[str, Any]] = field(compare=False)
    kind: str = "style"


def adapter_name(kind: str, identity: str) -> str:
    """A peft-safe adapter name (no dots: peft uses names as module keys)."""
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", identity)[:24]
    return f"{kind}_{readable}_{digest}"


def read_lora_file(path: Path) -> dict[str, Any]:
    """A LoRA state dict from a ``.safetensors`` file or a folder holding `LORA_FILE`."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / LORA_FILE
    return load_file(str(path))


class LoraManager:
    """Loads, activates and evicts LoRA adapters on pipelines (see module docstring)."""

    def __init__(self, *, max_loaded: int = 8) -> None:
        self.max_loaded = max_loaded
        # pipeline -> adapter names, least recently used first
        self._loaded: weakref.WeakKeyDictionary[Any, OrderedDict[str, None]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def loaded(self, pipeline: Any) -> list[str]:
        return list(self._loaded.get(pipeline, ()))

    def activate(self, pipeline: Any, adapters: Sequence[ActiveLora]) -> None:
        """Make exactly ``adapters`` (with their weights) active on ``pipeline``."""
        with self._lock:
            loaded = self._loaded.setdefault(pipeline, OrderedDict())
            wanted = {adapter.name for adapter in adapters}
            for adapter in adapters:
                if adapter.name not in loaded:
                    stale = [name for name in loaded if name not in wanted]
                    while stale and len(loaded) >= self.max_loaded:
                        victim = stale.pop(0)
                        pipeline.delete_adapters(victim)
                        del loaded[victim]
                    pipeline.load_lora_weights(dict(adapter.load()), adapter_name=adapter.name)
                    loaded[adapter.name] = None
                loaded.move_to_end(adapter.name)
            if adapters:
                pipeline.enable_lora()
                pipeline.set_adapters(
                    [adapter.name for adapter in adapters],
                    [float(adapter.weight) for adapter in adapters],
                )
            elif loaded:
                pipeline.disable_lora()


class SlotLoraManager:
    """Avatars hot-swapped into `engine.adapters.AvatarSlot`, styles loaded once each.

    The slot is created on a pipeline's first LoRA render (it must exist before any other
    LoRA is loaded, so do not mix managers on one pipeline). ``max_rank``: the largest avatar
    rank that hot-swaps (higher ranks still load, with a full reload). Mixed-avatar batches use
    the pipeline's `engine.adapters.AvatarPool` of ``pool_slots`` resident avatars.
    """

    def __init__(self, *, max_rank: int = 16, max_styles: int = 8, pool_slots: int = 16) -> None:
        self.max_rank = max_rank
        self.max_styles = max_styles
        self.pool_slots = pool_slots
        self._slots: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._pools: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._styles: weakref.WeakKeyDictionary[Any, OrderedDict[str, None]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def slot(self, pipeline: Any) -> Any | None:
        """The pipeline's avatar slot, if a LoRA render created one."""
        return self._slots.get(pipeline)

    def ensure_slot(self, pipeline: Any) -> Any:
        """The pipeline's avatar slot, created now if needed (before any other LoRA is loaded
        and before the UNet is compiled, so avatar swaps never recompile)."""
        from engine.adapters import avatar_slot

        with self._lock:
            slot = self._slots.get(pipeline)
            if slot is None:
                slot = self._slots[pipeline] = avatar_slot(pipeline, max_rank=self.max_rank)
            return slot

    def pool(self, pipeline: Any, *, create: bool = True) -> Any | None:
        """The pipeline's `engine.adapters.AvatarPool` for mixed-avatar batches (created now
        with ``create``; `engine.serving.build_engine` creates it before compiling)."""
        from engine.adapters import AvatarPool

        with self._lock:
            pool = self._pools.get(pipeline)
            if pool is None and create:
                pool = self._pools[pipeline] = AvatarPool(
                    pipeline, slots=self.pool_slots, max_rank=self.max_rank
                )
            return pool

    def activate(self, pipeline: Any, adapters: Sequence[ActiveLora]) -> None:
        from engine.adapters import avatar_slot

        avatars = [a for a in adapters if a.kind == "avatar"]
        if len(avatars) > 1:
            raise ValueError("at most one avatar per render pass")
        with self._lock:
            if not adapters and pipeline not in self._slots:
                return  # no LoRA was ever loaded: the pipeline is the base model
            slot = self._slots.get(pipeline)
            if slot is None:
                slot = self._slots[pipeline] = avatar_slot(pipeline, max_rank=self.max_rank)
            loaded = self._styles.setdefault(pipeline, OrderedDict())
            styles = [a for a in adapters if a.kind != "avatar"]
            wanted = {a.name for a in styles}
            for style in styles:
                if style.name not in loaded:
                    stale = [name for name in loaded if name not in wanted]
                    while stale and len(loaded) >= self.max_styles:
                        victim = stale.pop(0)
                        slot.unload_style(victim)
                        del loaded[victim]
                    slot.load_style(style.name, style.load)
                    loaded[style.name] = None
                loaded.move_to_end(style.name)
            avatar = avatars[0] if avatars else None
            slot.activate(
                avatar.name if avatar else None,
                avatar.load if avatar else None,
                weight=float(avatar.weight) if avatar else 1.0,
                styles={a.name: float(a.weight) for a in styles},
            )


def default_lora_manager() -> Any:
    """`SlotLoraManager` when `engine.adapters` is available, else `LoraManager`."""
    try:
        import engine.adapters  # noqa: F401
    except ImportError:
        return LoraManager()
    return SlotLoraManager()


def random_lora_state_dict(
    unet: Any, *, rank: int = 4, seed: int = 0, scale: float = 0.1
) -> dict[str, Any]:
    """A random LoRA (peft key format, ``unet.`` prefix) on the UNet's attention projections:
    a stand-in for a trained avatar or style in tests and benchmarks."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    for name, module in unet.named_modules():
        if not (name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith("to_out.0")):
            continue
        base = getattr(module, "base_layer", module)
        down = torch.randn(rank, base.in_features, generator=generator) * scale
        up = torch.randn(base.out_features, rank, generator=generator) * scale
        state[f"unet.{name}.lora_A.weight"] = down
        state[f"unet.{name}.lora_B.weight"] = up
    return state
