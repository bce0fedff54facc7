"""One pipeline per render mode, all sharing the modules of one loaded base pipeline.

A base model is loaded once (`engine.runtime.PipelineCache`); the img2img, inpaint and
ControlNet pipelines are made from it with diffusers' ``from_pipe``, which reuses the same
UNet, VAE, text encoders and tokenizers (no copy, no extra memory): a LoRA loaded into the base
UNet therefore acts in every mode. ControlNets are extra modules, loaded once per key.

Modes: ``txt2img``, ``img2img`` (reference image or light map as the start), ``inpaint``
(reference image + mask), each optionally with ControlNets (one or several).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

import torch
from diffusers import (
    ControlNetModel,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    SchedulerMixin,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)

from engine.spec import SAMPLERS

Mode = Literal["txt2img", "img2img", "inpaint"]

# (family, mode, with controlnet) -> pipeline class
PIPELINE_CLASSES: dict[tuple[str, str, bool], type[DiffusionPipeline]] = {
    ("sd15", "txt2img", False): StableDiffusionPipeline,
    ("sd15", "img2img", False): StableDiffusionImg2ImgPipeline,
    ("sd15", "inpaint", False): StableDiffusionInpaintPipeline,
    ("sd15", "txt2img", True): StableDiffusionControlNetPipeline,
    ("sd15", "img2img", True): StableDiffusionControlNetImg2ImgPipeline,
    ("sd15", "inpaint", True): StableDiffusionControlNetInpaintPipeline,
    ("sdxl", "txt2img", False): StableDiffusionXLPipeline,
    ("sdxl", "img2img", False): StableDiffusionXLImg2ImgPipeline,
    ("sdxl", "inpaint", False): StableDiffusionXLInpaintPipeline,
    ("sdxl", "txt2img", True): StableDiffusionXLControlNetPipeline,
    ("sdxl", "img2img", True): StableDiffusionXLControlNetImg2ImgPipeline,
    ("sdxl", "inpaint", True): StableDiffusionXLControlNetInpaintPipeline,
}

# Spec sampler name -> (scheduler class, config overrides). The A1111/ComfyUI names users know.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "ddim": (DDIMScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
}
assert set(SCHEDULERS) == set(SAMPLERS), "engine.spec.SAMPLERS and SCHEDULERS must agree"


def make_scheduler(sampler: str | None, base: Any) -> Any:
    """A fresh scheduler for one render: ``sampler`` applied to the config of the base
    model's scheduler ``base`` (betas, timestep spacing...), or ``base``'s class when None."""
    base_config = base.config
    if sampler is None:
        return type(base).from_config(base_config)
    cls, overrides = SCHEDULERS[sampler]
    return cls.from_config(base_config, **overrides)


class ModePipelines:
    """The per-mode pipelines of one base pipeline, made on first use and cached."""

    def __init__(self, base: DiffusionPipeline, family: str) -> None:
        self.base = base
        self.family = family
        # The scheduler as loaded: renders replace pipe.scheduler, this default stays.
        self.default_scheduler = base.scheduler
        self._pipelines: dict[tuple[str, tuple[str, ...]], DiffusionPipeline] = {
            ("txt2img", ()): base
        }
        self._lock = threading.Lock()

    def get(
        self, mode: Mode, controlnets: Sequence[tuple[str, ControlNetModel]] = ()
    ) -> DiffusionPipeline:
        """The pipeline for ``mode`` with the given ``(key, ControlNet)`` list, sharing modules."""
        keys = tuple(key for key, _ in controlnets)
        with self._lock:
            if (mode, keys) not in self._pipelines:
                cls = PIPELINE_CLASSES[(self.family, mode, bool(controlnets))]
                extra: dict[str, Any] = {}
                if controlnets:
                    models = [model for _, model in controlnets]
                    extra["controlnet"] = models[0] if len(models) == 1 else models
                pipeline = cls.from_pipe(self.base, **extra)
                pipeline.set_progress_bar_config(disable=True)
                self._pipelines[(mode, keys)] = pipeline
            return self._pipelines[(mode, keys)]

    def __len__(self) -> int:
        return len(self._pipelines)


def apply_speed_options(
    pipeline: DiffusionPipeline,
    *,
    channels_last: bool = True,
    compile_unet: bool = False,
    compile_mode: str | None = "max-autotune-no-cudagraphs",
    compile_backend: Any = "inductor",
    fuse_qkv: Literal["off", "vae", "all"] = "off",
) -> dict[str, Any]:
    """Speed settings on a loaded pipeline; returns what was applied.

    SDPA (``torch.nn.functional.scaled_dot_product_attention``: flash / memory-efficient
    kernels) is diffusers' default attention processor on torch 2, so it is only reported.
    ``fuse_qkv``: ``"all"`` fuses the attention Q/K/V projections of the UNet and the VAE
    (diffusers' ``fuse_qkv_projections``), ``"vae"`` only the VAE's. A fused UNet attention no
    longer calls ``to_q``/``to_k``/``to_v``, where avatar and style LoRAs live, so use ``"all"``
    only for base-model serving (`engine.adapters` refuses LoRAs on a fused UNet); ``"vae"``
    is always LoRA-safe. ``channels_last`` helps the UNet's convolutions on CUDA;
    ``torch.compile`` of the UNet (``compile_mode`` / ``compile_backend``, torch's own names;
    `is_compiled` tells)
    costs a compile per new shape (batch size, resolution) and then runs ~1.3-1.5x faster.
    Order: fusion, memory format, compile (the compiled graph sees the final modules).
    """
    applied: dict[str, Any] = {}
    fused = "off"
    if fuse_qkv == "all":
        from engine.identity import has_identity_adapter

        if has_identity_adapter(pipeline.unet):
            # Fusion replaces every UNet attention processor, the identity adapter's too.
            applied["fuse_qkv_error"] = "UNet not fused: an identity adapter is loaded"
            fuse_qkv = "vae"
    if fuse_qkv != "off":
        try:
            if fuse_qkv == "all":
                pipeline.fuse_qkv_projections(unet=True, vae=True)
            else:
                pipeline.fuse_qkv_projections(unet=False, vae=True)
            fused = fuse_qkv
        except (AttributeError, ValueError) as exc:  # a pipeline or model without support
            applied["fuse_qkv_error"] = str(exc)
    applied["fused_qkv"] = fused
    applied["attention"] = sorted(
        {type(p).__name__ for p in pipeline.unet.attn_processors.values()}
    )
    if channels_last:
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    applied["channels_last"] = channels_last
    if compile_unet:
        # In place (``Module.compile``): ``pipeline.unet`` stays the diffusers model, so LoRA
        # methods (``set_adapters``, hot-swap) keep working and every mode pipeline made with
        # ``from_pipe`` shares the compiled UNet. Copies (avatar training's clone) are plain.
        pipeline.unet.compile(mode=compile_mode, backend=compile_backend)
    applied["compiled"] = compile_unet
    if compile_unet:
        applied["compile_mode"] = compile_mode or "default"
        applied["compile_backend"] = (
            compile_backend if isinstance(compile_backend, str) else type(compile_backend).__name__
        )
    return applied


def is_compiled(module: Any) -> bool:
    """True for a module compiled in place (``Module.compile``) or a torch.compile wrapper."""
    return getattr(module, "_compiled_call_impl", None) is not None or hasattr(module, "_orig_mod")
