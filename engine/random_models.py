"""Full-size Stable Diffusion architectures with random weights (profiles ``sd15-random``,
``sdxl-random``), for benchmarks and load tests without downloading a checkpoint.

The architectures come from the JSON files in ``engine/configs/`` (the UNet, VAE and text
encoder configs of the published SD1.5 and SDXL-base checkpoints). Only the tokenizer differs:
the offline byte-level tokenizer of `engine.tiny` (its ids all fall inside CLIP's 49408-entry
embedding table, so the text encoders have their real size and cost).

Two ways to use them:

- ``python -m engine build-random --profile sd15-random DIR`` saves the pipeline with
  ``save_pretrained`` under ``DIR/sd15-random`` (SD1.5: 4.3 GB float32, 2.1 GB with
  ``--dtype float16``; SDXL: 10.3 / 5.2 GB); the registry's profile then loads it with
  ``from_pretrained``, the same path a real checkpoint takes.
- `build_random_pipeline` builds in memory, directly on the target device; the benchmark does
  this when no saved copy exists, since writing and re-reading gigabytes measures the disk, not
  the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine.registry import random_profile_config
from engine.runtime import disable_progress_bars
from engine.tiny import tiny_tokenizer


def _text_config(config: dict[str, Any], tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        **config,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _scheduler(config: dict[str, Any]) -> Any:
    import diffusers

    config = dict(config)
    cls = getattr(diffusers, config.pop("_class_name"))
    return cls.from_config(config)


def build_random_components(
    profile: str, *, device: str | torch.device = "cpu", seed: int = 0
) -> dict[str, Any]:
    """The pipeline components of ``profile``, float32, initialised on ``device``.

    ``device="meta"`` allocates nothing (for counting parameters). The global RNG of the
    caller is left untouched.
    """
    config = random_profile_config(profile)
    tokenizer = tiny_tokenizer()
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        components: dict[str, Any] = {
            "unet": UNet2DConditionModel(**config["unet"]),
            "vae": AutoencoderKL(**config["vae"]),
            "text_encoder": CLIPTextModel(_text_config(config["text_encoder"], tokenizer)),
            "tokenizer": tokenizer,
        }
        if config["family"] == "sdxl":
            components["text_encoder_2"] = CLIPTextModelWithProjection(
                _text_config(config["text_encoder_2"], tokenizer)
            )
            components["tokenizer_2"] = tokenizer
    components["scheduler"] = _scheduler(config["scheduler"])
    return components


def parameter_counts(profile: str) -> dict[str, int]:
    """Parameters per model of ``profile``, counted on the meta device (no memory, ~1 s)."""
    components = build_random_components(profile, device="meta")
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in components.items()
        if isinstance(module, torch.nn.Module)
    }


def build_random_pipeline(
    profile: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> DiffusionPipeline:
    """The full-size pipeline of ``profile`` in memory, on ``device`` in ``dtype``."""
    disable_progress_bars()
    config = random_profile_config(profile)
    components = build_random_components(profile, device=device, seed=seed)
    if config["family"] == "sdxl":
        pipeline: DiffusionPipeline = StableDiffusionXLPipeline(
            **components, force_zeros_for_empty_prompt=True
        )
    else:
        pipeline = StableDiffusionPipeline(
            **components,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if dtype != torch.float32:
        pipeline.to(dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def save_random(
    profile: str, directory: Path, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """Build ``profile`` on the CPU and save it to ``directory/<profile>`` (safetensors)."""
    directory = Path(directory)
    pipeline = build_random_pipeline(profile, dtype=dtype, seed=seed)
    target = directory / profile
    pipeline.save_pretrained(target, safe_serialization=True)
    config = random_profile_config(profile)
    manifest = {
        "profile": profile,
        "seed": seed,
        "dtype": str(dtype).removeprefix("torch."),
        "models": {profile: {"kind": "base", "family": config["family"], "path": profile}},
    }
    (directory / "profile.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return target
