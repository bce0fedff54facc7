"""Tiny random-weight Stable Diffusion models for tests and the offline demo.

They are saved with ``save_pretrained`` and loaded back through ``from_pretrained``, so tests
exercise the same loading path as a real checkpoint, in well under a second and with no
network. Weights come from a seeded RNG: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from engine.registry import (
    DEFAULT_IMAGE_ENCODER,
    TINY_BASE_DIR,
    TINY_CONTROLNET_DIR,
    TINY_FACEID_DIR,
    TINY_FACEID_WEIGHTS,
    TINY_IDENTITY_DIR,
    TINY_IDENTITY_WEIGHTS,
)
from engine.runtime import disable_progress_bars

HIDDEN = 32
MAX_TOKENS = 77
# Whole-word tokens so common prompt words are not split into single bytes; any other text
# still tokenizes, byte by byte.
_WORDS = ("a", "portrait", "photo", "of", "person", "woman", "man", "smiling", "face", "studio")
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# Zero-initialised in ControlNetModel.from_unet: left at zero, a control image has no effect.
_CONTROLNET_ZERO_LAYERS = (
    "controlnet_down_blocks",
    "controlnet_mid_block",
    "controlnet_cond_embedding.conv_out",
)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2/CLIP's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer built offline: all 256 byte symbols plus merges for `_WORDS`."""
    symbols = _byte_symbols()
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1], *parts[2:]]
            vocab_list.append(parts[0])
    vocab_list += [_BOS, _EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    # transformers annotates `merges` as list[str]; it hands them to tokenizers' BPE, which
    # takes (left, right) pairs.
    pairs = cast(list[str], list(dict.fromkeys(merges)))
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=MAX_TOKENS)


def _tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN,
    )


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )


def _tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def _tiny_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    # The tiny VAE downsamples 2x, so the conditioning embedding must too (2 stages, 1 stride).
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    for name, module in controlnet.named_modules():
        if name in _CONTROLNET_ZERO_LAYERS:
            for param in module.parameters():
                torch.nn.init.normal_(param, std=0.05)
    return controlnet


# The tiny CLIP vision encoder of the image_encoder identity adapter.
IMAGE_SIZE = 32
IMAGE_EMBED_DIM = 32
# Tokens an IP-Adapter adds to the cross-attention context (diffusers assumes 4 for these
# formats), and dlib's face embedding size (the FaceID adapter's input).
IDENTITY_TOKENS = 4
FACE_EMBED_DIM = 128
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _tiny_image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=IMAGE_EMBED_DIM,
    )
    return CLIPVisionModelWithProjection(config)


def _preprocessor_config(size: int) -> dict[str, object]:
    """CLIP's image preprocessing at ``size`` px (what ``CLIPImageProcessor`` saves)."""
    return {
        "crop_size": {"height": size, "width": size},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": _CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": _CLIP_STD,
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": size},
    }


def _random(*shape: int, std: float) -> torch.Tensor:
    return torch.randn(*shape) * std


def _ip_attention_weights(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Random ``to_k_ip`` / ``to_v_ip`` of every cross-attention layer, keyed as the original
    IP-Adapter files are (``1.to_k_ip.weight``, ``3.``... in ``attn_processors`` order, which
    is how diffusers' ``load_ip_adapter`` reads them back)."""
    weights: dict[str, torch.Tensor] = {}
    key_id = 1
    cross_dim = int(unet.config.cross_attention_dim)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        attention = unet.get_submodule(name.removesuffix(".processor"))
        hidden = int(attention.to_k.out_features)
        # Trained IP-Adapters start these from to_k/to_v (not zero); random keeps an effect.
        weights[f"ip_adapter.{key_id}.to_k_ip.weight"] = _random(hidden, cross_dim, std=0.2)
        weights[f"ip_adapter.{key_id}.to_v_ip.weight"] = _random(hidden, cross_dim, std=0.2)
        key_id += 2
    return weights


def _identity_adapter(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """A standard IP-Adapter (``ImageProjection``: CLIP image embedding -> 4 tokens)."""
    cross_dim = int(unet.config.cross_attention_dim)
    return {
        "image_proj.proj.weight": _random(
            cross_dim * IDENTITY_TOKENS, IMAGE_EMBED_DIM, std=IMAGE_EMBED_DIM**-0.5
        ),
        "image_proj.proj.bias": _random(cross_dim * IDENTITY_TOKENS, std=0.1),
        "image_proj.norm.weight": 1 + _random(cross_dim, std=0.1),
        "image_proj.norm.bias": _random(cross_dim, std=0.1),
        **_ip_attention_weights(unet),
    }


def _faceid_adapter(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """An IP-Adapter-FaceID (``IPAdapterFaceIDImageProjection``: a 128-d face embedding ->
    MLP -> 4 tokens). dlib embeddings are small (unit norm over 128 values); the projection's
    LayerNorm brings the tokens to unit scale."""
    cross_dim = int(unet.config.cross_attention_dim)
    inner = FACE_EMBED_DIM  # mult 1
    return {
        "image_proj.proj.0.weight": _random(inner, FACE_EMBED_DIM, std=1.0),
        "image_proj.proj.0.bias": _random(inner, std=0.1),
        "image_proj.proj.2.weight": _random(cross_dim * IDENTITY_TOKENS, inner, std=inner**-0.5),
        "image_proj.proj.2.bias": _random(cross_dim * IDENTITY_TOKENS, std=0.1),
        "image_proj.norm.weight": 1 + _random(cross_dim, std=0.1),
        "image_proj.norm.bias": _random(cross_dim, std=0.1),
        **_ip_attention_weights(unet),
    }


def _save_adapter(weights: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in weights.items()}, str(path))


def build_tiny(directory: Path, *, seed: int = 0) -> Path:
    """Build and save the tiny models under ``directory``; return it.

    Writes ``sd-tiny/`` (a StableDiffusionPipeline), ``controlnet-tiny/``, the identity
    adapters ``identity-tiny/`` (IP-Adapter weights + a tiny CLIP ``image_encoder/``) and
    ``faceid-tiny/`` (IP-Adapter-FaceID weights for 128-d dlib embeddings), all random, and
    ``profile.json``. The caller's global torch RNG state is left untouched.
    """
    directory = Path(directory)
    disable_progress_bars()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        unet = _tiny_unet()
        pipeline = StableDiffusionPipeline(
            vae=_tiny_vae(),
            text_encoder=_tiny_text_encoder(tokenizer),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=DPMSolverMultistepScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
            ),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        controlnet = _tiny_controlnet(unet)
        identity = _identity_adapter(unet)
        image_encoder = _tiny_image_encoder()
        faceid = _faceid_adapter(unet)
    pipeline.save_pretrained(directory / TINY_BASE_DIR)
    controlnet.save_pretrained(directory / TINY_CONTROLNET_DIR)
    _save_adapter(identity, directory / TINY_IDENTITY_DIR / TINY_IDENTITY_WEIGHTS)
    encoder_dir = directory / TINY_IDENTITY_DIR / DEFAULT_IMAGE_ENCODER
    image_encoder.save_pretrained(encoder_dir)
    (encoder_dir / "preprocessor_config.json").write_text(
        json.dumps(_preprocessor_config(IMAGE_SIZE), indent=2) + "\n", encoding="utf-8"
    )
    _save_adapter(faceid, directory / TINY_FACEID_DIR / TINY_FACEID_WEIGHTS)
    manifest = {
        "profile": "tiny",
        "seed": seed,
        "models": {
            "tiny": {"kind": "base", "family": "sd15", "path": TINY_BASE_DIR},
            "tiny-pose": {
                "kind": "controlnet",
                "family": "sd15",
                "path": TINY_CONTROLNET_DIR,
                "controlnet_kind": "pose",
            },
            "tiny-identity": {
                "kind": "identity_adapter",
                "family": "sd15",
                "path": TINY_IDENTITY_DIR,
                "identity_kind": "image_encoder",
                "weight_name": TINY_IDENTITY_WEIGHTS,
                "image_encoder": DEFAULT_IMAGE_ENCODER,
            },
            "tiny-faceid": {
                "kind": "identity_adapter",
                "family": "sd15",
                "path": TINY_FACEID_DIR,
                "identity_kind": "face_embedding",
                "weight_name": TINY_FACEID_WEIGHTS,
                "face_encoder": "dlib",
            },
        },
    }
    (directory / "profile.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory
