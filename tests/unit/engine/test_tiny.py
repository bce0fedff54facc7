from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionPipeline

from engine.tiny import build_tiny


def _weight_files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*.safetensors"))
    }


def test_build_round_trips_through_from_pretrained(tiny_dir: Path):
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_dir / "sd-tiny", local_files_only=True)
    assert pipeline.safety_checker is None
    assert pipeline.tokenizer.model_max_length == 77
    assert tuple(pipeline.unet.config.block_out_channels) == (32, 64)
    assert pipeline.text_encoder.config.hidden_size == 32
    ids = pipeline.tokenizer("a portrait photo", padding="max_length").input_ids
    assert len(ids) == 77


def test_controlnet_output_layers_are_not_zero(tiny_dir: Path):
    controlnet = ControlNetModel.from_pretrained(
        tiny_dir / "controlnet-tiny", local_files_only=True
    )
    layers = {
        "controlnet_down_blocks": controlnet.controlnet_down_blocks,
        "controlnet_mid_block": controlnet.controlnet_mid_block,
        "controlnet_cond_embedding.conv_out": controlnet.controlnet_cond_embedding.conv_out,
    }
    for name, module in layers.items():
        weights = [p for p in module.parameters() if p.dim() > 1]
        assert weights and all(p.abs().sum() > 0 for p in weights), name


def test_profile_manifest(tiny_dir: Path):
    manifest = json.loads((tiny_dir / "profile.json").read_text(encoding="utf-8"))
    assert manifest["profile"] == "tiny"
    assert manifest["models"]["tiny"]["path"] == "sd-tiny"
    assert manifest["models"]["tiny-pose"]["controlnet_kind"] == "pose"


def test_build_is_deterministic_per_seed(tiny_dir: Path, tmp_path: Path):
    rng_before = torch.random.get_rng_state()
    same = _weight_files(build_tiny(tmp_path / "same", seed=0))
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's RNG untouched
    assert same == _weight_files(tiny_dir)
    other = _weight_files(build_tiny(tmp_path / "other", seed=1))
    assert other.keys() == same.keys()
    assert all(other[name] != same[name] for name in same)


@pytest.mark.parametrize("word", ["portrait", "photo"])
def test_tokenizer_keeps_prompt_words_whole(tiny_dir: Path, word: str):
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_dir / "sd-tiny", local_files_only=True)
    assert pipeline.tokenizer.tokenize(word) == [word + "</w>"]
