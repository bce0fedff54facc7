"""Turns a `RenderSpec` into PNG bytes, keeping loaded pipelines in memory between renders.

One `Engine` per worker process: loading a pipeline costs seconds to minutes on real models,
rendering with a loaded one costs the steps only.

Seeds go through CPU generators, so the starting noise never depends on the device. The same
spec then gives byte-identical PNGs across runs and processes given the same hardware, library
versions and torch thread count (the thread count changes float summation order; measured on
CPU: 1 and 2 threads give different bytes).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from engine.errors import ModelLoadError, RenderCanceled, SpecError
from engine.registry import ModelRegistry, ModelSpec
from engine.spec import RenderSpec

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
PipelineLoader = Callable[[ModelSpec], DiffusionPipeline]

_PIPELINE_CLASSES: dict[str, type[DiffusionPipeline]] = {
    "sd15": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class RenderedImage:
    """One output image; ``seed`` alone reproduces it with ``num_images=1``."""

    png_bytes: bytes
    seed: int
    width: int
    height: int


def disable_progress_bars() -> None:
    """Silence tqdm bars from diffusers/transformers: workers log, they have no terminal."""
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA (half the memory, same quality) and float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto or one of {sorted(_DTYPES)}") from None


def load_pipeline(
    model: ModelSpec, *, device: torch.device, dtype: torch.dtype
) -> DiffusionPipeline:
    """Load a base model with ``from_pretrained``, never touching the network for local paths."""
    if model.kind != "base":
        raise ModelLoadError(f"model {model.key!r} is a {model.kind}, not a base model")
    if model.is_local and not Path(model.source).is_dir():
        raise ModelLoadError(
            f"model {model.key!r}: {model.source} does not exist "
            "(for the tiny profile run `python -m engine build-tiny DIR`)"
        )
    pipeline_class = _PIPELINE_CLASSES[model.family]
    try:
        pipeline = pipeline_class.from_pretrained(
            str(model.source), local_files_only=model.is_local, dtype=dtype
        )
        pipeline.to(device)
    except Exception as exc:  # from_pretrained raises many unrelated types; keep the cause
        raise ModelLoadError(f"cannot load model {model.key!r} from {model.source}: {exc}") from exc
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class PipelineCache:
    """Loaded pipelines by model key; each key is loaded at most once, even across threads."""

    def __init__(self, loader: PipelineLoader) -> None:
        self._loader = loader
        self._pipelines: dict[str, DiffusionPipeline] = {}
        self._lock = threading.Lock()

    def get(self, model: ModelSpec) -> DiffusionPipeline:
        with self._lock:
            if model.key not in self._pipelines:
                self._pipelines[model.key] = self._loader(model)
            return self._pipelines[model.key]

    def evict(self, key: str) -> None:
        with self._lock:
            self._pipelines.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._pipelines

    def __len__(self) -> int:
        return len(self._pipelines)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata chunks, so equal pixels always give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _step_callback(
    on_progress: ProgressCallback | None, should_cancel: CancelCheck | None
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """Adapt our callbacks to diffusers' ``callback_on_step_end`` (runs after every step).

    The total comes from the pipeline, not the spec: some schedulers run more timesteps than
    ``num_inference_steps`` (e.g. Heun), and progress must still reach 100%.
    """

    def callback(pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        total = pipe.num_timesteps
        if on_progress is not None:
            on_progress(step + 1, total)
        if should_cancel is not None and should_cancel():
            raise RenderCanceled(f"canceled after step {step + 1} of {total}")
        return kwargs

    return callback


class Engine:
    """Renders specs with the models of one registry, caching loaded pipelines."""

    def __init__(
        self, registry: ModelRegistry, *, device: str = "auto", dtype: str | None = None
    ) -> None:
        """``dtype`` overrides every model's registry dtype (e.g. ``float32`` for CPU tests)."""
        self.registry = registry
        self.device = resolve_device(device)
        self._dtype_override = dtype
        self.cache = PipelineCache(self._load)
        disable_progress_bars()

    def _load(self, model: ModelSpec) -> DiffusionPipeline:
        dtype = resolve_dtype(self._dtype_override or model.dtype, self.device)
        return load_pipeline(model, device=self.device, dtype=dtype)

    def pipeline(self, key: str | None = None) -> DiffusionPipeline:
        """The loaded pipeline for a base model key (default base if None), loading it once."""
        return self.cache.get(self.registry.get(key or self.registry.default_base))

    def render(
        self,
        spec: RenderSpec,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[RenderedImage]:
        """Render ``spec``; image ``i`` uses seed ``spec.seed + i``.

        ``on_progress(step, total)`` runs after each denoising step; ``should_cancel()`` is
        polled before the first step and after every step, raising `RenderCanceled`.
        """
        model = self.registry.get(spec.base_model or self.registry.default_base)
        if model.kind != "base":
            raise SpecError("base_model", f"{model.key!r} is a {model.kind}, not a base model")
        pipeline = self.cache.get(model)
        if should_cancel is not None and should_cancel():
            raise RenderCanceled("canceled before the first step")
        seeds = [spec.seed + i for i in range(spec.num_images)]
        output = pipeline(
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt or None,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance,
            width=spec.width,
            height=spec.height,
            num_images_per_prompt=spec.num_images,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            callback_on_step_end=_step_callback(on_progress, should_cancel),
            output_type="pil",
        )
        return [
            RenderedImage(encode_png(image), seed, image.width, image.height)
            for image, seed in zip(output.images, seeds, strict=True)
        ]
