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

``sd15-random`` also gets an identity adapter (`save_random_identity`, written by
``build-random`` with the base, or alone with ``--only identity``): h94/IP-Adapter's
``ip-adapter_sd15`` architecture (``ImageProjection``: the 1024-d CLIP image embedding -> 4
tokens of 768, plus ``to_k_ip`` / ``to_v_ip`` in the UNet's 16 cross-attention layers; 22.3 M
parameters) and its image encoder, the OpenCLIP ViT-H/14 vision tower as
``CLIPVisionModelWithProjection`` (632 M parameters), saved in the folder layout diffusers'
``load_ip_adapter`` reads: ``DIR/sd15-random-identity/ip-adapter_sd15.safetensors`` and
``image_encoder/`` (1.3 GB in float16 / bfloat16, 2.5 GB in float32). ``--identity-encoder
small`` swaps the encoder for a 2-layer one with the same 1024-d output (same adapter file;
for CPU tests: the ViT-H takes ~10 s to build on a CPU and seconds per image to run).
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
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from engine.errors import ConfigError
from engine.registry import (
    DEFAULT_IMAGE_ENCODER,
    RANDOM_IDENTITY_ADAPTERS,
    RANDOM_IDENTITY_WEIGHTS,
    random_profile_config,
)
from engine.runtime import disable_progress_bars
from engine.tiny import _preprocessor_config, tiny_tokenizer

# The identity adapters' image encoders (``CLIPVisionModelWithProjection``). ``vit-h-14`` is
# h94/IP-Adapter's ``models/image_encoder`` (OpenCLIP ViT-H/14); ``small`` keeps its input
# (224 px, patch 14) and its 1024-d output, so the adapter is the same, with a toy encoder.
IMAGE_ENCODERS: dict[str, dict[str, Any]] = {
    "vit-h-14": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_attention_heads": 16,
        "num_hidden_layers": 32,
        "patch_size": 14,
        "image_size": 224,
        "projection_dim": 1024,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    },
    "small": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "patch_size": 14,
        "image_size": 224,
        "projection_dim": 1024,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    },
}
IDENTITY_TOKENS = 4  # ip-adapter_sd15: 4 image tokens in the cross-attention context


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


def _identity_adapter_key(profile: str) -> str:
    key = RANDOM_IDENTITY_ADAPTERS.get(profile)
    if key is None:
        raise ConfigError(f"profile {profile!r} has no random identity adapter")
    return key


def _image_encoder_config(encoder: str) -> CLIPVisionConfig:
    if encoder not in IMAGE_ENCODERS:
        raise ConfigError(f"unknown image encoder {encoder!r}; known: {sorted(IMAGE_ENCODERS)}")
    return CLIPVisionConfig(**IMAGE_ENCODERS[encoder])


def identity_adapter_shapes(
    profile: str, *, encoder: str = "vit-h-14"
) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``profile``'s IP-Adapter weights file and its shape: ``image_proj.*``
    (``ImageProjection``: the encoder's image embedding -> `IDENTITY_TOKENS` tokens of the
    UNet's ``cross_attention_dim``) and ``ip_adapter.<id>.to_k_ip`` / ``to_v_ip`` of every
    cross-attention layer, ids 1, 3, 5... in ``attn_processors`` order (how IP-Adapter files
    are keyed and diffusers' ``load_ip_adapter`` reads them). The UNet is built on the meta
    device (no memory)."""
    _identity_adapter_key(profile)
    config = random_profile_config(profile)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config["unet"])
    cross_dim = int(unet.config.cross_attention_dim)
    embed_dim = int(_image_encoder_config(encoder).projection_dim)
    shapes: dict[str, tuple[int, ...]] = {
        "image_proj.proj.weight": (cross_dim * IDENTITY_TOKENS, embed_dim),
        "image_proj.proj.bias": (cross_dim * IDENTITY_TOKENS,),
        "image_proj.norm.weight": (cross_dim,),
        "image_proj.norm.bias": (cross_dim,),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: no IP-Adapter weights
        attention = unet.get_submodule(name.removesuffix(".processor"))
        hidden = int(attention.to_k.out_features)
        shapes[f"ip_adapter.{key_id}.to_k_ip.weight"] = (hidden, cross_dim)
        shapes[f"ip_adapter.{key_id}.to_v_ip.weight"] = (hidden, cross_dim)
        key_id += 2
    return shapes


def _identity_adapter_weights(
    shapes: dict[str, tuple[int, ...]], generator: torch.Generator, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Random weights at the scale of freshly initialised layers (float32 draws, cast to
    ``dtype``): a random image embedding gives unit-scale tokens after the LayerNorm."""
    weights = {}
    for key, shape in shapes.items():
        if key == "image_proj.norm.weight":
            value = torch.ones(shape)
        elif key.endswith(".bias"):
            value = torch.zeros(shape)
        else:  # [out, in]
            value = torch.randn(shape, generator=generator) * shape[1] ** -0.5
        weights[key] = value.to(dtype).contiguous()
    return weights


def build_random_identity(
    profile: str,
    *,
    encoder: str = "vit-h-14",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, torch.Tensor], CLIPVisionModelWithProjection]:
    """``profile``'s random identity adapter: its weights file's tensors (on the CPU) and its
    image encoder (``encoder``: a key of `IMAGE_ENCODERS`), created on ``device`` in
    ``dtype``. The same ``seed`` gives the same weights on the same kind of device (CUDA's
    random numbers differ from the CPU's; a CUDA build of the ViT-H takes a fraction of the
    CPU's ~10 s). The caller's global RNG is left untouched."""
    shapes = identity_adapter_shapes(profile, encoder=encoder)
    generator = torch.Generator().manual_seed(seed)
    weights = _identity_adapter_weights(shapes, generator, dtype)
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        image_encoder = CLIPVisionModelWithProjection._from_config(
            _image_encoder_config(encoder), dtype=dtype
        )
    image_encoder.eval()
    return weights, image_encoder


def identity_parameter_counts(profile: str, *, encoder: str = "vit-h-14") -> dict[str, int]:
    """Parameters of ``profile``'s identity adapter (``ip_adapter``: the weights file) and of
    its ``image_encoder``, counted on the meta device (no memory)."""
    shapes = identity_adapter_shapes(profile, encoder=encoder)
    with torch.device("meta"):
        image_encoder = CLIPVisionModelWithProjection(_image_encoder_config(encoder))
    return {
        "ip_adapter": sum(torch.Size(shape).numel() for shape in shapes.values()),
        "image_encoder": sum(p.numel() for p in image_encoder.parameters()),
    }


def save_random_identity(
    profile: str,
    directory: Path,
    *,
    encoder: str = "vit-h-14",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Path:
    """Build ``profile``'s identity adapter (`build_random_identity`) and save it where the
    registry expects it, ``directory/<key>/``: the IP-Adapter weights (safetensors,
    ``image_proj.*`` / ``ip_adapter.*``) and ``image_encoder/`` (``save_pretrained`` plus
    CLIP's ``preprocessor_config.json``): the layout diffusers' ``load_ip_adapter`` reads."""
    disable_progress_bars()
    target = Path(directory) / _identity_adapter_key(profile)
    weights, image_encoder = build_random_identity(
        profile, encoder=encoder, seed=seed, dtype=dtype, device=device
    )
    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(target / RANDOM_IDENTITY_WEIGHTS))
    encoder_dir = target / DEFAULT_IMAGE_ENCODER
    image_encoder.save_pretrained(encoder_dir)
    size = int(IMAGE_ENCODERS[encoder]["image_size"])
    (encoder_dir / "preprocessor_config.json").write_text(
        json.dumps(_preprocessor_config(size), indent=2) + "\n", encoding="utf-8"
    )
    return target


PARTS = ("base", "identity")


def save_random(
    profile: str,
    directory: Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    parts: tuple[str, ...] = PARTS,
    identity_encoder: str = "vit-h-14",
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Build ``profile`` on ``device`` and save it under ``directory``: ``base`` (the
    pipeline, ``directory/<profile>``, safetensors) and ``identity`` (its identity adapter, for
    profiles that have one: `save_random_identity`); returns the folders written.
    ``profile.json`` lists them, with what an earlier run wrote there for the same profile."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ConfigError(f"parts must be some of {PARTS}, got {parts!r}")
    if parts == ("identity",):
        _identity_adapter_key(profile)  # fail before building anything
    directory = Path(directory)
    config = random_profile_config(profile)
    dtype_name = str(dtype).removeprefix("torch.")
    written: list[Path] = []
    models: dict[str, Any] = {}
    if "base" in parts:
        pipeline = build_random_pipeline(profile, dtype=dtype, seed=seed, device=device)
        target = directory / profile
        pipeline.save_pretrained(target, safe_serialization=True)
        del pipeline
        written.append(target)
        models[profile] = {
            "kind": "base",
            "family": config["family"],
            "path": profile,
            "seed": seed,
            "dtype": dtype_name,
        }
    if "identity" in parts and profile in RANDOM_IDENTITY_ADAPTERS:
        target = save_random_identity(
            profile, directory, encoder=identity_encoder, seed=seed, dtype=dtype, device=device
        )
        written.append(target)
        models[target.name] = {
            "kind": "identity_adapter",
            "family": config["family"],
            "path": target.name,
            "identity_kind": "image_encoder",
            "weight_name": RANDOM_IDENTITY_WEIGHTS,
            "image_encoder": DEFAULT_IMAGE_ENCODER,
            "image_encoder_size": identity_encoder,
            "seed": seed,
            "dtype": dtype_name,
        }
    manifest_path = directory / "profile.json"
    try:
        earlier = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, ValueError):
        earlier = {}
    if isinstance(earlier, dict) and earlier.get("profile") == profile:
        models = {**earlier.get("models", {}), **models}
    manifest = {"profile": profile, "seed": seed, "dtype": dtype_name, "models": models}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return written
