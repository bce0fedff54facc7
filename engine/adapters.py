"""Keeping avatar LoRAs hot: an LRU of state dicts, one hot-swapped avatar slot per pipeline,
style LoRAs, and mixed-adapter batches (a different avatar per sample in one batch).

Adapter names
-------------
- ``SLOT_ADAPTER`` (``"avatar_slot"``): the one avatar slot of a pipeline (`AvatarSlot`).
  Avatars are *hot-swapped* into it: the weights are copied into the existing LoRA tensors,
  so swapping avatars adds no modules, and a compiled UNet is not recompiled by the swap.
- ``"style-<name>"``: style LoRAs (`AvatarSlot.load_style`), each its own adapter, loaded once.
- ``"avatar-<id>"`` (`avatar_adapter_name`): avatars loaded side by side for a mixed batch
  (`loaded_adapters`, `load_adapter` / `unload_adapters`); each needs its own name because a
  mixed batch uses several at once.

Names may hold letters, digits, ``_`` and ``-`` only (peft turns them into module keys).

Pipeline state
--------------
Loading or deleting an adapter does not change which adapters are active or their weights
(peft would otherwise activate a new adapter in the layers it creates, and silently switch
the active adapter when one is deleted): every load/unload restores the per-layer state it
found, and a newly loaded adapter stays inactive until `AvatarSlot.activate`, ``set_adapters``
or `per_sample_adapters` uses it. `AvatarSlot.deactivate` disables every LoRA layer, so a
no-avatar render equals the base model exactly.

Pipelines are not thread-safe; hold `AvatarSlot.lock` around ``activate`` + the render when
threads share a pipeline. `per_sample_adapters` installs hooks on shared modules, so the same
applies to it.

The slot assumes LoRAs whose scale is ``alpha / rank == 1``, true of every LoRA written by
`engine.training` (alpha is folded into the weights) and of plain diffusers state dicts; load
LoRAs with another alpha as styles.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from engine.errors import EngineError, SpecError
from engine.training import TrainedLora, TrainingConfig, lora_rank

logger = logging.getLogger(__name__)

SLOT_ADAPTER = "avatar_slot"
STYLE_PREFIX = "style-"
AVATAR_PREFIX = "avatar-"
BASE_SAMPLE = "__base__"  # peft's name for "no adapter" in a mixed batch
DEFAULT_TARGET_MODULES: tuple[str, ...] = TrainingConfig.target_modules
_LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

StateDict = dict[str, torch.Tensor]
LoraSource = (
    TrainedLora | Mapping[str, torch.Tensor] | Callable[[], TrainedLora | Mapping[str, Any]]
)


class AdapterError(EngineError):
    """An adapter could not be loaded, found or used as asked."""


def _check_name(name: str, what: str = "adapter name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(what, f"must be 1-128 letters, digits, '_' or '-', got {name!r}")
    return name


def avatar_adapter_name(avatar_id: str) -> str:
    """The adapter name of an avatar loaded under its own name (mixed batches)."""
    return _check_name(f"{AVATAR_PREFIX}{avatar_id}", "avatar_id")


def style_adapter_name(style: str) -> str:
    return _check_name(f"{STYLE_PREFIX}{style}", "style")


def _state_dict_of(source: TrainedLora | Mapping[str, Any]) -> StateDict:
    if isinstance(source, TrainedLora):
        return source.state_dict
    if isinstance(source, Mapping):
        return dict(source)
    raise AdapterError(f"expected a TrainedLora or a state dict, got {type(source).__name__}")


def _resolve(source: LoraSource) -> StateDict:
    if callable(source) and not isinstance(source, TrainedLora | Mapping):
        source = source()
    return _state_dict_of(source)


# --------------------------------------------------------------------------- LRU cache


class AdapterCache:
    """An LRU of avatar LoRA state dicts in RAM, keyed by avatar id (thread-safe).

    The loader runs outside the lock (it may decrypt or read storage); two threads missing the
    same avatar at once both load it and the first insert wins.
    """

    def __init__(self, max_items: int = 64) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be a positive integer, got {max_items!r}")
        self.max_items = max_items
        self._items: OrderedDict[str, StateDict] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get_or_load(
        self, avatar_id: str, loader: Callable[[], TrainedLora | Mapping[str, Any]]
    ) -> StateDict:
        with self._lock:
            if avatar_id in self._items:
                self.hits += 1
                self._items.move_to_end(avatar_id)
                return self._items[avatar_id]
            self.misses += 1
        state_dict = _state_dict_of(loader())
        with self._lock:
            if avatar_id in self._items:  # another thread loaded it meanwhile
                self._items.move_to_end(avatar_id)
                return self._items[avatar_id]
            self._items[avatar_id] = state_dict
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
                self.evictions += 1
            return state_dict

    def put(self, avatar_id: str, lora: TrainedLora | Mapping[str, Any]) -> None:
        """Insert or replace (e.g. after retraining) an avatar, as the most recently used."""
        state_dict = _state_dict_of(lora)
        with self._lock:
            self._items[avatar_id] = state_dict
            self._items.move_to_end(avatar_id)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
                self.evictions += 1

    def evict(self, avatar_id: str) -> bool:
        """Drop an avatar (e.g. deleted or retrained); True if it was cached."""
        with self._lock:
            return self._items.pop(avatar_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[str]:
        """Cached avatar ids, least recently used first."""
        with self._lock:
            return list(self._items)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "items": len(self._items),
                "max_items": self.max_items,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }

    def __contains__(self, avatar_id: object) -> bool:
        with self._lock:
            return avatar_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# --------------------------------------------------------------------------- layer state


def _lora_layers(pipeline: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    layers = []
    for component in _LORA_COMPONENTS:
        model = getattr(pipeline, component, None)
        if model is not None:
            layers += [m for m in model.modules() if isinstance(m, LoraLayer)]
    return layers


@dataclass
class _LayerState:
    layer: Any
    active: list[str]
    disabled: bool
    scaling: dict[str, Any]


def _snapshot(pipeline: Any) -> list[_LayerState]:
    return [
        _LayerState(layer, list(layer.active_adapters), layer.disable_adapters, dict(layer.scaling))
        for layer in _lora_layers(pipeline)
    ]


def _restore(pipeline: Any, snapshot: list[_LayerState], *, loaded: str | None = None) -> None:
    """Put back active adapters, disabled flags and scales (except the scale of the adapter
    ``loaded`` since the snapshot); layers created since the snapshot get no active adapter
    and the disabled flag the pipeline had."""
    known = {id(state.layer): state for state in snapshot}
    disabled = any(state.disabled for state in snapshot)
    for layer in _lora_layers(pipeline):
        state = known.get(id(layer))
        present = set(layer.lora_A.keys())
        if state is None:
            layer._active_adapter = []
            layer._disable_adapters = disabled
            continue
        layer._active_adapter = [name for name in state.active if name in present]
        layer._disable_adapters = state.disabled
        for name, value in state.scaling.items():
            if name in layer.scaling and name != loaded:
                layer.scaling[name] = value


def unet_qkv_fused(pipeline: Any) -> bool:
    """True when the UNet's attention Q/K/V projections are fused (``fuse_qkv_projections``):
    its attention then calls ``to_qkv`` / ``to_kv``, never the ``to_q``/``to_k``/``to_v``
    layers that avatar and style LoRAs wrap, so a LoRA there would be silently ignored."""
    unet = getattr(pipeline, "unet", None)
    model = getattr(unet, "_orig_mod", unet)
    if not isinstance(model, torch.nn.Module):
        return False
    return any(getattr(module, "fused_projections", False) for module in model.modules())


def _check_unfused(pipeline: Any) -> None:
    if unet_qkv_fused(pipeline):
        raise AdapterError(
            "the UNet's Q/K/V projections are fused (fuse_qkv_projections): a LoRA on "
            "to_q/to_k/to_v would be ignored; serve LoRAs from an unfused pipeline"
        )


def _align_adapter_devices(pipeline: Any, adapter_name: str) -> None:
    """Put ``adapter_name``'s LoRA weights on the device of each layer's base weight.

    peft moves a new adapter to its base layer's device, except in a layer where another
    adapter's weights sit on the ``meta`` device (it takes those for unmaterialised
    placeholders and leaves the new adapter where it was made, on the CPU). On a real device
    this is a no-op; it keeps every adapter the engine loads on the model's device.
    """
    for layer in _lora_layers(pipeline):
        weight = getattr(layer.get_base_layer(), "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        for modules in (layer.lora_A, layer.lora_B):
            if adapter_name not in modules:
                continue
            module = modules[adapter_name]
            if any(p.device != weight.device for p in module.parameters()):
                modules[adapter_name] = module.to(weight.device)


def loaded_adapter_names(pipeline: Any) -> set[str]:
    """Every adapter name loaded in any LoRA-capable component of the pipeline."""
    names: set[str] = set()
    for component in _LORA_COMPONENTS:
        model = getattr(pipeline, component, None)
        names.update(getattr(model, "peft_config", None) or {})
    return names


def load_adapter(pipeline: Any, adapter_name: str, lora: LoraSource) -> str:
    """Load a LoRA under its own adapter name (a plain load, no hot-swap); it stays inactive.

    ``lora`` is a `TrainedLora`, a diffusers-format state dict, or a callable returning one.
    """
    _check_name(adapter_name)
    _check_unfused(pipeline)
    if adapter_name in loaded_adapter_names(pipeline):
        raise AdapterError(f"adapter {adapter_name!r} is already loaded")
    state_dict = _resolve(lora)
    snapshot = _snapshot(pipeline)
    try:
        pipeline.load_lora_weights(dict(state_dict), adapter_name=adapter_name)
        _align_adapter_devices(pipeline, adapter_name)
    except Exception as exc:
        raise AdapterError(f"cannot load LoRA {adapter_name!r}: {exc}") from exc
    finally:
        _restore(pipeline, snapshot, loaded=adapter_name)
    return adapter_name


def unload_adapters(pipeline: Any, adapter_names: Sequence[str]) -> None:
    """Delete adapters; the others keep their active state and weights."""
    names = [name for name in adapter_names if name in loaded_adapter_names(pipeline)]
    if not names:
        return
    snapshot = _snapshot(pipeline)
    try:
        pipeline.delete_adapters(names)
    finally:
        _restore(pipeline, snapshot)


@contextlib.contextmanager
def loaded_adapters(pipeline: Any, loras: Mapping[str, LoraSource]) -> Iterator[list[str]]:
    """Load several LoRAs under the given adapter names for the block, then unload them.

    Typical mixed batch::

        names = {avatar_adapter_name(a): cache.get_or_load(a, load) for a in ("A", "B")}
        with loaded_adapters(pipe, names), per_sample_adapters(pipe, ["avatar-A", "avatar-B"]):
            pipe(prompt=..., num_images_per_prompt=2, generator=[g0, g1])
    """
    loaded: list[str] = []
    try:
        for name, lora in loras.items():
            loaded.append(load_adapter(pipeline, name, lora))
        yield loaded
    finally:
        unload_adapters(pipeline, loaded)


@contextlib.contextmanager
def preserved_adapter_state(pipeline: Any) -> Iterator[None]:
    """Restore every LoRA layer's active adapters, scales and enabled flag after the block."""
    snapshot = _snapshot(pipeline)
    try:
        yield
    finally:
        _restore(pipeline, snapshot)


# --------------------------------------------------------------------------- mixed batches


def _tiled(names: list[str], batch: int) -> list[str]:
    """The names for a layer input of ``batch`` rows: the samples, or [uncond..., cond...]."""
    if batch == len(names):
        return names
    if batch == 2 * len(names):
        return names + names
    raise AdapterError(
        f"a layer saw a batch of {batch} rows for {len(names)} per-sample adapters; render "
        f"exactly {len(names)} images (one per adapter name)"
    )


@contextlib.contextmanager
def per_sample_adapters(
    pipeline: Any,
    adapter_names: Sequence[str],
    *,
    weights: Mapping[str, float] | None = None,
) -> Iterator[None]:
    """Make sample ``i`` of each batch use adapter ``adapter_names[i]`` for the block.

    ``BASE_SAMPLE`` (``"__base__"``) means no adapter for that sample. Every peft LoRA layer
    gets peft's per-sample ``adapter_names`` injected into its forward (diffusers does not
    pass it through). The render must have exactly ``len(adapter_names)`` images
    (``num_images_per_prompt`` times the prompts), with one generator per sample. With
    classifier-free guidance diffusers runs the UNet on ``[uncond_0..uncond_n-1,
    cond_0..cond_n-1]`` (the negative half first), so a layer seeing ``2n`` rows gets
    ``names + names``; any other row count raises `AdapterError` from the render. (A batch of
    ``n/2`` images with guidance also has ``n`` rows and cannot be told apart: keep the count
    right.) Text-encoder LoRA layers (only avatars trained with
    ``train_text_encoder``) see one row per prompt: pass one prompt per sample then.

    Each adapter's scale is reset to ``weights.get(name, 1.0)`` (an earlier ``set_adapters``
    would otherwise leak into the batch); LoRA layers are enabled for the block. Everything
    (hooks, scales, active adapters, disabled flags) is restored on exit.
    """
    names = list(adapter_names)
    if not names:
        raise AdapterError("per_sample_adapters needs at least one adapter name")
    used = sorted({name for name in names if name != BASE_SAMPLE})
    missing = set(used) - loaded_adapter_names(pipeline)
    if missing:
        raise AdapterError(f"adapters not loaded: {sorted(missing)}")
    weights = dict(weights or {})
    unknown = set(weights) - set(used)
    if unknown:
        raise AdapterError(f"weights given for adapters not in the batch: {sorted(unknown)}")

    def pre_forward(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0] if args else next(iter(kwargs.values()))
        return args, {**kwargs, "adapter_names": _tiled(names, int(x.shape[0]))}

    snapshot = _snapshot(pipeline)
    handles = []
    try:
        if used:
            pipeline.set_adapters(used, [float(weights.get(name, 1.0)) for name in used])
        for layer in _lora_layers(pipeline):
            # Layers holding none of the adapters run as the base model (every other adapter
            # is inactive now), so they need no hook: e.g. a text encoder whose LoRAs belong
            # to avatars outside this batch does not constrain the prompt count.
            if used and not set(used).isdisjoint(layer.lora_A.keys()):
                layer._disable_adapters = False
                handles.append(layer.register_forward_pre_hook(pre_forward, with_kwargs=True))
            else:
                layer._disable_adapters = True
        yield
    finally:
        for handle in handles:
            handle.remove()
        _restore(pipeline, snapshot)


# --------------------------------------------------------------------------- avatar slot


def _zero_lora(unet: Any, target_modules: Sequence[str], rank: int) -> StateDict:
    """A rank-``rank`` LoRA of zeros on the UNet's Linear ``target_modules`` (peft keys)."""
    state: StateDict = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name or ".base_layer" in name:
            continue
        if any(name == t or name.endswith(f".{t}") for t in target_modules):
            state[f"unet.{name}.lora_A.weight"] = torch.zeros(rank, module.in_features)
            state[f"unet.{name}.lora_B.weight"] = torch.zeros(module.out_features, rank)
    if not state:
        raise AdapterError(f"no UNet Linear module matches {list(target_modules)}")
    return state


_SLOTS: weakref.WeakKeyDictionary[Any, AvatarSlot] = weakref.WeakKeyDictionary()
_SLOTS_LOCK = threading.Lock()


def avatar_slot(pipeline: Any, **kwargs: Any) -> AvatarSlot:
    """The pipeline's `AvatarSlot`, created on first use (``kwargs`` go to the constructor)."""
    with _SLOTS_LOCK:
        slot = _SLOTS.get(pipeline)
        if slot is None:
            slot = _SLOTS[pipeline] = AvatarSlot(pipeline, **kwargs)
        return slot


class AvatarSlot:
    """One fixed adapter slot of a pipeline holding the current avatar, hot-swapped.

    Create it (or use `avatar_slot`) before any other LoRA is loaded into the pipeline: it
    calls ``enable_lora_hotswap(target_rank=max_rank)`` and loads a zero LoRA of rank
    ``max_rank`` on ``target_modules`` into the slot, so the slot's tensors are allocated once
    and every avatar of rank <= ``max_rank`` is hot-swapped in (zero-padded). An avatar that
    cannot be hot-swapped (a higher rank, other target modules, text-encoder weights) is
    loaded plainly instead (``full_reloads`` counts those): correct, but a compiled UNet then
    recompiles.

    ``loads`` counts avatar weight loads into the slot; re-activating the avatar already in
    the slot loads nothing (its ``lora`` callable is not even called).

    Compiled UNets: the LoRA scales of the active adapters stay 0-d tensors updated in place
    (`_pin_scales`), so neither another avatar nor another weight recompiles; only switching
    LoRA on/off or the set of active styles selects another graph.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        max_rank: int = 16,
        target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
        adapter_name: str = SLOT_ADAPTER,
    ) -> None:
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1:
            raise SpecError("max_rank", f"must be a positive integer, got {max_rank!r}")
        self.pipeline = pipeline
        self.max_rank = max_rank
        self.adapter_name = _check_name(adapter_name)
        self.lock = threading.RLock()
        self.current_avatar: str | None = None
        self.loads = 0
        self.hotswaps = 0
        self.full_reloads = 0
        self._styles: set[str] = set()
        # Per LoRA layer: adapter name -> its scale as a 0-d tensor, updated in place.
        self._scales: weakref.WeakKeyDictionary[Any, dict[str, torch.Tensor]] = (
            weakref.WeakKeyDictionary()
        )
        self.scale_updates = 0
        _check_unfused(pipeline)
        if loaded_adapter_names(pipeline):
            raise AdapterError(
                "create the avatar slot before any LoRA is loaded into the pipeline "
                f"(loaded: {sorted(loaded_adapter_names(pipeline))})"
            )
        pipeline.enable_lora_hotswap(target_rank=max_rank)
        placeholder = _zero_lora(pipeline.unet, target_modules, max_rank)
        pipeline.load_lora_weights(placeholder, adapter_name=self.adapter_name)
        pipeline.disable_lora()

    # -- avatar ---------------------------------------------------------------------------

    def _load(self, avatar_id: str, lora: LoraSource) -> None:
        state_dict = _resolve(lora)
        rank = lora_rank(state_dict)
        hotswappable = rank <= self.max_rank and all(k.startswith("unet.") for k in state_dict)
        snapshot = _snapshot(self.pipeline)
        self.current_avatar = None  # unknown contents if the load fails half-way
        try:
            if hotswappable:
                try:
                    self.pipeline.load_lora_weights(
                        dict(state_dict), adapter_name=self.adapter_name, hotswap=True
                    )
                    self.hotswaps += 1
                except Exception as exc:  # peft raises RuntimeError/ValueError variants
                    logger.info("hot-swap of avatar %s failed (%s); reloading", avatar_id, exc)
                    hotswappable = False
            if not hotswappable:
                self.pipeline.delete_adapters([self.adapter_name])
                self.pipeline.load_lora_weights(dict(state_dict), adapter_name=self.adapter_name)
                _align_adapter_devices(self.pipeline, self.adapter_name)
                self.full_reloads += 1
        except Exception as exc:
            raise AdapterError(f"cannot load avatar {avatar_id!r}: {exc}") from exc
        finally:
            _restore(self.pipeline, snapshot, loaded=self.adapter_name)
        self.current_avatar = avatar_id
        self.loads += 1

    def activate(
        self,
        avatar_id: str | None,
        lora: LoraSource | None = None,
        *,
        weight: float = 1.0,
        styles: Mapping[str, float] | None = None,
    ) -> bool:
        """Make the next renders use ``avatar_id`` at ``weight`` plus ``styles`` ({name: w}).

        ``lora`` (a `TrainedLora`, state dict, or a callable returning one, e.g. a closure over
        `AdapterCache.get_or_load`) is only used when the slot holds another avatar.
        ``avatar_id=None`` renders the styles alone. Returns True if weights were loaded.
        """
        styles = dict(styles or {})
        for name, value in [("weight", weight), *styles.items()]:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(name, f"must be a number, got {type(value).__name__}")
        unknown = set(styles) - self._styles
        if unknown:
            raise AdapterError(f"styles not loaded: {sorted(unknown)}")
        with self.lock:
            loaded = False
            if avatar_id is not None and avatar_id != self.current_avatar:
                if lora is None:
                    raise AdapterError(f"avatar {avatar_id!r} is not in the slot; pass its LoRA")
                self._load(avatar_id, lora)
                loaded = True
            names = [style_adapter_name(name) for name in styles]
            values = [float(v) for v in styles.values()]
            if avatar_id is not None:
                names.insert(0, self.adapter_name)
                values.insert(0, float(weight))
            if not names:
                self.deactivate()
                return loaded
            self.pipeline.enable_lora()
            self.pipeline.set_adapters(names, values)
            self._pin_scales(names)
            return loaded

    def _pin_scales(self, names: Sequence[str]) -> None:
        """Keep every active adapter's LoRA scale a tensor, updated in place.

        ``set_adapters`` stores each scale as a Python float (``weight * alpha / r``), also
        over the tensor scales that ``enable_lora_hotswap`` set up; a compiled UNet guards on
        a float's value, so every new avatar weight would recompile. Each (layer, adapter)
        gets one 0-d float32 tensor on the layer's device, kept for the slot's lifetime: the
        new value is copied into it (``fill_``) and the same tensor object is put back, so a
        compiled graph sees an input whose value changed, never a new constant.
        """
        wanted = set(names)
        for layer in _lora_layers(self.pipeline):
            pinned = self._scales.get(layer)
            if pinned is None:
                pinned = self._scales[layer] = {}
            for name, value in list(layer.scaling.items()):
                if name not in wanted:
                    continue
                tensor = pinned.get(name)
                if tensor is None:
                    device = layer.get_base_layer().weight.device
                    tensor = pinned[name] = torch.zeros((), dtype=torch.float32, device=device)
                if value is not tensor:
                    tensor.fill_(value)  # a float from set_adapters (or a hot-swap tensor)
                    layer.scaling[name] = tensor
        self.scale_updates += 1

    def deactivate(self) -> None:
        """Disable every LoRA layer: renders equal the base model exactly. Nothing unloads."""
        with self.lock:
            self.pipeline.disable_lora()

    def evict(self) -> None:
        """Forget which avatar is in the slot (e.g. it was retrained); the next activate loads."""
        with self.lock:
            self.current_avatar = None

    # -- styles ---------------------------------------------------------------------------

    def load_style(self, name: str, source: LoraSource | str | Path) -> str:
        """Load a style LoRA (state dict, `TrainedLora`, or a ``.safetensors`` file or a
        directory holding ``pytorch_lora_weights.safetensors``) as ``style-<name>``."""
        adapter = style_adapter_name(name)
        if isinstance(source, str | Path):
            path = Path(source)
            if path.is_dir():
                path = path / "pytorch_lora_weights.safetensors"
            try:
                state_dict: LoraSource = safetensors.torch.load_file(str(path))
            except Exception as exc:
                raise AdapterError(f"cannot read style LoRA {path}: {exc}") from exc
        else:
            state_dict = source
        with self.lock:
            load_adapter(self.pipeline, adapter, state_dict)
            self._styles.add(name)
        return adapter

    def unload_style(self, name: str) -> None:
        with self.lock:
            if name in self._styles:
                unload_adapters(self.pipeline, [style_adapter_name(name)])
                self._styles.discard(name)

    @property
    def styles(self) -> list[str]:
        return sorted(self._styles)


# --------------------------------------------------------------------------- avatar pool

# peft (``lora_A`` / ``lora_B``) and diffusers (``lora.down`` / ``lora.up``, what
# `engine.training` saves) key formats of a UNet LoRA factor.
_POOL_KEY = re.compile(
    r"^unet\.(?P<module>.+)\.(?:lora_(?P<peft>[AB])|lora(?:_linear_layer)?\.(?P<old>down|up))"
    r"\.weight$"
)


class _PoolLayer:
    """One targeted UNet Linear: the pool's stacked LoRA factors, as non-persistent buffers of
    its base layer (they follow ``.to()``, stay out of ``state_dict``, and a compiled UNet
    reads them as inputs, so new avatars never recompile). ``prefix`` keeps two pools on one
    pipeline apart."""

    def __init__(self, base: torch.nn.Linear, slots: int, rank: int, prefix: str) -> None:
        weight = base.weight
        self.base = base
        self.names = (f"{prefix}_a", f"{prefix}_b")
        base.register_buffer(
            self.names[0],
            torch.zeros(slots, rank, base.in_features, device=weight.device, dtype=weight.dtype),
            persistent=False,
        )
        base.register_buffer(
            self.names[1],
            torch.zeros(slots, base.out_features, rank, device=weight.device, dtype=weight.dtype),
            persistent=False,
        )

    @property
    def a(self) -> torch.Tensor:
        return self.base._buffers[self.names[0]]  # type: ignore[return-value]

    @property
    def b(self) -> torch.Tensor:
        return self.base._buffers[self.names[1]]  # type: ignore[return-value]


_POOL_IDS = itertools.count()


class AvatarPool:
    """Up to ``slots`` avatar LoRAs resident on the model's device at once, for batches whose
    samples use different avatars (S-LoRA / punica style).

    Each targeted UNet Linear gets the avatars' factors stacked, ``A`` as ``[slots, rank, in]``
    and ``B`` as ``[slots, out, rank]`` (lower ranks zero-padded), and one forward hook that
    adds, to every row of a batch, ``weight[row] * B[slot[row]] @ A[slot[row]] @ x[row]``: two
    batched matrix products over factors gathered by a per-row slot index tensor. An avatar is
    copied into a slot once (least recently used slot reused); a later batch with it copies
    nothing. The hooks stay installed: outside `batch` they return at once, and a render
    outside a batch equals the pipeline without the pool.

    The hooks sit on the base Linear layers, under any peft LoRA wrapping them, so style LoRAs
    (and the hot-swap `AvatarSlot`, kept inactive during a pool batch) still apply through
    peft. Avatars must be UNet LoRAs (``unet.<module>.lora_A.weight`` / ``lora.down.weight``
    keys, as `engine.training` saves them) with ``alpha / rank == 1`` and rank <= ``max_rank``, on the pool's modules (`accepts`); others
    go through `per_sample_adapters`.

    Not thread-safe: hold the avatar slot's lock (the engine's render lock) around `batch`.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        slots: int = 8,
        max_rank: int = 16,
        target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    ) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 256:
            raise SpecError("slots", f"must be an integer 1-256, got {slots!r}")
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1:
            raise SpecError("max_rank", f"must be a positive integer, got {max_rank!r}")
        _check_unfused(pipeline)
        unet = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
        self.slots = slots
        self.max_rank = max_rank
        self.loads = 0  # avatars copied into a slot
        self._layers: dict[str, _PoolLayer] = {}
        self._resident: OrderedDict[str, int] = OrderedDict()  # avatar key -> slot, LRU order
        self._rows: torch.Tensor | None = None
        self._row_weights: torch.Tensor | None = None
        self._handles: list[Any] = []
        prefix = f"avatar_pool{next(_POOL_IDS)}"
        for name, module in unet.named_modules():
            if ".lora_" in name or name.endswith(".base_layer"):
                continue
            if not any(name == t or name.endswith(f".{t}") for t in target_modules):
                continue
            base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
            if not isinstance(base, torch.nn.Linear):
                continue
            layer = _PoolLayer(base, slots, max_rank, prefix)
            self._layers[name] = layer
            self._handles.append(base.register_forward_hook(self._hook(layer)))
        if not self._layers:
            raise AdapterError(f"no UNet Linear module matches {list(target_modules)}")
        weight = next(iter(self._layers.values())).a
        self.device, self.dtype = weight.device, weight.dtype

    def _hook(self, layer: _PoolLayer) -> Callable[..., Any]:
        def add_avatars(_module: Any, args: tuple[Any, ...], output: torch.Tensor) -> Any:
            rows = self._rows
            if rows is None:
                return None
            weights = self._row_weights
            assert weights is not None
            x = args[0]
            count = x.shape[0]
            if count != rows.shape[0]:
                if count % rows.shape[0]:
                    raise AdapterError(
                        f"a layer saw a batch of {count} rows for {rows.shape[0]} pool samples"
                    )
                # classifier-free guidance: [uncond_0..n-1, cond_0..n-1]
                repeat = count // rows.shape[0]
                rows, weights = rows.repeat(repeat), weights.repeat(repeat)
            flat = x.reshape(count, -1, x.shape[-1])
            hidden = torch.bmm(flat, layer.a[rows].transpose(1, 2))
            delta = torch.bmm(hidden, layer.b[rows].transpose(1, 2)) * weights[:, None, None]
            return output + delta.reshape(output.shape)

        return add_avatars

    def accepts(self, lora: Mapping[str, torch.Tensor]) -> bool:
        """Whether an avatar's state dict fits the pool (else: `per_sample_adapters`)."""
        try:
            self._factors(lora)
        except AdapterError:
            return False
        return True

    def _factors(self, lora: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        factors: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in lora.items():
            match = _POOL_KEY.match(key)
            if match is None or match["module"] not in self._layers:
                raise AdapterError(f"LoRA key {key!r} is not a pool module's factor")
            part = match["peft"] or ("A" if match["old"] == "down" else "B")
            factors.setdefault(match["module"], {})[part] = tensor
        for module, parts in factors.items():
            if set(parts) != {"A", "B"}:
                raise AdapterError(f"LoRA module {module!r} lacks a factor")
            rank = parts["A"].shape[0]
            layer = self._layers[module]
            if (
                rank > self.max_rank
                or parts["B"].shape[1] != rank
                or parts["A"].shape[1] != layer.a.shape[2]
                or parts["B"].shape[0] != layer.b.shape[1]
            ):
                raise AdapterError(f"LoRA module {module!r} does not fit the pool")
        if not factors:
            raise AdapterError("the LoRA has no factors")
        return factors

    def _place(self, key: str, lora: LoraSource) -> int:
        """The slot holding avatar ``key``, copying its factors into one if needed."""
        if key in self._resident:
            self._resident.move_to_end(key)
            return self._resident[key]
        if len(self._resident) < self.slots:
            used = set(self._resident.values())
            slot = next(i for i in range(self.slots) if i not in used)
        else:
            _victim, slot = self._resident.popitem(last=False)
        factors = self._factors(_resolve(lora))
        with torch.no_grad():
            for name, layer in self._layers.items():
                parts = factors.get(name)
                layer.a[slot].zero_()
                layer.b[slot].zero_()
                if parts is None:
                    continue
                rank = parts["A"].shape[0]
                layer.a[slot, :rank].copy_(parts["A"])
                layer.b[slot, :, :rank].copy_(parts["B"])
        self._resident[key] = slot
        self.loads += 1
        return slot

    @contextlib.contextmanager
    def batch(
        self,
        samples: Sequence[tuple[str, float] | None],
        loras: Mapping[str, LoraSource],
    ) -> Iterator[None]:
        """Make sample ``i`` of each batch add avatar ``samples[i] = (key, weight)`` (None: no
        avatar) for the block; ``loras[key]`` gives an avatar not yet in a slot. At most
        ``slots`` distinct avatars per batch."""
        keys = list(dict.fromkeys(sample[0] for sample in samples if sample is not None))
        if len(keys) > self.slots:
            raise AdapterError(f"{len(keys)} avatars in one batch; the pool has {self.slots}")
        for key in keys:  # the batch's resident avatars first: never the LRU victims
            if key in self._resident:
                self._resident.move_to_end(key)
        placed: dict[str, int] = {}
        for key in keys:
            if key not in self._resident and key not in loras:
                raise AdapterError(f"avatar {key!r} is not in the pool; pass its LoRA")
            placed[key] = self._place(key, loras.get(key, {}))
        rows = [0 if sample is None else placed[sample[0]] for sample in samples]
        weights = [0.0 if sample is None else float(sample[1]) for sample in samples]
        self._rows = torch.tensor(rows, dtype=torch.long, device=self.device)
        self._row_weights = torch.tensor(weights, dtype=self.dtype, device=self.device)
        try:
            yield
        finally:
            self._rows = None
            self._row_weights = None

    def evict(self, key: str) -> None:
        """Forget an avatar (e.g. retrained or erased); its slot is zeroed and reused."""
        slot = self._resident.pop(key, None)
        if slot is None:
            return
        with torch.no_grad():
            for layer in self._layers.values():
                layer.a[slot].zero_()
                layer.b[slot].zero_()

    @property
    def resident(self) -> list[str]:
        return list(self._resident)

    def close(self) -> None:
        """Remove the hooks and buffers (the pipeline is as without a pool)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self._layers.values():
            for name in layer.names:
                layer.base._buffers.pop(name, None)
        self._layers.clear()
        self._resident.clear()
