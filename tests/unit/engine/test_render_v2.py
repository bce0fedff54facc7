"""Render spec v2 on the tiny models: modes, ControlNet, LoRAs, face pass, ranking, labels.

These tests use their own Engine (own loaded pipeline), so LoRAs loaded here never touch the
session-wide ``tiny_engine`` that the determinism tests compare against.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from PIL import Image

from engine.errors import SpecError
from engine.faces import FaceBox
from engine.loras import AvatarLora, LoraManager, random_lora_state_dict
from engine.registry import ModelRegistry
from engine.runtime import Engine, LabelOptions
from engine.spec import SAMPLERS, RenderSpec

FACE = FaceBox(left=20, top=16, right=44, bottom=44, score=1.0)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _pose(offset: int) -> Image.Image:
    image = Image.new("RGB", (64, 64))
    image.paste((255, 255, 255), (offset, 8, offset + 12, 56))
    return image


REFERENCE = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
MASK = Image.new("L", (64, 64))
MASK.paste(255, (0, 0, 32, 64))


@pytest.fixture(scope="module")
def engine(tiny_registry: ModelRegistry) -> Engine:
    return Engine(tiny_registry, device="cpu", face_detector=lambda _image: FACE)


@pytest.fixture(scope="module")
def lora(engine: Engine) -> dict:
    return random_lora_state_dict(engine.pipeline().unet, seed=7, scale=0.2)


def _one(engine: Engine, **fields) -> bytes:
    [image] = engine.render(RenderSpec.from_dict({"prompt": "a portrait", "seed": 1, **fields}))
    return image.png_bytes


def _same_pixels(first: bytes, second: bytes) -> bool:
    """The same image up to one level per channel: a batch of 4 and a batch of 1 take different
    CPU kernels (oneDNN chooses by batch size and processor), which can flip a rounding. A
    different seed differs by far more."""
    a = np.asarray(Image.open(io.BytesIO(first)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(second)).convert("RGB"), dtype=np.int16)
    return a.shape == b.shape and int(np.abs(a - b).max()) <= 1


def test_modes_share_the_base_modules(engine: Engine):
    modes = engine.mode_pipelines()
    base = modes.base
    controlnet = engine._controlnet(0, "pose", None, engine.registry.get("tiny"))
    for mode in ("img2img", "inpaint"):
        for controls in ((), [controlnet]):
            pipe = modes.get(mode, controls)
            assert type(pipe) is not type(base)
            for name in ("unet", "vae", "text_encoder", "tokenizer"):
                assert getattr(pipe, name) is getattr(base, name), (mode, name)
    assert modes.get("txt2img", [controlnet]).controlnet is controlnet[1]
    assert modes.get("img2img") is modes.get("img2img")  # made once


def test_controlnet_image_changes_the_output(engine: Engine):
    plain = _one(engine)
    left = _one(engine, controls=[{"kind": "pose", "image": _png(_pose(8))}])
    right = _one(engine, controls=[{"kind": "pose", "image": _pose(44)}])
    assert len({plain, left, right}) == 3
    weak = _one(engine, controls=[{"kind": "pose", "image": _pose(44), "conditioning_scale": 0}])
    assert weak == plain  # scale 0: the ControlNet adds nothing


def test_missing_controlnet_kind_names_the_field(engine: Engine):
    with pytest.raises(SpecError) as info:
        _one(
            engine,
            controls=[{"kind": "pose", "image": _pose(8)}, {"kind": "canny", "image": _pose(8)}],
        )
    assert info.value.field == "controls.1.kind"


def test_img2img_inpaint_lighting_run_and_differ(engine: Engine):
    txt = _one(engine)
    img2img = _one(engine, reference={"image": REFERENCE, "strength": 0.5})
    inpaint = _one(
        engine,
        reference={"image": _png(REFERENCE), "mode": "inpaint", "mask": MASK, "strength": 1.0},
    )
    lighting = _one(engine, lighting={"image": REFERENCE, "strength": 0.75})
    with_pose = _one(
        engine,
        reference={"image": REFERENCE, "strength": 0.5},
        controls=[{"kind": "pose", "image": _pose(8)}],
    )
    assert len({txt, img2img, inpaint, lighting, with_pose}) == 5
    assert _one(engine, reference={"image": REFERENCE, "strength": 0.5}) == img2img


def test_strength_too_low_for_steps(engine: Engine):
    with pytest.raises(SpecError) as info:
        _one(engine, steps=2, lighting={"image": REFERENCE, "strength": 0.3})
    assert info.value.field == "lighting.strength"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_renders_and_reports_full_progress(engine: Engine, sampler: str):
    calls: list[tuple[int, int]] = []
    spec = RenderSpec(prompt="a", seed=1, steps=2, sampler=sampler)
    [image] = engine.render(spec, on_progress=lambda *a: calls.append(a))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [step for step, _ in calls] == list(range(1, len(calls) + 1))
    assert image.png_bytes == engine.render(spec)[0].png_bytes


def test_sampler_changes_the_output(engine: Engine):
    assert _one(engine, sampler="euler") != _one(engine, sampler="ddim")


def test_subject_becomes_trigger_or_a_person(engine: Engine, lora: dict):
    source_calls: list[str] = []

    def source(avatar_id: str) -> AvatarLora:
        source_calls.append(avatar_id)
        return AvatarLora(avatar_id, lora, trigger="studio face")

    with_avatar = engine.render(
        RenderSpec(prompt="{subject}", seed=1, avatar={"id": "u1", "weight": 0.0}),
        avatar_source=source,
    )[0].png_bytes
    assert source_calls == ["u1"]
    # weight 0: the LoRA adds nothing, so only the prompt substitution matters
    assert with_avatar == _one(engine, prompt="studio face")
    assert _one(engine, prompt="{subject}") == _one(engine, prompt="a person")


def test_avatar_lora_weight_acts_and_leaves_no_trace(engine: Engine, lora: dict):
    base = _one(engine)
    source = lambda avatar_id: AvatarLora(avatar_id, lora, trigger="sks")  # noqa: E731
    renders = [
        engine.render(
            RenderSpec(prompt="a portrait", seed=1, avatar={"id": "u1", "weight": w}),
            avatar_source=source,
        )[0].png_bytes
        for w in (0.5, 1.0)
    ]
    assert len({base, *renders}) == 3
    assert _one(engine) == base  # no avatar in the spec: exactly the base model again


def test_avatar_without_source_is_a_spec_error(engine: Engine):
    with pytest.raises(SpecError) as info:
        _one(engine, avatar={"id": "u1"})
    assert info.value.field == "avatar"


def test_style_lora_by_path_and_fallback_manager(
    tiny_registry: ModelRegistry, tmp_path: Path, lora: dict
):
    path = tmp_path / "style.safetensors"
    safetensors.torch.save_file(lora, str(path))
    engine = Engine(tiny_registry, device="cpu", lora_manager=LoraManager(max_loaded=1))
    base = _one(engine)
    styled = _one(engine, style_loras=[{"path": str(path), "weight": 0.8}])
    assert styled != base
    assert _one(engine) == base
    with pytest.raises(SpecError) as info:
        _one(engine, style_loras=[{"path": str(tmp_path / "missing.safetensors")}])
    assert info.value.field == "style_loras.0"
    with pytest.raises(SpecError) as info:
        _one(engine, style_loras=[{"key": "tiny-pose"}])
    assert info.value.field == "style_loras.0.key"


def test_face_refine_changes_only_the_face_crop(engine: Engine):
    calls: list[tuple[int, int]] = []
    spec = RenderSpec(prompt="a portrait", seed=1, face_refine={"strength": 0.5, "padding": 1.2})
    [refined] = engine.render(spec, on_progress=lambda *a: calls.append(a))
    plain = _pixels(_one(engine))
    diff = np.abs(_pixels(refined.png_bytes) - plain).sum(axis=2)
    # crop: face 24x28, side int(28 * 1.2) = 33, centred on (32, 30)
    inside = np.zeros_like(diff, dtype=bool)
    inside[14:47, 16:49] = True
    assert diff[inside].max() > 0
    assert diff[~inside].max() == 0
    assert calls == [(i, 6) for i in range(1, 7)]  # 4 steps + int(4 * 0.5) face steps


def test_face_refine_without_a_face_keeps_the_image(tiny_registry: ModelRegistry):
    engine = Engine(tiny_registry, device="cpu", face_detector=lambda _image: None)
    calls: list[tuple[int, int]] = []
    spec = RenderSpec(prompt="a portrait", seed=1, face_refine={"strength": 0.5})
    [image] = engine.render(spec, on_progress=lambda *a: calls.append(a))
    assert image.png_bytes == _one(engine)
    assert calls[-1] == (4, 4)


def test_candidates_are_reranked_by_likeness(tiny_registry: ModelRegistry):
    by_seed = {5: 0.2, 6: 0.9, 7: None, 8: 0.6}
    seen: list[int] = []

    def scorer(image: Image.Image, reference: np.ndarray) -> float | None:
        seen.append(len(seen))
        return by_seed[5 + len(seen) - 1]

    engine = Engine(tiny_registry, device="cpu", likeness_scorer=scorer)
    spec = RenderSpec(prompt="a", seeds=[5, 6, 7, 8], keep=3, steps=2)
    kept = engine.render(spec, reference_embedding=np.zeros(128, dtype=np.float32))
    assert [(k.seed, k.likeness, k.candidate) for k in kept] == [
        (6, 0.9, 1),
        (8, 0.6, 3),
        (5, 0.2, 0),
    ]
    alone = engine.render(RenderSpec(prompt="a", seed=6, steps=2))[0]
    assert _same_pixels(kept[0].png_bytes, alone.png_bytes)  # a kept candidate reproduces
    unranked = engine.render(spec)
    assert [(k.seed, k.likeness) for k in unranked] == [(5, None), (6, None), (7, None)]


def test_default_likeness_scorer_is_engine_faces(tiny_engine: Engine):
    """Random tiny outputs hold no face: every score is None and seed order is kept."""
    from engine.faces import _models

    try:
        _models()
    except Exception as exc:  # pragma: no cover - depends on the installed face models
        pytest.skip(f"face models unavailable: {exc}")
    spec = RenderSpec(prompt="a", seeds=[1, 2], keep=1, steps=1)
    [image] = tiny_engine.render(spec, reference_embedding=np.zeros(128, dtype=np.float32))
    assert (image.seed, image.likeness) == (1, None)


def test_chunked_batches_match_one_batch(tiny_registry: ModelRegistry, tiny_engine: Engine):
    spec = RenderSpec(prompt="a", seeds=[3, 9, 4], steps=2)
    chunked = Engine(tiny_registry, device="cpu", max_batch=2)
    calls: list[tuple[int, int]] = []
    images = chunked.render(spec, on_progress=lambda *a: calls.append(a))
    whole = tiny_engine.render(spec)
    assert [i.seed for i in images] == [i.seed for i in whole]
    assert all(_same_pixels(a.png_bytes, b.png_bytes) for a, b in zip(images, whole, strict=True))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_label_hook(tiny_engine: Engine, fmt: str):
    from engine.labels import read_labels, watermark_matches

    spec = RenderSpec(prompt="a", seed=1, steps=1, width=256, height=256)
    [image] = tiny_engine.render(spec, label=LabelOptions("job-42", "workstation", format=fmt))
    report = read_labels(image.png_bytes)
    assert (image.format, report.format) == (fmt, fmt)
    assert report.implicit_label["ProduceID"] == "job-42"
    assert report.implicit_label["ContentProducer"] == "workstation"
    assert report.visible_label
    assert watermark_matches(report, "job-42")
