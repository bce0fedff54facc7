from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.errors import EngineError, SpecError
from engine.postprocess import encode_png
from engine.training import (
    LORA_WEIGHTS_NAME,
    METADATA_NAME,
    LoraFormatError,
    TrainedLora,
    TrainingCanceled,
    TrainingConfig,
    load_lora_file,
    lora_from_bytes,
    lora_to_bytes,
    save_lora,
    train_avatar_lora,
)

CONFIG = TrainingConfig(resolution=64, steps=8, learning_rate=1e-3, seed=0)
SHORT = dataclasses.replace(CONFIG, steps=3)
PROMPT = "a photo of sks person"


def _render(pipe, *, seed: int = 7, output_type: str = "np"):
    out = pipe(
        prompt=PROMPT,
        num_inference_steps=3,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type=output_type,
    )
    return out.images[0]


def _assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype, key
        assert torch.equal(first[key], second[key]), key


@pytest.fixture(scope="module")
def trained_run(tiny_registry, synthetic_photos):
    """One training run on a pipeline that rendered before and renders again after it."""
    from engine.runtime import load_pipeline

    pipe = load_pipeline(tiny_registry.get("tiny"), device=torch.device("cpu"), dtype=torch.float32)
    before = encode_png(_render(pipe, output_type="pil"))
    params_before = {name: p.detach().clone() for name, p in pipe.unet.named_parameters()}
    calls: list[tuple[int, int, float]] = []
    trained = train_avatar_lora(
        pipeline=pipe,
        photos=synthetic_photos,
        config=CONFIG,
        on_progress=lambda *args: calls.append(args),
        base_model="tiny",
    )
    after = encode_png(_render(pipe, output_type="pil"))
    return {
        "pipe": pipe,
        "trained": trained,
        "calls": calls,
        "before": before,
        "after": after,
        "params_before": params_before,
    }


def test_progress_every_step_with_finite_loss(trained_run):
    calls = trained_run["calls"]
    assert [(step, total) for step, total, _ in calls] == [(i, 8) for i in range(1, 9)]
    assert all(math.isfinite(loss) and loss > 0 for _, _, loss in calls)
    metadata = trained_run["trained"].metadata
    assert metadata["final_loss"] == calls[-1][2]
    assert metadata["steps_done"] == metadata["steps_planned"] == 8
    assert metadata["stopped_early"] is False
    assert (metadata["base_model"], metadata["rank"], metadata["alpha"]) == ("tiny", 4, 4.0)
    assert (metadata["trigger"], metadata["resolution"], metadata["seed"]) == ("sks person", 64, 0)
    assert metadata["learning_rate"] == 1e-3 and metadata["format_version"] == 1
    assert metadata["training_seconds"] > 0


def test_state_dict_is_diffusers_format_unet_lora(trained_run):
    state = trained_run["trained"].state_dict
    assert state and all(key.startswith("unet.") for key in state)
    assert {key.rsplit(".", 3)[-3:][0] for key in state} == {"lora"}
    downs = [t for key, t in state.items() if key.endswith("lora.down.weight")]
    ups = [t for key, t in state.items() if key.endswith("lora.up.weight")]
    assert len(downs) == len(ups) == len(state) // 2
    assert all(t.shape[0] == 4 and t.dtype == torch.float32 for t in downs)
    assert any(t.abs().max() > 0 for t in ups)  # lora_B starts at zero: it really trained
    assert trained_run["trained"].rank == 4


def test_cached_pipeline_is_unchanged_by_training(trained_run):
    pipe = trained_run["pipe"]
    assert trained_run["after"] == trained_run["before"]
    assert not getattr(pipe.unet, "peft_config", None)
    assert not pipe.unet.training
    for name, param in pipe.unet.named_parameters():
        assert param.requires_grad, name  # flags of the cached modules are untouched
        assert torch.equal(param, trained_run["params_before"][name]), name


def test_trained_lora_changes_output_and_weight_zero_is_base(trained_run, tiny_pipeline):
    base = _render(tiny_pipeline)
    tiny_pipeline.load_lora_weights(trained_run["trained"].state_dict, adapter_name="avatar")
    tiny_pipeline.set_adapters(["avatar"], [1.0])
    with_lora = _render(tiny_pipeline)
    assert np.abs(with_lora - base).max() > 1e-3
    tiny_pipeline.set_adapters(["avatar"], [0.0])
    assert np.array_equal(_render(tiny_pipeline), base)


def test_same_seed_gives_identical_weights(tiny_pipeline, synthetic_photos):
    rng_before = torch.get_rng_state()
    first = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=SHORT)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.manual_seed(12345)  # whatever the global RNG holds, the seed decides
    second = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=SHORT)
    _assert_same_tensors(first.state_dict, second.state_dict)
    assert first.metadata["final_loss"] == second.metadata["final_loss"]
    other = train_avatar_lora(
        pipeline=tiny_pipeline,
        photos=synthetic_photos,
        config=dataclasses.replace(SHORT, seed=1),
    )
    assert any(not torch.equal(other.state_dict[k], first.state_dict[k]) for k in first.state_dict)


def test_training_ignores_loras_already_in_the_pipeline(tiny_pipeline, synthetic_photos):
    clean = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=SHORT)
    tiny_pipeline.load_lora_weights(clean.state_dict, adapter_name="live")
    tiny_pipeline.set_adapters(["live"], [1.0])
    before = _render(tiny_pipeline)
    again = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=SHORT)
    _assert_same_tensors(clean.state_dict, again.state_dict)  # trained on the plain base
    assert np.array_equal(_render(tiny_pipeline), before)  # the live adapter is untouched
    assert list(tiny_pipeline.unet.peft_config) == ["live"]


def test_cancel_raises_between_steps(tiny_pipeline, synthetic_photos):
    polls: list[int] = []
    steps: list[int] = []

    def should_cancel() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(TrainingCanceled):
        train_avatar_lora(
            pipeline=tiny_pipeline,
            photos=synthetic_photos,
            config=CONFIG,
            on_progress=lambda step, _total, _loss: steps.append(step),
            should_cancel=should_cancel,
        )
    assert steps == [1, 2, 3]
    assert isinstance(TrainingCanceled("x"), EngineError)
    assert not getattr(tiny_pipeline.unet, "peft_config", None)


def test_cancel_before_start(tiny_pipeline, synthetic_photos):
    with pytest.raises(TrainingCanceled):
        train_avatar_lora(
            pipeline=tiny_pipeline,
            photos=synthetic_photos,
            config=CONFIG,
            should_cancel=lambda: True,
        )


def test_exhausted_time_budget_stops_early(tiny_pipeline, synthetic_photos):
    config = dataclasses.replace(CONFIG, steps=500, time_budget_s=0.0)
    trained = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=config)
    assert trained.metadata["stopped_early"] is True
    assert trained.metadata["steps_done"] == 1  # at least one step always runs
    assert trained.metadata["steps_planned"] == 500
    assert math.isfinite(trained.metadata["final_loss"])


def test_batch_size_and_text_encoder_training(tiny_pipeline, synthetic_photos):
    config = dataclasses.replace(SHORT, batch_size=3, train_text_encoder=True, rank=2, alpha=4)
    trained = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=config)
    prefixes = {key.split(".", 1)[0] for key in trained.state_dict}
    assert prefixes == {"unet", "text_encoder"}
    assert trained.rank == 2 and trained.metadata["alpha"] == 4.0
    assert not getattr(tiny_pipeline.text_encoder, "peft_config", None)
    base = _render(tiny_pipeline)
    tiny_pipeline.load_lora_weights(trained.state_dict, adapter_name="avatar")
    assert "avatar" in tiny_pipeline.text_encoder.peft_config
    tiny_pipeline.set_adapters(["avatar"], [0.0])
    assert np.array_equal(_render(tiny_pipeline), base)


def test_bytes_round_trip(trained_run):
    trained: TrainedLora = trained_run["trained"]
    data = lora_to_bytes(trained)
    assert isinstance(data, bytes)
    back = lora_from_bytes(data)
    _assert_same_tensors(back.state_dict, trained.state_dict)
    assert back.metadata == trained.metadata
    assert all(lora_to_bytes(back) == data for _ in range(5))  # deterministic encoding


def test_save_load_round_trip_and_diffusers_can_read_the_file(
    trained_run, tiny_pipeline, tmp_path: Path
):
    trained: TrainedLora = trained_run["trained"]
    directory = save_lora(trained, tmp_path / "avatar-1")
    assert (directory / LORA_WEIGHTS_NAME).is_file() and (directory / METADATA_NAME).is_file()
    back = load_lora_file(directory)
    _assert_same_tensors(back.state_dict, trained.state_dict)
    assert back.metadata == trained.metadata
    _assert_same_tensors(load_file(directory / LORA_WEIGHTS_NAME), trained.state_dict)
    (directory / METADATA_NAME).unlink()  # the weights file alone carries the metadata too
    assert load_lora_file(directory / LORA_WEIGHTS_NAME).metadata == trained.metadata

    tiny_pipeline.load_lora_weights(str(directory), adapter_name="from_file")
    tiny_pipeline.set_adapters(["from_file"], [1.0])
    from_file = _render(tiny_pipeline)
    tiny_pipeline.delete_adapters(["from_file"])
    tiny_pipeline.load_lora_weights(trained.state_dict, adapter_name="from_dict")
    tiny_pipeline.set_adapters(["from_dict"], [1.0])
    assert np.array_equal(_render(tiny_pipeline), from_file)


@pytest.mark.parametrize(
    "data", [b"", b"not a safetensors file at all", b"\xff" * 8 + b"{}", "text, not bytes"]
)
def test_corrupt_bytes_are_rejected(data):
    with pytest.raises(LoraFormatError):
        lora_from_bytes(data)


def test_missing_file_is_rejected(tmp_path: Path):
    with pytest.raises(LoraFormatError):
        load_lora_file(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rank", 0),
        ("rank", 2.5),
        ("alpha", -1.0),
        ("steps", 0),
        ("steps", True),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("resolution", 100),
        ("batch_size", 0),
        ("seed", -1),
        ("trigger", "  "),
        ("train_text_encoder", "yes"),
        ("target_modules", "to_q"),
        ("target_modules", ()),
        ("time_budget_s", -1.0),
        ("gradient_checkpointing", 1),
        ("mixed_precision", "fp8"),
    ],
)
def test_config_validation(field: str, value: object):
    with pytest.raises(SpecError) as excinfo:
        TrainingConfig(**{field: value})
    assert excinfo.value.field == field


def test_config_defaults_and_caption():
    config = TrainingConfig(target_modules=["to_q", "to_v"])
    assert config.target_modules == ("to_q", "to_v")
    assert (config.rank, config.lora_alpha, config.steps, config.resolution) == (4, 4.0, 400, 512)
    assert config.caption == "a photo of sks person"


def test_no_photos_is_a_spec_error(tiny_pipeline):
    with pytest.raises(SpecError) as excinfo:
        train_avatar_lora(pipeline=tiny_pipeline, photos=[], config=SHORT)
    assert excinfo.value.field == "photos"


def test_gradient_checkpointing_and_bf16_autocast(tiny_pipeline, synthetic_photos):
    config = dataclasses.replace(SHORT, steps=2)
    plain = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=config)
    checkpointed = train_avatar_lora(
        pipeline=tiny_pipeline,
        photos=synthetic_photos,
        config=dataclasses.replace(config, gradient_checkpointing=True),
    )
    _assert_same_tensors(plain.state_dict, checkpointed.state_dict)  # memory, not results
    assert not any(
        getattr(module, "gradient_checkpointing", False) for module in tiny_pipeline.unet.modules()
    )
    bf16 = train_avatar_lora(
        pipeline=tiny_pipeline,
        photos=synthetic_photos,
        config=dataclasses.replace(config, mixed_precision="bf16"),
    )
    assert math.isfinite(bf16.metadata["final_loss"])
    assert bf16.metadata["mixed_precision"] == "bf16"
    assert {t.dtype for t in bf16.state_dict.values()} == {torch.float32}


# ------------------------------------------------------------------------------ fast path


def test_loss_is_read_back_every_few_steps_not_every_step(
    tiny_pipeline, synthetic_photos, monkeypatch
):
    import engine.training as training

    reads: list[int] = []
    real = training._check_loss

    def spy(loss, nonfinite, checked, step):
        reads.append(step + 1)
        return real(loss, nonfinite, checked, step)

    monkeypatch.setattr(training, "_check_loss", spy)
    calls: list[float] = []
    config = dataclasses.replace(SHORT, steps=2 * training.LOSS_CHECK_EVERY + 3)
    trained = train_avatar_lora(
        pipeline=tiny_pipeline,
        photos=synthetic_photos,
        config=config,
        on_progress=lambda _step, _total, loss: calls.append(loss),
    )
    every = training.LOSS_CHECK_EVERY
    assert reads == [1, every, 2 * every, config.steps]  # first, every N, last
    assert len(calls) == config.steps and all(math.isfinite(loss) for loss in calls)
    assert trained.metadata["final_loss"] == calls[-1]


def test_a_non_finite_loss_between_checks_still_fails_training(
    tiny_pipeline, synthetic_photos, monkeypatch
):
    import engine.training as training

    real = training.F.mse_loss
    seen: list[int] = []

    def poisoned(prediction, target, *args, **kwargs):
        seen.append(1)
        loss = real(prediction, target, *args, **kwargs)
        return loss * float("nan") if len(seen) == 3 else loss

    monkeypatch.setattr(training.F, "mse_loss", poisoned)
    with pytest.raises(training.TrainingFailed, match=r"non-finite .* steps 2-8"):
        train_avatar_lora(
            pipeline=tiny_pipeline,
            photos=synthetic_photos,
            config=dataclasses.replace(SHORT, steps=8),
        )


def test_time_budget_stop_between_checks_checks_the_last_losses(
    tiny_pipeline, synthetic_photos, monkeypatch
):
    import engine.training as training

    real = training.F.mse_loss
    seen: list[int] = []

    def poisoned(prediction, target, *args, **kwargs):
        seen.append(1)
        loss = real(prediction, target, *args, **kwargs)
        return loss * float("nan") if len(seen) == 2 else loss

    monkeypatch.setattr(training.F, "mse_loss", poisoned)
    clock = iter(range(1000))
    monkeypatch.setattr(training.time, "monotonic", lambda: float(next(clock)))
    config = dataclasses.replace(SHORT, steps=50, time_budget_s=3.5)  # stops after a few steps
    with pytest.raises(training.TrainingFailed, match="non-finite"):
        train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=config)


def test_batches_walk_a_fresh_permutation_per_epoch_on_the_device():
    from engine.training import _batch_indices

    def reference(count: int, batch_size: int, seed: int, steps: int) -> list[list[int]]:
        generator, order, out = torch.Generator().manual_seed(seed), [], []
        for _ in range(steps):
            batch = []
            while len(batch) < batch_size:
                if not order:
                    order = torch.randperm(count, generator=generator).tolist()
                batch.append(order.pop(0))
            out.append(batch)
        return out

    for count, batch_size in ((4, 1), (4, 3), (3, 2), (5, 5)):
        walk = _batch_indices(
            count, batch_size, torch.Generator().manual_seed(9), torch.device("cpu")
        )
        got = [next(walk).tolist() for _ in range(7)]
        assert got == reference(count, batch_size, 9, 7)


def test_auto_mixed_precision_is_autocast_on_cuda_only():
    from engine.training import resolve_mixed_precision

    cpu, cuda, meta = torch.device("cpu"), torch.device("cuda"), torch.device("meta")
    assert resolve_mixed_precision("auto", cpu, torch.float32) == "no"
    assert resolve_mixed_precision("auto", meta, torch.bfloat16) == "no"
    assert resolve_mixed_precision("auto", cuda, torch.float16) == "fp16"
    assert resolve_mixed_precision("auto", cuda, torch.bfloat16) == "bf16"
    assert resolve_mixed_precision("no", cuda, torch.bfloat16) == "no"
    assert resolve_mixed_precision("bf16", cpu, torch.float32) == "bf16"
    assert TrainingConfig().mixed_precision == "auto"
