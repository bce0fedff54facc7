"""Device discipline without a GPU: every tensor the engine makes lives on the model's device.

The models run on the ``meta`` device under `devicecheck.strict_devices` (see that module):
a tensor the engine builds on the CPU and mixes with the model's tensors fails here as it
would on CUDA. ``ENGINE_TEST_DEVICES=meta,cuda`` runs the same tests on a GPU (bench/gpu.sh).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from PIL import Image

from engine.errors import RenderCanceled
from engine.loras import AvatarLora, random_lora_state_dict
from engine.registry import ModelRegistry
from engine.runtime import Engine, load_pipeline
from engine.spec import AvatarRef, ControlSpec, RenderSpec
from engine.training import TrainingConfig, device_generator, train_avatar_lora

from .devicecheck import DeviceMixError, is_data_dependent_stop, strict_devices, test_devices

DEVICES = test_devices()
CONFIG = TrainingConfig(resolution=64, steps=2, batch_size=2, learning_rate=1e-3, seed=0)


def _skip_unavailable(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    _skip_unavailable(request.param)
    return request.param


def _pipeline(registry: ModelRegistry, device: str) -> Any:
    return load_pipeline(
        registry.get(registry.default_base), device=torch.device(device), dtype=torch.float32
    )


def _record_forward(module: torch.nn.Module, seen: list[str]) -> Any:
    def hook(_module: Any, _args: Any, output: Any) -> None:
        sample = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        seen.append(str(sample.device))

    return module.register_forward_hook(hook)


def _avatars(pipeline: Any, count: int) -> dict[str, AvatarLora]:
    return {
        f"u{i}": AvatarLora(
            f"u{i}", random_lora_state_dict(pipeline.unet, seed=i, scale=0.2), f"sks{i}", "r1"
        )
        for i in range(count)
    }


# ------------------------------------------------------------------------------ the harness


def test_the_harness_catches_mixes_the_meta_device_lets_through():
    x = torch.zeros(3, 4, device="meta")
    on_cpu = torch.zeros(2, 4)
    # The meta device alone accepts a CPU weight in a matmul and a CPU index ...
    assert torch.nn.functional.linear(x, on_cpu).device.type == "meta"
    assert x[torch.tensor([0, 1])].device.type == "meta"
    # ... the dispatch check does not.
    with pytest.raises(DeviceMixError), strict_devices("meta"):
        torch.nn.functional.linear(x, on_cpu)
    with pytest.raises(DeviceMixError), strict_devices("meta"):
        _ = x[torch.tensor([0, 1])]
    # Elementwise mixes fail on the meta device itself too; never taken for a data stop.
    with pytest.raises(RuntimeError) as info:
        _ = x + torch.zeros(3, 4)
    assert not is_data_dependent_stop(info.value)
    with pytest.raises(DeviceMixError), strict_devices("meta"):
        _ = x + torch.zeros(3, 4)
    # Copies to the device and CPU scalars are fine; a data-dependent op ends the run quietly.
    with strict_devices("meta") as run:
        y = torch.zeros(3, 4).to("meta") * torch.tensor(2.0)
        float(y.sum())
    assert run.stopped is not None and "meta" in str(run.stopped)


def test_device_generator_is_the_plain_cpu_generator_on_cpu():
    first = torch.randn(5, generator=device_generator(torch.device("cpu"), 3))
    assert torch.equal(first, torch.randn(5, generator=torch.Generator().manual_seed(3)))
    assert device_generator(torch.device("meta"), 3).device.type == "cpu"  # meta has no RNG


# ------------------------------------------------------------------------------ training


@pytest.mark.parametrize("train_text_encoder", [False, True], ids=["unet", "unet+text"])
def test_training_step_keeps_every_tensor_on_the_model_device(
    device: str,
    tiny_registry: ModelRegistry,
    synthetic_photos,
    train_text_encoder: bool,
    monkeypatch: pytest.MonkeyPatch,
):
    import engine.training as training

    if device == "meta":  # no loss value to read back: run every step to the export
        monkeypatch.setattr(training, "_check_loss", lambda *_args: 1.0, raising=False)
    pipeline = _pipeline(tiny_registry, device)
    config = dataclasses.replace(CONFIG, train_text_encoder=train_text_encoder)
    with strict_devices(device) as run:
        trained = train_avatar_lora(pipeline=pipeline, photos=synthetic_photos, config=config)
    # Encoded latents, noise, timesteps, the UNet forward, the loss, backward, gradient
    # clipping and the optimizer steps all ran on the device (on meta the run then stops at
    # the export, which copies the trained weights to the CPU).
    assert "aten.mse_loss.default" in run.check.ops
    assert any(op.startswith("aten.mse_loss_backward") for op in run.check.ops)
    if device == "meta":
        assert "Cannot copy out of meta tensor" in str(run.stopped)
    assert device.split(":")[0] in {d.split(":")[0] for d in run.check.devices}
    if run.finished:
        assert trained.metadata["steps_done"] == CONFIG.steps
        assert {t.device.type for t in trained.state_dict.values()} == {"cpu"}


# ------------------------------------------------------------------------------ rendering


def _render_checked(device: str, engine: Engine, call: Any) -> tuple[Any, list[str]]:
    """Run ``call()`` strictly, recording the device of every UNet output."""
    seen: list[str] = []
    handle = _record_forward(engine.pipeline().unet, seen)
    try:
        with strict_devices(device) as run:
            call()
    finally:
        handle.remove()
    assert seen, "the UNet forward never ran"
    assert {s.split(":")[0] for s in seen} == {device.split(":")[0]}
    return run, seen


def test_render_step_keeps_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    engine = Engine(tiny_registry, device=device)
    spec = RenderSpec(prompt="a photo", seed=1, steps=2, width=64, height=64, guidance=5.0)
    run, seen = _render_checked(device, engine, lambda: engine.render(spec))
    assert len(seen) >= 1  # with CFG one forward of 2 rows per step


def test_controlnet_render_step_keeps_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    engine = Engine(tiny_registry, device=device)
    pose = Image.new("RGB", (64, 64))
    pose.paste((255, 255, 255), (20, 8, 32, 56))
    spec = RenderSpec(
        prompt="a photo",
        seed=1,
        steps=2,
        width=64,
        height=64,
        guidance=5.0,
        controls=(ControlSpec(kind="pose", image=pose),),
    )
    _render_checked(device, engine, lambda: engine.render(spec))


def test_avatar_render_step_keeps_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    engine = Engine(tiny_registry, device=device)
    avatars = _avatars(engine.pipeline(), 2)
    for avatar_id, weight in (("u0", 0.8), ("u1", 1.1)):  # a load into the slot, then a swap
        spec = RenderSpec(
            prompt="{subject}, portrait",
            seed=1,
            steps=2,
            width=64,
            height=64,
            guidance=5.0,
            avatar=AvatarRef(avatar_id, weight=weight),
        )
        _render_checked(
            device, engine, lambda s=spec: engine.render(s, avatar_source=avatars.__getitem__)
        )
    lora_devices = {
        p.device.type for name, p in engine.pipeline().unet.named_parameters() if "lora_" in name
    }
    assert lora_devices == {device.split(":")[0]}


def test_avatar_pool_batch_keeps_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    engine = Engine(tiny_registry, device=device)
    avatars = _avatars(engine.pipeline(), 3)
    specs = [
        RenderSpec(
            prompt="{subject}, portrait",
            seed=10 + i,
            steps=2,
            width=64,
            height=64,
            guidance=5.0,
            avatar=AvatarRef(f"u{i}", weight=0.7 + 0.2 * i) if i < 3 else None,
        )
        for i in range(4)
    ]
    _render_checked(
        device, engine, lambda: engine.render_batch(specs, avatar_source=avatars.__getitem__)
    )
    assert engine.last_batch_path == "pool"
    pool = engine.loras.pool(engine.pipeline(), create=False)
    assert pool.loads == 3
    buffers = {
        b.device.type for name, b in engine.pipeline().unet.named_buffers() if "avatar_pool" in name
    }
    assert buffers == {device.split(":")[0]}


def test_mixed_adapter_batch_keeps_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    from peft.tuners.lora import LoraLayer

    from engine.adapters import avatar_slot
    from engine.loras import SlotLoraManager

    # Without the pool (or for avatars it cannot hold) adapters are loaded per batch.
    engine = Engine(tiny_registry, device=device, lora_manager=SlotLoraManager(pool_slots=0))
    base = engine.pipeline()
    avatars = _avatars(base, 3)
    avatar_slot(base, max_rank=engine.loras.max_rank)  # the LoRA layers exist from here on
    mixed: list[tuple[list[str], str]] = []

    def layer_hook(_module: Any, _args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if "adapter_names" in kwargs:
            mixed.append((list(kwargs["adapter_names"]), str(output.device)))

    layers = [m for m in base.unet.modules() if isinstance(m, LoraLayer)]
    handles = [layers[0].register_forward_hook(layer_hook, with_kwargs=True)]
    specs = [
        RenderSpec(
            prompt="{subject}, portrait",
            seed=10 + i,
            steps=2,
            width=64,
            height=64,
            guidance=5.0,
            avatar=AvatarRef(f"u{i}") if i < 3 else None,
        )
        for i in range(4)
    ]
    try:
        _render_checked(
            device,
            engine,
            lambda: engine.render_batch(specs, avatar_source=avatars.__getitem__),
        )
    finally:
        for handle in handles:
            handle.remove()
    assert mixed, "the per-sample (mixed-adapter) LoRA forward never ran"
    names, out_device = mixed[0]
    assert len(names) == 8 and names[:4] == names[4:]  # CFG: [uncond..., cond...]
    assert out_device.split(":")[0] == device.split(":")[0]


def test_canceled_render_is_not_taken_for_a_device_problem(
    device: str, tiny_registry: ModelRegistry
):
    """``expected`` exceptions end a strict run on any device (used by bench/gpu.sh)."""
    engine = Engine(tiny_registry, device=device)
    spec = RenderSpec(prompt="a photo", seed=1, steps=2, width=64, height=64, guidance=5.0)
    with strict_devices(device, expected=(RenderCanceled,)) as run:
        engine.render(spec, should_cancel=lambda: True)
    assert isinstance(run.stopped, RenderCanceled)


# ------------------------------------------------------------------------------ identity


def _identities(count: int) -> dict[str, Any]:
    import numpy as np

    from engine.identity import IdentityEmbedding

    rng = np.random.default_rng(0)
    return {
        f"u{i}": IdentityEmbedding(
            f"u{i}", "tiny-identity", "image_encoder", rng.normal(size=32).astype(np.float32)
        )
        for i in range(count)
    }


def test_identity_render_and_batch_keep_every_tensor_on_the_model_device(
    device: str, tiny_registry: ModelRegistry
):
    """The identity adapter (loaded with the pipeline, on its device), the embeddings made
    from the identity vectors, the guidance negatives and the per-sample batch rows."""
    identities = _identities(4)
    engine = Engine(tiny_registry, device=device, identity_source=identities.__getitem__)
    base = engine.pipeline()
    adapter = engine.identity_adapter()
    assert adapter is not None
    ip_devices = {p.device.type for n, p in base.unet.named_parameters() if "_ip." in n}
    ip_devices |= {p.device.type for p in base.unet.encoder_hid_proj.parameters()}
    assert ip_devices == {device.split(":")[0]}
    spec = RenderSpec(prompt="a photo", seed=1, steps=2, width=64, height=64, identity={"id": "u0"})
    _render_checked(device, engine, lambda: engine.render(spec))
    specs = [
        RenderSpec(
            prompt="a photo",
            seed=10 + i,
            steps=2,
            width=64,
            height=64,
            num_images=2 if i == 0 else 1,
            identity={"id": f"u{i}"},
        )
        for i in range(4)
    ]
    seen_embeds: list[str] = []

    def projection_hook(_module: Any, args: Any, _output: Any) -> None:
        seen_embeds.extend(str(embeds.device) for embeds in args[0])

    handle = base.unet.encoder_hid_proj.register_forward_hook(projection_hook)
    try:
        _render_checked(device, engine, lambda: engine.render_batch(specs))
    finally:
        handle.remove()
    assert seen_embeds and {d.split(":")[0] for d in seen_embeds} == {device.split(":")[0]}
    assert adapter.scale == 0.0  # reset to idle, also when the meta run stopped mid-render


def test_build_identity_encodes_on_the_model_device(device: str, tiny_registry: ModelRegistry):
    crops = [Image.new("RGB", (96, 96), (40 * i, 90, 200 - 30 * i)) for i in range(3)]
    engine = Engine(tiny_registry, device=device)
    encoder = engine.pipeline().image_encoder
    seen: list[str] = []
    handle = encoder.register_forward_hook(
        lambda _m, _a, output: seen.append(str(output.image_embeds.device))
    )
    try:
        with strict_devices(device) as run:
            engine.build_identity(crops)
    finally:
        handle.remove()
    assert seen and {s.split(":")[0] for s in seen} == {device.split(":")[0]}
    if device == "meta":  # the mean is copied back to the CPU: where a meta run stops
        assert "meta" in str(run.stopped)
