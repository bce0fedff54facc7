"""`engine.serving`: the serving profile and the one `build_engine` the worker and bench use."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.adapters import AdapterError
from engine.errors import ConfigError, SpecError
from engine.identity import IdentityEmbedding
from engine.loras import AvatarLora, SlotLoraManager, random_lora_state_dict
from engine.pipelines import is_compiled
from engine.registry import ModelRegistry
from engine.runtime import Engine
from engine.serving import ServingProfile, build_engine
from engine.spec import AvatarRef, RenderSpec
from engine.training import TrainingConfig, TrainingFailed, train_avatar_lora

SPEC = RenderSpec(prompt="a portrait photo", seed=3, steps=2, width=64, height=64, guidance=5.0)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _attention(model: Any) -> set[str]:
    return {type(p).__name__ for p in model.attn_processors.values()}


# ------------------------------------------------------------------------------ the profile


def test_defaults_per_device():
    profile = ServingProfile()
    assert profile.dtype_for("cuda") == profile.dtype_for(torch.device("cuda:1")) == "bfloat16"
    assert profile.dtype_for("cpu") == profile.dtype_for("mps") == "float32"
    assert profile.channels_last_for("cuda") is True
    assert profile.channels_last_for("cpu") is False
    assert profile.fuse_qkv_for() == "off" and profile.compile is False and profile.avatars
    assert ServingProfile(dtype="registry").dtype_for("cuda") is None
    assert ServingProfile(dtype="float16").dtype_for("cpu") == "float16"
    assert ServingProfile(channels_last=True).channels_last_for("cpu") is True
    assert ServingProfile(fuse_qkv=True).fuse_qkv_for() == "vae"  # LoRA-safe with avatars
    assert ServingProfile(fuse_qkv=True, avatars=False).fuse_qkv_for() == "all"
    resolved = ServingProfile(compile=True).resolved("cuda")
    assert resolved["dtype"] == "bfloat16" and resolved["channels_last"] is True
    assert resolved["device"] == "cuda" and resolved["warmup_batch_sizes"] == [1]


def test_from_env_dict_reads_prefixed_strings_and_ignores_other_keys():
    env = {
        "PATH": "/usr/bin",
        "ENGINE_DEVICE": "cuda",
        "ENGINE_SERVING_DTYPE": "float16",
        "ENGINE_SERVING_CHANNELS_LAST": "auto",
        "ENGINE_SERVING_FUSE_QKV": "yes",
        "ENGINE_SERVING_COMPILE": "1",
        "ENGINE_SERVING_COMPILE_MODE": "max-autotune-no-cudagraphs",
        "ENGINE_SERVING_WARMUP_BATCH_SIZES": "1, 4,8",
        "ENGINE_SERVING_WARMUP_SIZE": "512",
        "ENGINE_SERVING_MAX_BATCH": "",
        "ENGINE_SERVING_AVATARS": "true",
        "ENGINE_SERVING_AVATAR_MAX_RANK": "32",
        "ENGINE_SERVING_WARMUP_GUIDANCE": "7.5",
    }
    profile = ServingProfile.from_env_dict(env)
    assert profile == ServingProfile(
        dtype="float16",
        channels_last=None,
        fuse_qkv=True,
        compile=True,
        compile_mode="max-autotune-no-cudagraphs",
        warmup_batch_sizes=(1, 4, 8),
        warmup_size=512,
        max_batch=None,
        avatars=True,
        avatar_max_rank=32,
        warmup_guidance=7.5,
    )
    assert ServingProfile.from_env_dict({}) == ServingProfile()


def test_from_env_dict_takes_typed_settings_values_and_plain_names():
    settings = {"compile": True, "warmup_batch_sizes": [2, 4], "max_batch": 8, "Dtype": "auto"}
    profile = ServingProfile.from_env_dict(settings, prefix="")
    assert profile.compile and profile.warmup_batch_sizes == (2, 4) and profile.max_batch == 8


@pytest.mark.parametrize(
    "env",
    [
        {"ENGINE_SERVING_COMPIL": "1"},  # a typo is not silently ignored
        {"ENGINE_SERVING_COMPILE": "maybe"},
        {"ENGINE_SERVING_DTYPE": "int8"},
        {"ENGINE_SERVING_WARMUP_BATCH_SIZES": "1,x"},
        {"ENGINE_SERVING_WARMUP_BATCH_SIZES": "0"},
        {"ENGINE_SERVING_WARMUP_SIZE": "500"},
        {"ENGINE_SERVING_COMPILE_MODE": "fastest"},
        {"ENGINE_SERVING_MAX_BATCH": "-1"},
    ],
)
def test_bad_settings_raise_config_errors(env: dict[str, str]):
    with pytest.raises(ConfigError):
        ServingProfile.from_env_dict(env)


def test_profile_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from engine.serving import ServingProfile; "
        "ServingProfile.from_env_dict({'ENGINE_SERVING_COMPILE': '1'}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ build_engine


@pytest.fixture(scope="module")
def served(tiny_registry: ModelRegistry) -> Engine:
    profile = ServingProfile(channels_last=True, fuse_qkv=True, warmup_batch_sizes=(1, 2))
    return build_engine(tiny_registry, device="cpu", profile=profile)


def test_build_engine_applies_the_profile(served: Engine):
    pipeline = served.pipeline()
    unet, vae = pipeline.unet, pipeline.vae
    convs = [m.weight for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # QKV fusion: the VAE only, since avatar LoRAs live in the UNet's to_q/to_k/to_v.
    assert _attention(vae) == {"FusedAttnProcessor2_0"}
    assert "FusedAttnProcessor2_0" not in _attention(unet)
    # The avatar slot exists before any request (and before a compile would run).
    assert isinstance(served.loras, SlotLoraManager) and served.loras.slot(pipeline) is not None
    assert served.device.type == "cpu" and next(unet.parameters()).dtype == torch.float32
    report = served.serving
    assert report["profile"]["fuse_qkv"] == "vae" and report["models"]["tiny"]["channels_last"]
    # The tiny profile's identity adapter is loaded with the pipeline: each render is warmed
    # up without and with an identity (the adapter's scale is a constant of the graph).
    assert report["models"]["tiny"]["identity_adapter"] == "tiny-identity"
    assert [(r["batch_size"], r["avatar"], r["identity"]) for r in report["warmup"]] == [
        (1, False, False),
        (1, False, True),
        (1, True, False),
        (1, True, True),
        (2, False, False),
        (2, False, True),
        (2, True, False),
        (2, True, True),
        (2, "pool", False),  # a batch of avatars through the resident pool
        (2, "pool", True),
    ]
    assert served.identity_adapter().scale == 0.0


def test_warmed_up_engine_renders_like_a_plain_engine(served: Engine, tiny_engine: Engine):
    """The warm-up's zero avatar is gone: renders equal the base model (memory format and
    fused VAE attention may round differently, by a pixel level at most)."""
    served_png = served.render(SPEC)[0].png_bytes
    plain_png = tiny_engine.render(SPEC)[0].png_bytes
    assert int(np.abs(_pixels(served_png) - _pixels(plain_png)).max()) <= 2
    slot = served.loras.slot(served.pipeline())
    assert slot.current_avatar is None


def test_avatar_renders_work_on_a_served_engine(served: Engine):
    unet = served.pipeline().unet
    avatar = AvatarLora("a", random_lora_state_dict(unet, seed=5, scale=0.3), "sks", "1")
    spec = RenderSpec(
        prompt="{subject}", seed=3, steps=2, width=64, height=64, avatar=AvatarRef("a")
    )
    with_avatar = served.render(spec, avatar_source=lambda _id: avatar)[0].png_bytes
    assert with_avatar != served.render(SPEC)[0].png_bytes


def test_compile_flag_reaches_torch_compile(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
):
    """Mocked at the torch.compile boundary (`Module.compile`); a real compile runs in
    test_avatar_compile.py."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_compile(self: torch.nn.Module, **kwargs: Any) -> None:
        calls.append((type(self).__name__, kwargs))
        self._compiled_call_impl = self._call_impl  # behaves as compiled, runs eagerly

    monkeypatch.setattr(torch.nn.Module, "compile", fake_compile)
    profile = ServingProfile(
        compile=True, compile_mode="max-autotune-no-cudagraphs", warmup_batch_sizes=()
    )
    engine = build_engine(tiny_registry, device="cpu", profile=profile)
    assert calls == [
        (
            "UNet2DConditionModel",
            {"mode": "max-autotune-no-cudagraphs", "backend": "inductor"},
        )
    ]
    assert is_compiled(engine.pipeline().unet)
    assert engine.serving["models"]["tiny"]["compiled"] is True
    assert "warmup" in engine.serving and engine.serving["warmup"] == []
    off = build_engine(tiny_registry, device="cpu", profile=ServingProfile(warmup_batch_sizes=()))
    assert not is_compiled(off.pipeline().unet) and len(calls) == 1


def test_fused_unet_serves_the_base_model_and_refuses_loras(
    tiny_registry: ModelRegistry, synthetic_photos
):
    profile = ServingProfile(fuse_qkv=True, avatars=False, warmup_batch_sizes=(1,))
    engine = build_engine(tiny_registry, device="cpu", profile=profile)
    pipeline = engine.pipeline()
    assert _attention(pipeline.unet) == {"FusedAttnProcessor2_0"}
    assert engine.render(SPEC)[0].png_bytes  # the base model renders
    # No identity adapter on a fused UNet (fusion would replace its attention layers).
    assert engine.identity_adapter() is None
    identity = RenderSpec(prompt="a", seed=3, steps=2, identity={"id": "u"})
    vector = IdentityEmbedding("u", "tiny-identity", "image_encoder", np.zeros(32, np.float32))
    with pytest.raises(SpecError, match="without identity adapters"):
        engine.render(identity, identity_source=lambda _id: vector)
    unet = pipeline.unet
    avatar = AvatarLora("a", random_lora_state_dict(unet, seed=5), "sks", "1")
    spec = RenderSpec(
        prompt="{subject}", seed=3, steps=2, width=64, height=64, avatar=AvatarRef("a")
    )
    with pytest.raises(AdapterError, match="fused"):
        engine.render(spec, avatar_source=lambda _id: avatar)
    with pytest.raises(TrainingFailed, match="fused"):
        train_avatar_lora(
            pipeline=pipeline,
            photos=synthetic_photos,
            config=TrainingConfig(resolution=64, steps=1),
        )
