"""DreamBooth-style avatar LoRA training, and the avatar LoRA file/bytes format.

A consumer's prepared face crops (`engine.faces.prepare_training_photos`) are turned into a
small LoRA on the UNet's attention projections, bound to a rare-token *trigger* ("sks person")
through the fixed caption ``"a photo of {trigger}"``. Templates then put the trigger in their
prompt and load the LoRA (see `engine.adapters`).

The cached pipeline stays clean
-------------------------------
Training never touches the pipeline it is given: the UNet (and the text encoder, when it is
trained too) is *cloned as a module tree that shares the base weight storage*. Each base
parameter of the clone is a new ``Parameter`` made from ``param.detach()`` (same memory, no
copy, ``requires_grad=False``), so

- no base weight is duplicated (the clone costs only Python module objects plus the LoRA),
- the cached modules' parameters, ``requires_grad`` flags, train/eval mode, gradient
  checkpointing flags and peft adapters are never changed, and a render running after (or, on
  another pipeline, during) training sees exactly the model it saw before;
- LoRA layers already loaded into the cached UNet (an avatar slot, style LoRAs) are stripped
  from the clone, so an avatar is always trained on the plain base model. A *fused* LoRA
  (``fuse_lora``) is part of the base weights and cannot be stripped: unfuse it first.

The base weights are shared, so nothing may write to them while training runs (nothing in the
engine does: renders only read them).

Exported weights
----------------
`TrainedLora.state_dict` holds diffusers-format keys with their component prefix, exactly as
``save_lora_weights`` writes them (``unet.<module>.lora.down.weight`` /
``unet.<module>.lora.up.weight``, plus ``text_encoder....`` keys when the text encoder was
trained), float32 on the CPU. It can be passed as is to ``pipeline.load_lora_weights``.
A plain state dict carries no alpha and diffusers then loads it with ``alpha = rank``; so the
LoRA scale ``alpha / rank`` is folded into the ``up`` weights at export (``up * alpha / rank``
gives the same product), and the file means the same thing to any loader.

Devices
-------
Every tensor a training step makes (batch indices, latent noise, timesteps) is drawn on the
model's device from a generator seeded with ``config.seed`` (`device_generator`), so nothing
is built on the CPU and copied, or mixed with the model's tensors, per step. On the CPU this is
the plain CPU generator: CPU results for a seed are exactly what they always were. Other
devices are deterministic for a seed too, with their own random streams. The loss is read
back to the host every `LOSS_CHECK_EVERY` steps (a non-finite loss fails at the next read),
the latents of all photos are encoded up front, and on CUDA the optimiser is fused AdamW and
the forward runs under autocast (``mixed_precision="auto"``). tests/unit/engine/
test_device_discipline.py runs a step with the models on the ``meta`` device to prove it.

Step count
----------
``TrainingConfig.steps`` is the total number of optimiser steps. Scaling it with the number of
photos (EasyPhoto uses ``min(N * 200, 800)``) is the caller's decision.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from engine.errors import EngineError, SpecError

if TYPE_CHECKING:
    from peft import LoraConfig

FORMAT_VERSION = 1
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_NAME = "avatar.json"
# The safetensors header key holding the JSON metadata (header values must be strings).
HEADER_METADATA_KEY = "avatar_metadata"
# Not "train": peft adapter names become module attributes and would shadow Module.train.
_TRAINING_ADAPTER = "avatar_training"
_TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
_MAX_GRAD_NORM = 1.0
_WEIGHT_DECAY = 1e-2
# Photos per VAE encode call when the latents are computed up front.
_ENCODE_BATCH = 8
# The loss is read back to the host (a device sync) at the first step, every this many steps
# and at the last one; a non-finite loss in between is caught at the next read.
LOSS_CHECK_EVERY = 10

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
TrainingProgress = Callable[[int, int, float], None]


class TrainingCanceled(EngineError):
    """The caller asked to stop training between two optimiser steps."""


class TrainingFailed(EngineError):
    """Training could not run or produced unusable weights (e.g. a non-finite loss)."""


class LoraFormatError(EngineError, ValueError):
    """Bytes or files that should hold an avatar LoRA do not."""


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise SpecError(name, f"must be between {low} and {high}, got {value}")


def _check_number(name: str, value: Any, low: float, high: float, *, open_low: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(name, f"must be a number, got {type(value).__name__}")
    too_low = value <= low if open_low else value < low
    if not math.isfinite(value) or too_low or value > high:
        bound = f"greater than {low}" if open_low else f"at least {low}"
        raise SpecError(name, f"must be {bound} and at most {high}, got {value}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(name, f"must be true or false, got {type(value).__name__}")


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one avatar training run; validated on construction.

    ``alpha=None`` means ``alpha = rank`` (LoRA scale 1). ``steps`` is the total number of
    optimiser steps (see the module docstring on scaling it with the photo count).
    ``time_budget_s`` stops training early, keeping what was learnt (``None``: no budget).
    ``mixed_precision`` runs the forward pass under autocast (``fp16`` also scales the loss
    on CUDA); LoRA weights and optimiser state are float32 either way. ``auto`` (the default)
    is autocast on CUDA only: to the UNet's own dtype when that is bfloat16/float16 (no weight
    casts), else bfloat16 where the GPU supports it; ``no`` elsewhere (the CPU path is exact).
    ``batch_size``: photos per step; on a GPU 2-4 uses it far better than 1 at about the same
    time per step (bench/gpu.sh measures 1, 2 and 4).
    """

    rank: int = 4
    alpha: float | None = None
    steps: int = 400
    learning_rate: float = 1.5e-4
    resolution: int = 512
    batch_size: int = 1
    seed: int = 0
    trigger: str = "sks person"
    train_text_encoder: bool = False
    target_modules: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    time_budget_s: float | None = None
    gradient_checkpointing: bool = False
    mixed_precision: MixedPrecision = "auto"

    def __post_init__(self) -> None:
        _check_int("rank", self.rank, 1, 256)
        if self.alpha is not None:
            _check_number("alpha", self.alpha, 0.0, 4096.0, open_low=True)
        _check_int("steps", self.steps, 1, 100_000)
        _check_number("learning_rate", self.learning_rate, 0.0, 1.0, open_low=True)
        _check_int("resolution", self.resolution, 64, 2048)
        if self.resolution % 8:
            raise SpecError("resolution", f"must be a multiple of 8, got {self.resolution}")
        _check_int("batch_size", self.batch_size, 1, 64)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        if not isinstance(self.trigger, str) or not self.trigger.strip():
            raise SpecError("trigger", "must be a non-empty string")
        if len(self.trigger) > 200:
            raise SpecError("trigger", "must be at most 200 characters")
        _check_bool("train_text_encoder", self.train_text_encoder)
        if isinstance(self.target_modules, str) or not isinstance(
            self.target_modules, tuple | list
        ):
            raise SpecError("target_modules", "must be a list of module names")
        if not self.target_modules or not all(
            isinstance(name, str) and name.strip() for name in self.target_modules
        ):
            raise SpecError("target_modules", "must be a non-empty list of non-empty names")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.time_budget_s is not None:
            _check_number("time_budget_s", self.time_budget_s, 0.0, 7 * 86400.0, open_low=False)
        _check_bool("gradient_checkpointing", self.gradient_checkpointing)
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise SpecError(
                "mixed_precision",
                f"must be one of auto, no, bf16, fp16, got {self.mixed_precision!r}",
            )

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def caption(self) -> str:
        return f"a photo of {self.trigger}"


@dataclass(frozen=True)
class TrainedLora:
    """An avatar LoRA: diffusers-format weights (see the module docstring) and JSON metadata."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """The largest LoRA rank in the weights (what `AvatarSlot` pads to)."""
        return lora_rank(self.state_dict)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_dict.values())


def lora_rank(state_dict: Mapping[str, torch.Tensor]) -> int:
    """The largest rank of a LoRA state dict in diffusers or peft key format."""
    ranks = [
        int(t.shape[0])
        for key, t in state_dict.items()
        if t.ndim >= 2
        and ("lora.down" in key or "lora_A" in key or "lora_linear_layer.down" in key)
    ]
    if not ranks:
        raise LoraFormatError("no LoRA down-projection weights found")
    return max(ranks)


# --------------------------------------------------------------------------- training


_Module = TypeVar("_Module", bound=torch.nn.Module)


def _shared_weight_clone(model: _Module) -> _Module:
    """A new module tree over the same base weight storage, without peft LoRA layers.

    See the module docstring: parameters become fresh frozen ``Parameter`` objects over the
    same memory, buffers are shared, and peft wrappers are replaced by their base layers. An
    identity adapter (IP-Adapter) in the UNet is left out of the copy too.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = torch.nn.Parameter(param.detach(), requires_grad=False)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer
    clone = copy.deepcopy(model, memo)
    for name, module in list(clone.named_modules()):
        if not isinstance(module, BaseTunerLayer):
            continue
        if module.merged:
            raise TrainingFailed(
                "the pipeline has a fused LoRA; unfuse it before training an avatar"
            )
        parent_name, _, child_name = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child_name, module.get_base_layer())
    from engine.identity import strip_identity_adapter

    strip_identity_adapter(clone)  # an avatar trains on the plain base UNet, no IP-Adapter
    clone.__dict__.pop("peft_config", None)
    if hasattr(clone, "_hf_peft_config_loaded"):
        clone._hf_peft_config_loaded = False
    if hasattr(clone, "_prepare_lora_hotswap_kwargs"):
        clone._prepare_lora_hotswap_kwargs = None
    clone.train()
    return clone


def _photo_tensor(photo: Image.Image, resolution: int) -> torch.Tensor:
    """RGB, centre-cropped to a square, resized, as a (3, R, R) tensor in [-1, 1]."""
    image = ImageOps.fit(
        photo.convert("RGB"), (resolution, resolution), method=Image.Resampling.BICUBIC
    )
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@torch.no_grad()
def _encode_photos(
    vae: Any, photos: Sequence[Image.Image], resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of each photo's latent distribution (float32), all computed up front.

    On an accelerator in batches of `_ENCODE_BATCH` photos (one VAE call per batch); on the
    CPU one photo per call, where batching gains nothing and a batched convolution would
    round differently (CPU results for a seed stay what they were).
    """
    batch = 1 if vae.device.type == "cpu" else _ENCODE_BATCH
    means, stds = [], []
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        pixels = torch.stack([_photo_tensor(photo, resolution) for photo in chunk])
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


def resolve_mixed_precision(
    mixed_precision: MixedPrecision, device: torch.device, weight_dtype: torch.dtype
) -> Literal["no", "bf16", "fp16"]:
    """What ``mixed_precision="auto"`` means on ``device`` for a UNet in ``weight_dtype``."""
    if mixed_precision != "auto":
        return mixed_precision
    if device.type != "cuda":
        return "no"
    if weight_dtype == torch.float16:
        return "fp16"
    if weight_dtype == torch.bfloat16 or torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _text_inputs(pipeline: Any, caption: str) -> torch.Tensor:
    tokenizer = pipeline.tokenizer
    return tokenizer(
        caption,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` on ``device``, so random tensors are drawn where they
    are used (no host-to-device copy, no device mix).

    On the CPU this is the plain CPU generator, so CPU results for a seed are what they always
    were. The ``meta`` device has no RNG (meta tensors hold no data and ignore a generator):
    it gets a CPU generator, which keeps the code path identical for device-discipline tests.
    """
    if device.type == "meta":
        return torch.Generator("cpu").manual_seed(seed)
    return torch.Generator(device).manual_seed(seed)


def _batch_indices(
    count: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless batches (index tensors on ``device``) walking through a fresh random
    permutation of the photos per epoch; a batch may span two epochs.

    The permutations are drawn and sliced on the device: no host round trip per step. On the
    CPU the draws are the ones a list-based walk made (same generator calls, same order).
    """
    order = torch.empty(0, dtype=torch.long, device=device)
    while True:
        parts: list[torch.Tensor] = []
        need = batch_size
        while need:
            if order.numel() == 0:
                order = torch.randperm(count, generator=generator, device=device)
            parts.append(order[:need])
            order = order[need:]
            need -= parts[-1].numel()
        yield parts[0] if len(parts) == 1 else torch.cat(parts)


def _export_state_dict(
    model: torch.nn.Module, prefix: str, scale: float
) -> dict[str, torch.Tensor]:
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    peft_state = get_peft_model_state_dict(model, adapter_name=_TRAINING_ADAPTER)
    folded = {
        key: (value * scale if "lora_B" in key else value) for key, value in peft_state.items()
    }
    converted = convert_state_dict_to_diffusers(folded)
    return {
        f"{prefix}.{key}": value.detach().to("cpu", torch.float32).contiguous().clone()
        for key, value in converted.items()
    }


def _lora_config(config: TrainingConfig, target_modules: Sequence[str]) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        # peft annotates lora_alpha as int; it only divides it by r, and a float alpha is valid.
        lora_alpha=cast(int, config.lora_alpha),
        init_lora_weights=True,
        target_modules=list(target_modules),
    )


def _check_loss(loss: torch.Tensor, nonfinite: torch.Tensor, checked: int, step: int) -> float:
    """Read the loss back (one device sync) and fail if any loss since step ``checked`` was
    not finite; returns the loss of step ``step`` (0-based)."""
    value, bad = torch.stack([loss.detach().float(), nonfinite.float()]).tolist()
    if bad or not math.isfinite(value):
        where = f"step {step + 1}" if checked == step else f"steps {checked + 1}-{step + 1}"
        raise TrainingFailed(f"the loss became non-finite ({value}) at {where}")
    return float(value)


def train_avatar_lora(
    *,
    pipeline: Any,
    photos: Sequence[Image.Image],
    config: TrainingConfig,
    on_progress: TrainingProgress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    base_model: str | None = None,
) -> TrainedLora:
    """Train an avatar LoRA on ``photos`` for ``pipeline``'s model; the pipeline is unchanged.

    ``on_progress(step, total, loss)`` runs after every optimiser step; ``loss`` is the last
    one read back to the host (every `LOSS_CHECK_EVERY` steps, the first and the last: reading
    it every step would stall a GPU once per step). ``should_cancel()`` is
    polled before every step and raises `TrainingCanceled`. When ``config.time_budget_s`` has
    passed (counted from the call, photo encoding included) training stops before the next
    step -- at least one step always runs -- and returns with ``metadata["stopped_early"]``.
    ``base_model`` (e.g. the registry key) is recorded in the metadata; it defaults to the
    pipeline's ``name_or_path``. Deterministic for a seed on CPU at a fixed torch thread count.
    Stable Diffusion 1.x/2.x pipelines only (one text encoder, no added conditioning).
    """
    from diffusers import DDPMScheduler

    started = time.monotonic()
    if not photos:
        raise SpecError("photos", "at least one photo is required")
    if getattr(pipeline, "text_encoder_2", None) is not None:
        raise TrainingFailed("avatar training supports Stable Diffusion 1.x/2.x pipelines only")
    unet_module = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
    if any(getattr(module, "fused_projections", False) for module in unet_module.modules()):
        raise TrainingFailed(
            "the UNet's Q/K/V projections are fused (fuse_qkv_projections): a LoRA on "
            "to_q/to_k/to_v would not train; train on an unfused pipeline"
        )
    if should_cancel is not None and should_cancel():
        raise TrainingCanceled("canceled before the first step")

    unet_source = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
    device, weight_dtype = unet_source.device, unet_source.dtype
    mixed_precision = resolve_mixed_precision(config.mixed_precision, device, weight_dtype)
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    if mixed_precision != "no":
        amp_dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16

        def autocast() -> contextlib.AbstractContextManager[Any]:
            return torch.autocast(device.type, dtype=amp_dtype)

    scaler = torch.amp.GradScaler(
        device.type, enabled=mixed_precision == "fp16" and device.type == "cuda"
    )
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise TrainingFailed(f"unsupported scheduler prediction_type {prediction_type!r}")
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)

    generator = device_generator(device, config.seed)
    latent_mean, latent_std = _encode_photos(pipeline.vae, photos, config.resolution)
    latent_mean, latent_std = latent_mean.to(device), latent_std.to(device)
    vae_config = pipeline.vae.config
    scaling_factor = float(vae_config.scaling_factor)
    shift_factor = float(getattr(vae_config, "shift_factor", None) or 0.0)
    input_ids = _text_inputs(pipeline, config.caption).to(device)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        # peft initialises lora_A from the global RNG: seed it, without leaking the change.
        torch.manual_seed(config.seed)
        unet = _shared_weight_clone(pipeline.unet)
        unet.add_adapter(
            _lora_config(config, config.target_modules),
            adapter_name=_TRAINING_ADAPTER,
        )
        text_encoder = None
        if config.train_text_encoder:
            text_encoder = _shared_weight_clone(pipeline.text_encoder)
            text_encoder.add_adapter(
                _lora_config(config, _TEXT_ENCODER_TARGETS),
                adapter_name=_TRAINING_ADAPTER,
            )
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    if text_encoder is not None:
        params += [p for p in text_encoder.parameters() if p.requires_grad]
    if not params:
        raise TrainingFailed(f"no UNet module matches target_modules {config.target_modules}")
    for param in params:  # LoRA weights follow the base dtype; train them in float32
        param.data = param.data.float()
    # One fused kernel for all LoRA tensors on CUDA; the CPU keeps the per-tensor loop (the
    # results for a seed stay what they were).
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        weight_decay=_WEIGHT_DECAY,
        foreach=False if not fused else None,
        fused=fused or None,
    )

    encoder_hidden_states = None
    if text_encoder is None:
        with torch.no_grad():
            encoder_hidden_states = pipeline.text_encoder(input_ids)[0].to(weight_dtype)

    batches = _batch_indices(len(photos), config.batch_size, generator, device)
    steps_done, loss_value, stopped_early = 0, float("nan"), False
    nonfinite: torch.Tensor | None = None  # device flag: a loss since the last check was bad
    checked = 0  # steps whose loss was checked on the host
    for step in range(config.steps):
        if step and should_cancel is not None and should_cancel():
            raise TrainingCanceled(f"canceled after step {step} of {config.steps}")
        if (
            step
            and config.time_budget_s is not None
            and time.monotonic() - started >= config.time_budget_s
        ):
            stopped_early = True
            break
        # Every tensor of the step is made on the model's device (see `device_generator`);
        # the noise arithmetic and the loss stay float32, the UNet gets its own dtype.
        index = next(batches)
        mean, std = latent_mean[index], latent_std[index]
        eps = torch.randn(mean.shape, generator=generator, device=device, dtype=mean.dtype)
        latents = (mean + std * eps - shift_factor) * scaling_factor
        noise = torch.randn(latents.shape, generator=generator, device=device, dtype=mean.dtype)
        timesteps = torch.randint(
            0, num_timesteps, (len(index),), generator=generator, device=device
        )
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        target = (
            noise
            if prediction_type == "epsilon"
            else noise_scheduler.get_velocity(latents, noise, timesteps)
        )
        with autocast():
            if text_encoder is not None:
                states = text_encoder(input_ids)[0]
            else:
                states = encoder_hidden_states
            states = states.expand(len(index), -1, -1)
            prediction = unet(
                noisy.to(weight_dtype), timesteps, encoder_hidden_states=states
            ).sample
        loss = F.mse_loss(prediction.float(), target)
        bad = ~torch.isfinite(loss.detach())
        nonfinite = bad if nonfinite is None else nonfinite | bad
        if step == 0 or (step + 1) % LOSS_CHECK_EVERY == 0 or step + 1 == config.steps:
            loss_value = _check_loss(loss, nonfinite, checked, step)
            nonfinite, checked = None, step + 1
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, _MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        steps_done = step + 1
        if on_progress is not None:
            on_progress(steps_done, config.steps, loss_value)
    if nonfinite is not None and checked < steps_done:  # stopped early between two checks
        loss_value = _check_loss(loss, nonfinite, checked, steps_done - 1)

    scale = config.lora_alpha / config.rank
    state_dict = _export_state_dict(unet, "unet", scale)
    if text_encoder is not None:
        state_dict.update(_export_state_dict(text_encoder, "text_encoder", scale))
    metadata = {
        "format_version": FORMAT_VERSION,
        "base_model": base_model or getattr(pipeline, "name_or_path", None),
        "rank": config.rank,
        "alpha": config.lora_alpha,
        "alpha_folded": True,
        "trigger": config.trigger,
        "caption": config.caption,
        "target_modules": list(config.target_modules),
        "train_text_encoder": config.train_text_encoder,
        "steps_done": steps_done,
        "steps_planned": config.steps,
        "stopped_early": stopped_early,
        "resolution": config.resolution,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "mixed_precision": mixed_precision,
        "seed": config.seed,
        "num_photos": len(photos),
        "training_seconds": round(time.monotonic() - started, 3),
        "final_loss": loss_value,
    }
    return TrainedLora(state_dict=state_dict, metadata=metadata)


# --------------------------------------------------------------------------- storage


def _header_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    # One key only: safetensors writes header metadata from a hash map, so with two keys
    # (e.g. the customary "format": "pt", which no LoRA loader needs) their order -- and the
    # bytes -- change from call to call. One key keeps the same LoRA the same bytes.
    return {HEADER_METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)}


def _checked(state_dict: Mapping[str, Any], metadata: Any) -> TrainedLora:
    if not state_dict:
        raise LoraFormatError("the LoRA holds no tensors")
    if not isinstance(metadata, dict):
        raise LoraFormatError("the LoRA metadata is not a JSON object")
    version = metadata.get("format_version")
    if version is not None and version > FORMAT_VERSION:
        raise LoraFormatError(f"LoRA format version {version} is newer than {FORMAT_VERSION}")
    lora_rank(state_dict)
    return TrainedLora(state_dict=dict(state_dict), metadata=metadata)


def lora_to_bytes(trained: TrainedLora) -> bytes:
    """The LoRA as one safetensors blob, metadata (JSON) in its header."""
    return safetensors.torch.save(
        {k: v.contiguous() for k, v in trained.state_dict.items()},
        metadata=_header_metadata(trained.metadata),
    )


def _parse_header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise LoraFormatError("too short to be a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise LoraFormatError("truncated safetensors header")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError as exc:
        raise LoraFormatError(f"unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise LoraFormatError("unreadable safetensors header")
    return header.get("__metadata__") or {}


def _metadata_from_header(header: Mapping[str, str]) -> dict[str, Any]:
    raw = header.get(HEADER_METADATA_KEY)
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise LoraFormatError(f"unreadable LoRA metadata: {exc}") from exc


def lora_from_bytes(data: bytes) -> TrainedLora:
    """Inverse of `lora_to_bytes`; raises `LoraFormatError` for anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LoraFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    metadata = _metadata_from_header(_parse_header(data))
    try:
        state_dict = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise LoraFormatError(f"unreadable safetensors data: {exc}") from exc
    return _checked(state_dict, metadata)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_lora(trained: TrainedLora, directory: str | os.PathLike[str]) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (diffusers' file name and key format, so
    ``load_lora_weights(directory)`` reads it too) and ``avatar.json``; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / LORA_WEIGHTS_NAME, lora_to_bytes(trained))
    text = json.dumps(trained.metadata, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / METADATA_NAME, text.encode("utf-8"))
    return directory


def load_lora_file(directory: str | os.PathLike[str]) -> TrainedLora:
    """Read a LoRA written by `save_lora` (a directory, or the weights file itself).

    Metadata comes from ``avatar.json`` when present, else from the weights' header.
    """
    path = Path(directory)
    weights = path if path.is_file() else path / LORA_WEIGHTS_NAME
    try:
        data = weights.read_bytes()
    except OSError as exc:
        raise LoraFormatError(f"cannot read {weights}: {exc}") from exc
    trained = lora_from_bytes(data)
    sidecar = weights.parent / METADATA_NAME
    if sidecar.is_file():
        try:
            metadata = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LoraFormatError(f"cannot read {sidecar}: {exc}") from exc
        trained = _checked(trained.state_dict, metadata)
    return trained
