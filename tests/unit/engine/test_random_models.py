"""The full-size random profiles have the real architectures (counted on the meta device:
no memory, about a second). Building and running them is measured by the benchmark; the
identity adapter's files are checked end to end on a shrunken sd15-random (same code path)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine import random_models
from engine.random_models import IMAGE_ENCODERS, identity_adapter_shapes, parameter_counts
from engine.registry import ModelRegistry, random_profile_config


@pytest.mark.parametrize("profile", ["sd15-random", "sdxl-random"])
def test_parameter_counts_match_the_published_models(profile: str):
    expected = random_profile_config(profile)["expected_params"]
    assert parameter_counts(profile) == expected


def test_published_unet_sizes():
    """SD1.5: 859.5M UNet parameters; SDXL base: 2.567B (both as published)."""
    assert random_profile_config("sd15-random")["expected_params"]["unet"] == 859_520_964
    assert random_profile_config("sdxl-random")["expected_params"]["unet"] == 2_567_463_684


def test_identity_adapter_has_ip_adapter_sd15s_sizes():
    """h94/IP-Adapter: ip-adapter_sd15 has 22.3M parameters (44.6 MB in float16), its
    models/image_encoder (OpenCLIP ViT-H/14) 632.1M."""
    counts = random_models.identity_parameter_counts("sd15-random")
    assert counts == {"ip_adapter": 22_319_616, "image_encoder": 632_076_800}
    vit_h = IMAGE_ENCODERS["vit-h-14"]
    assert (vit_h["hidden_size"], vit_h["num_hidden_layers"], vit_h["num_attention_heads"]) == (
        1280,
        32,
        16,
    )
    assert (vit_h["intermediate_size"], vit_h["patch_size"], vit_h["image_size"]) == (5120, 14, 224)
    assert vit_h["projection_dim"] == IMAGE_ENCODERS["small"]["projection_dim"] == 1024
    shapes = identity_adapter_shapes("sd15-random")
    assert shapes["image_proj.proj.weight"] == (4 * 768, 1024)  # 4 tokens, cross_attention_dim
    assert shapes == identity_adapter_shapes("sd15-random", encoder="small")
    attention = sorted(key for key in shapes if key.startswith("ip_adapter."))
    assert len(attention) == 32  # to_k_ip and to_v_ip of the 16 cross-attention layers
    # attn_processors order, as in the published file: down 1-11, up 13-29, mid 31
    assert shapes["ip_adapter.1.to_k_ip.weight"] == (320, 768)
    assert shapes["ip_adapter.29.to_v_ip.weight"] == (320, 768)
    assert shapes["ip_adapter.31.to_v_ip.weight"] == (1280, 768)


def test_random_profiles_register_their_identity_adapter(tmp_path: Path):
    registry = ModelRegistry.for_profile("sd15-random", models_dir=tmp_path)
    adapter = registry.identity_adapter("sd15-random")
    assert adapter is not None and adapter.key == "sd15-random-identity"
    assert adapter.source == tmp_path / "sd15-random-identity"
    assert (adapter.identity_kind, adapter.weight_name) == (
        "image_encoder",
        "ip-adapter_sd15.safetensors",
    )
    assert not registry.status_of(adapter.key).ready
    assert ModelRegistry.for_profile("sdxl-random", models_dir=tmp_path).identity_adapter() is None


def _mini_sd15(profile: str) -> dict[str, Any]:
    """sd15-random's config with toy sizes (its identity adapter follows the UNet's)."""
    config = random_profile_config(profile)
    config["unet"].update(
        block_out_channels=[32, 64],
        layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=32,
        attention_head_dim=4,
        sample_size=32,
    )
    config["vae"].update(
        block_out_channels=[32, 32],
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        sample_size=64,
    )
    config["text_encoder"].update(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1
    )
    config["text_encoder"]["projection_dim"] = 32
    return config


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)


def test_build_random_writes_an_identity_adapter_the_engine_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from safetensors.torch import load_file

    from engine.__main__ import main
    from engine.identity import IdentityEmbedding
    from engine.runtime import Engine
    from engine.spec import IdentityRef, RenderSpec

    monkeypatch.setattr(random_models, "random_profile_config", _mini_sd15)
    argv = ["build-random", "--profile", "sd15-random", "--identity-encoder", "small"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    assert main([*argv, "--only", "identity", str(tmp_path / "b")]) == 0
    folder = tmp_path / "a" / "sd15-random-identity"
    weights = load_file(folder / "ip-adapter_sd15.safetensors")
    again = load_file(tmp_path / "b" / "sd15-random-identity" / "ip-adapter_sd15.safetensors")
    assert weights.keys() == again.keys() and all(weights[k].equal(again[k]) for k in weights)
    assert weights["image_proj.proj.weight"].shape == (4 * 32, 1024)
    assert (folder / "image_encoder" / "preprocessor_config.json").is_file()
    assert not (tmp_path / "b" / "sd15-random").exists()  # --only identity: no pipeline

    registry = ModelRegistry.for_profile("sd15-random", models_dir=tmp_path / "a")
    assert registry.status_of("sd15-random").ready and registry.status_of(folder.name).ready
    engine = Engine(registry, device="cpu", dtype="float32")
    engine.pipeline()  # loads the base and, with it, the identity adapter
    adapter = engine.identity_adapter()
    assert adapter is not None and (adapter.key, adapter.projection) == (
        folder.name,
        "image_embeds",
    )
    rng = np.random.default_rng(0)
    crops = [Image.fromarray((rng.random((240, 240, 3)) * 255).astype(np.uint8)) for _ in range(2)]
    key, kind, vector = engine.build_identity(crops)
    assert vector.shape == (1024,) and np.isfinite(vector).all()
    identities = {
        "u0": IdentityEmbedding("u0", key, kind, vector),
        "u1": IdentityEmbedding("u1", key, kind, -vector),
    }

    def spec(identity: str | None) -> RenderSpec:
        ref = IdentityRef(identity) if identity else None
        return RenderSpec(prompt="a portrait", seed=3, steps=2, width=64, height=64, identity=ref)

    plain = _png(engine.render(spec(None))[0].png_bytes)
    [[first], [second]] = engine.render_batch(
        [spec("u0"), spec("u1")], identity_source=identities.__getitem__
    )
    assert np.abs(_png(first.png_bytes) - plain).max() > 0  # the identity changes the image
    assert np.abs(_png(first.png_bytes) - _png(second.png_bytes)).max() > 0  # per sample


def test_build_random_refuses_an_identity_for_sdxl(tmp_path: Path, capsys):
    from engine.__main__ import main

    assert main(["build-random", "--profile", "sdxl-random", "--only", "identity", str(tmp_path)])
    assert "no random identity adapter" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
