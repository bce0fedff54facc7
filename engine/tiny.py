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
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from engine.registry import TINY_BASE_DIR, TINY_CONTROLNET_DIR
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


def build_tiny(directory: Path, *, seed: int = 0) -> Path:
    """Build and save the tiny pipeline and ControlNet under ``directory``; return it.

    Writes ``sd-tiny/`` (a StableDiffusionPipeline), ``controlnet-tiny/`` and ``profile.json``.
    The caller's global torch RNG state is left untouched.
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
    pipeline.save_pretrained(directory / TINY_BASE_DIR)
    controlnet.save_pretrained(directory / TINY_CONTROLNET_DIR)
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
        },
    }
    (directory / "profile.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory
