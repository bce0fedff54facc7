from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import ModelLoadError, RenderCanceled, SpecError
from engine.registry import ModelRegistry
from engine.runtime import Engine, RenderedImage
from engine.spec import RenderSpec

SPEC = RenderSpec(prompt="a portrait photo of a person", seed=42)


def test_render_returns_png_of_requested_size(tiny_engine: Engine):
    [image] = tiny_engine.render(SPEC)
    assert isinstance(image, RenderedImage)
    assert (image.seed, image.width, image.height) == (42, 64, 64)
    decoded = Image.open(io.BytesIO(image.png_bytes))
    assert (decoded.format, decoded.size, decoded.mode) == ("PNG", (64, 64), "RGB")
    assert decoded.info == {}  # no metadata chunks that could vary between runs


def test_same_spec_gives_identical_bytes(tiny_engine: Engine):
    first = tiny_engine.render(SPEC)
    second = tiny_engine.render(SPEC)
    assert first[0].png_bytes == second[0].png_bytes


def test_different_seed_or_prompt_changes_the_image(tiny_engine: Engine):
    base = tiny_engine.render(SPEC)[0].png_bytes
    other_seed = tiny_engine.render(RenderSpec(prompt=SPEC.prompt, seed=43))[0].png_bytes
    other_prompt = tiny_engine.render(RenderSpec(prompt="a studio face", seed=42))[0].png_bytes
    assert base != other_seed
    assert base != other_prompt


def test_batch_image_i_uses_seed_plus_i(tiny_engine: Engine):
    batch = tiny_engine.render(RenderSpec(prompt=SPEC.prompt, seed=42, num_images=2))
    assert [image.seed for image in batch] == [42, 43]
    assert batch[0].png_bytes != batch[1].png_bytes
    [single] = tiny_engine.render(RenderSpec(prompt=SPEC.prompt, seed=43))
    assert batch[1].png_bytes == single.png_bytes  # any batch image can be reproduced alone


def test_non_square_size(tiny_engine: Engine):
    [image] = tiny_engine.render(RenderSpec(prompt="a", seed=1, width=96, height=64, steps=1))
    assert Image.open(io.BytesIO(image.png_bytes)).size == (96, 64)


def test_progress_is_reported_once_per_step(tiny_engine: Engine):
    calls: list[tuple[int, int]] = []
    tiny_engine.render(
        RenderSpec(prompt="a", seed=1, steps=3), on_progress=lambda *a: calls.append(a)
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_cancel_between_steps_raises(tiny_engine: Engine):
    calls: list[tuple[int, int]] = []
    with pytest.raises(RenderCanceled, match="step 2"):
        tiny_engine.render(
            RenderSpec(prompt="a", seed=1, steps=4),
            on_progress=lambda *a: calls.append(a),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert calls == [(1, 4), (2, 4)]


def test_cancel_before_start_raises(tiny_engine: Engine):
    with pytest.raises(RenderCanceled):
        tiny_engine.render(SPEC, should_cancel=lambda: True)


def test_pipeline_is_loaded_once_and_cached(tiny_engine: Engine):
    assert tiny_engine.pipeline("tiny") is tiny_engine.pipeline()
    assert "tiny" in tiny_engine.cache


def test_controlnet_is_not_a_base_model(tiny_engine: Engine):
    with pytest.raises(SpecError) as info:
        tiny_engine.render(RenderSpec(prompt="a", seed=1, base_model="tiny-pose"))
    assert info.value.field == "base_model"


def test_missing_model_dir_names_key_and_path(tmp_path: Path):
    engine = Engine(ModelRegistry.for_profile("tiny", models_dir=tmp_path), device="cpu")
    with pytest.raises(ModelLoadError) as info:
        engine.render(SPEC)
    assert "'tiny'" in str(info.value)
    assert str(tmp_path / "sd-tiny") in str(info.value)


def test_corrupt_model_dir_raises_model_load_error(tmp_path: Path):
    (tmp_path / "sd-tiny").mkdir()
    (tmp_path / "sd-tiny" / "model_index.json").write_text("{broken", encoding="utf-8")
    engine = Engine(ModelRegistry.for_profile("tiny", models_dir=tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match="sd-tiny"):
        engine.pipeline()
    assert len(engine.cache) == 0
