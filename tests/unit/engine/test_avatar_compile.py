"""Avatar swaps and weight changes never recompile a compiled UNet (CPU, dynamo tracing only).

`engine.adapters.AvatarSlot` keeps every active adapter's LoRA scale a 0-d tensor updated in
place; ``set_adapters`` alone would store a Python float, on whose value a compiled graph
guards (one recompile per new weight).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

from engine.adapters import SLOT_ADAPTER, avatar_slot
from engine.loras import AvatarLora, random_lora_state_dict
from engine.registry import ModelRegistry
from engine.runtime import load_pipeline
from engine.serving import ServingProfile, build_engine
from engine.spec import AvatarRef, RenderSpec

WEIGHTS = (0.6, 0.85, 1.0, 1.15, 1.3)


def _slot_scales(pipeline) -> list[object]:
    from peft.tuners.lora import LoraLayer

    return [
        m.scaling[SLOT_ADAPTER]
        for m in pipeline.unet.modules()
        if isinstance(m, LoraLayer) and SLOT_ADAPTER in m.scaling
    ]


def test_slot_scales_stay_the_same_tensors_across_weights(tiny_registry: ModelRegistry):
    pipeline = load_pipeline(
        tiny_registry.get("tiny"), device=torch.device("cpu"), dtype=torch.float32
    )
    slot = avatar_slot(pipeline)
    unet = pipeline.unet
    first = None
    for i, weight in enumerate(WEIGHTS):
        slot.activate(f"a{i}", random_lora_state_dict(unet, seed=i), weight=weight)
        scales = _slot_scales(pipeline)
        assert scales and all(isinstance(s, torch.Tensor) and s.ndim == 0 for s in scales)
        assert all(float(s) == pytest.approx(weight) for s in scales)  # alpha / r == 1
        if first is None:
            first = scales
        assert all(a is b for a, b in zip(scales, first, strict=True))  # updated in place
    assert slot.hotswaps == len(WEIGHTS) and slot.full_reloads == 0


def test_five_avatars_at_five_weights_cause_no_recompile(tiny_registry: ModelRegistry):
    torch._dynamo.reset()
    compiles = CompileCounter()
    profile = ServingProfile(compile=True, compile_backend=compiles, warmup_batch_sizes=(1,))
    # Avatars only (identity batches: the last test; off keeps this test's warm-up short).
    engine = build_engine(tiny_registry, device="cpu", profile=profile, identity_adapters="off")
    pipeline = engine.pipeline()
    warm = compiles.frame_count
    assert warm >= 2  # the warm-up compiled LoRA off and LoRA on
    frames = counters["frames"]["total"]
    unet = pipeline.unet
    avatars = {
        f"user{i}": AvatarLora(
            f"user{i}", random_lora_state_dict(unet, seed=20 + i, scale=0.3), "sks", "r1"
        )
        for i in range(len(WEIGHTS))
    }
    images = []
    for (avatar_id, _), weight in zip(avatars.items(), WEIGHTS, strict=True):
        spec = RenderSpec(
            prompt="{subject}, portrait",
            seed=4,
            steps=2,
            width=64,
            height=64,
            avatar=AvatarRef(avatar_id, weight=weight),
        )
        images.append(engine.render(spec, avatar_source=avatars.__getitem__)[0].png_bytes)
    base = RenderSpec(prompt="portrait", seed=4, steps=2, width=64, height=64)
    engine.render(base)  # back to LoRA off: its graph is cached too
    recompiles = compiles.frame_count - warm
    assert recompiles == 0, f"{recompiles} recompiles after warm-up"
    assert counters["frames"]["total"] == frames
    assert len(set(images)) == len(images)  # every avatar/weight really changed the image
    slot = engine.loras.slot(pipeline)
    assert slot.hotswaps >= len(WEIGHTS) and slot.full_reloads == 0
    # The counter does see a recompile: a new batch size is a new shape.
    engine.render(RenderSpec(prompt="portrait", seed=4, num_images=3, steps=2, width=64, height=64))
    assert compiles.frame_count > warm


def test_mixed_avatar_batches_cause_no_recompile(tiny_registry: ModelRegistry):
    """Batches of two users' avatars through the resident pool: new avatars, new pairs and new
    weights are data (slot indices and weights as tensors), never a new graph."""
    torch._dynamo.reset()
    compiles = CompileCounter()
    profile = ServingProfile(
        compile=True, compile_backend=compiles, warmup_batch_sizes=(2,), postprocess_workers=0
    )
    engine = build_engine(tiny_registry, device="cpu", profile=profile, identity_adapters="off")
    warm = compiles.frame_count
    pool = engine.loras.pool(engine.pipeline(), create=False)
    assert pool is not None and pool.resident == []  # the warm-up avatar was evicted
    warm_loads = pool.loads
    unet = engine.pipeline().unet
    avatars = {
        f"user{i}": AvatarLora(
            f"user{i}", random_lora_state_dict(unet, seed=40 + i, scale=0.3), "sks", "r1"
        )
        for i in range(len(WEIGHTS))
    }
    ids = list(avatars)
    images = []
    for i, weight in enumerate(WEIGHTS):
        specs = [
            RenderSpec(
                prompt="{subject}, portrait",
                seed=4,
                steps=2,
                width=64,
                height=64,
                avatar=AvatarRef(avatar_id, weight=w),
            )
            for avatar_id, w in ((ids[i], weight), (ids[(i + 2) % len(ids)], 1.5 - weight))
        ]
        results = engine.render_batch(specs, avatar_source=avatars.__getitem__)
        assert engine.last_batch_path == "pool"
        images += [result[0].png_bytes for result in results]
    recompiles = compiles.frame_count - warm
    assert recompiles == 0, f"{recompiles} recompiles after warm-up"
    assert len(set(images)) == len(images)
    assert pool.loads - warm_loads == len(WEIGHTS)  # each avatar copied into a slot once


def test_batches_of_different_identities_cause_no_recompile(tiny_registry: ModelRegistry):
    """Identity embeddings are inputs of a fixed shape per batch size: new identities in a
    batch are data, never a new graph (the warm-up compiled identity off and on)."""
    import numpy as np

    from engine.identity import IdentityEmbedding

    torch._dynamo.reset()
    compiles = CompileCounter()
    profile = ServingProfile(
        compile=True,
        compile_backend=compiles,
        warmup_batch_sizes=(2,),
        avatars=False,
        postprocess_workers=0,
    )
    engine = build_engine(tiny_registry, device="cpu", profile=profile)
    assert engine.serving["models"]["tiny"]["identity_adapter"] == "tiny-identity"
    warm = compiles.frame_count
    assert warm >= 2  # identity off (scale 0) and on are two graphs
    rng = np.random.default_rng(0)
    identities = {
        f"u{i}": IdentityEmbedding(
            f"u{i}", "tiny-identity", "image_encoder", rng.normal(size=32).astype(np.float32)
        )
        for i in range(6)
    }
    images = []
    for i in range(3):
        specs = [
            RenderSpec(
                prompt="portrait", seed=4, steps=2, width=64, height=64, identity={"id": f"u{j}"}
            )
            for j in (2 * i, 2 * i + 1)
        ]
        results = engine.render_batch(specs, identity_source=identities.__getitem__)
        images += [result[0].png_bytes for result in results]
    plain = RenderSpec(prompt="portrait", seed=4, steps=2, width=64, height=64, num_images=2)
    engine.render(plain)  # back to no identity: its graph is cached too
    recompiles = compiles.frame_count - warm
    assert recompiles == 0, f"{recompiles} recompiles after warm-up"
    assert len(set(images)) == len(images)  # every identity really changed the image
