"""`Engine.render_batch`: several users' specs in one pipeline call, each equal to its own
`Engine.render` (tiny models, CPU, 1 thread).

Float images are captured by replacing `engine.runtime._call` (which both paths use) with a
version that asks the pipeline for numpy output and converts it to PIL exactly as diffusers'
``output_type="pil"`` does, so PNG bytes are unchanged by the capture.
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from PIL import Image

import engine.runtime as runtime
from engine.adapters import loaded_adapter_names
from engine.batching import batch_key, group_by_key
from engine.errors import RenderCanceled, SpecError
from engine.loras import AvatarLora, random_lora_state_dict
from engine.registry import ModelRegistry
from engine.runtime import Engine, LabelOptions
from engine.spec import RenderSpec

ATOL = 1e-5


def _pose(offset: int) -> Image.Image:
    image = Image.new("RGB", (64, 64))
    image.paste((255, 255, 255), (offset, 8, offset + 12, 56))
    return image


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def avatars(tiny_registry: ModelRegistry) -> dict[str, AvatarLora]:
    import torch

    from engine.runtime import load_pipeline

    unet = load_pipeline(
        tiny_registry.get("tiny"), device=torch.device("cpu"), dtype=torch.float32
    ).unet
    return {
        key: AvatarLora(key, random_lora_state_dict(unet, seed=seed, scale=0.2), f"sks{key}", "r1")
        for key, seed in (("A", 1), ("B", 2), ("C", 3), ("D", 4))
    }


@pytest.fixture(scope="module")
def engine(tiny_registry: ModelRegistry, avatars: dict[str, AvatarLora]) -> Engine:
    """Its own Engine (own pipeline): LoRAs loaded here never reach the shared tiny_engine."""
    return Engine(tiny_registry, device="cpu", avatar_source=lambda avatar_id: avatars[avatar_id])


@pytest.fixture
def floats(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every pipeline call's float images ([N, H, W, 3] in [0, 1]), in call order."""
    captured: list[np.ndarray] = []

    def call(pipe, **kwargs):
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k in accepted}
        images = pipe(**kwargs, output_type="np").images
        captured.append(images)
        return pipe.numpy_to_pil(images)

    monkeypatch.setattr(runtime, "_call", call)
    return captured


def _mixed_specs() -> list[RenderSpec]:
    return [
        RenderSpec(
            prompt="{subject}, business portrait",
            seed=11,
            avatar={"id": "A"},
            negative_prompt="blurry",
        ),
        RenderSpec(prompt="a studio photo of a person", seed=12, negative_prompt="dark"),
        RenderSpec(
            prompt="{subject}, smiling",
            seed=13,
            avatar={"id": "B", "weight": 0.8},
            negative_prompt="low quality",
        ),
    ]


def _singles(engine: Engine, specs, floats: list[np.ndarray], **kwargs):
    results, images = [], []
    for spec in specs:
        results.append(engine.render(spec, **kwargs))
        images.append(floats[-1][0])
    return results, images


def _assert_matches(batch, batch_floats, singles, single_floats) -> None:
    assert len(batch) == len(singles)
    for i, ([got], [want]) in enumerate(zip(batch, singles, strict=True)):
        assert float(np.abs(batch_floats[i] - single_floats[i]).max()) <= ATOL, i
        assert (got.seed, got.width, got.height, got.candidate) == (want.seed, 64, 64, 0)
        pixels, expected = _pixels(got.png_bytes), _pixels(want.png_bytes)
        # Within 1e-5 a value can still round to the neighbouring byte at a .5 boundary.
        assert int(np.abs(pixels - expected).max()) <= 1, i
        if np.array_equal(pixels, expected):
            assert got.png_bytes == want.png_bytes, i


# ------------------------------------------------------------------------------ batch_key


def test_batch_key_ignores_what_may_differ_per_sample():
    key = batch_key(RenderSpec(prompt="a", seed=1))
    assert key is not None and hash(key) is not None
    same = [
        RenderSpec(prompt="something else", seed=99),
        RenderSpec(prompt="{subject}", seed=2, avatar={"id": "x", "weight": 0.5}),
        RenderSpec(prompt="a", seed=1, refine_level=3),
    ]
    assert all(batch_key(spec) == key for spec in same)
    controlled = [
        batch_key(RenderSpec(prompt="a", seed=s, controls=[{"kind": "pose", "image": _pose(s)}]))
        for s in (8, 40)
    ]
    assert controlled[0] == controlled[1] != key
    negatives = {batch_key(RenderSpec(prompt="a", seed=1, negative_prompt=n)) for n in ("x", "y")}
    assert len(negatives) == 1 and key not in negatives  # empty or not must agree


@pytest.mark.parametrize(
    "fields",
    [
        {"steps": 5},
        {"width": 128},
        {"height": 128},
        {"guidance": 7.0},
        {"sampler": "euler"},
        {"base_model": "tiny"},
        {"style_loras": [{"path": "/x.safetensors", "weight": 0.5}]},
        {"controls": [{"kind": "pose", "image": _pose(8), "conditioning_scale": 0.5}]},
        {"controls": [{"kind": "pose", "image": _pose(8), "end": 0.5}]},
    ],
)
def test_batch_key_separates_what_must_agree(fields):
    assert batch_key(RenderSpec(prompt="a", seed=1, **fields)) != batch_key(
        RenderSpec(prompt="a", seed=1)
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"lighting": {"image": _pose(8)}},
        {"reference": {"image": _pose(8), "strength": 0.5}},
        {"face_refine": {"strength": 0.5}},
    ],
)
def test_unbatchable_specs_have_no_key(fields):
    assert batch_key(RenderSpec.from_dict({"prompt": "a", "seed": 1, **fields})) is None


def test_specs_with_several_candidates_batch_too():
    """Each candidate becomes a sample of the batch (test_identity.py renders such batches)."""
    key = batch_key(RenderSpec(prompt="a", seed=1))
    assert batch_key(RenderSpec(prompt="a", seed=1, num_images=2)) == key
    assert batch_key(RenderSpec(prompt="a", seeds=[1, 2], keep=1)) == key


def test_group_by_key():
    specs = [
        RenderSpec(prompt="a", seed=1),
        RenderSpec(prompt="b", seed=2, steps=2),
        RenderSpec(prompt="c", seed=3, num_images=2),
        RenderSpec(prompt="d", seed=4, face_refine={"strength": 0.5}),
    ]
    groups = group_by_key(specs)
    assert sorted(groups.values()) == [[0, 2], [1], [3]]
    assert groups[None] == [3]


# ------------------------------------------------------------------------------ render_batch


def test_mixed_batch_equals_single_renders(engine: Engine, floats: list[np.ndarray]):
    specs = _mixed_specs()
    base = engine.mode_pipelines().base
    batch = engine.render_batch(specs)
    assert len(floats) == 1 and floats[0].shape[0] == 3  # one pipeline call for all three
    batch_floats = floats[0]
    singles, single_floats = _singles(engine, specs, floats)
    _assert_matches(batch, batch_floats, singles, single_floats)
    # The batch leaves no adapter behind and the slot as it was.
    slot = engine.loras.slot(base)
    assert slot is not None
    assert loaded_adapter_names(base) == {slot.adapter_name}
    before = (slot.current_avatar, slot.loads)
    again = engine.render_batch(specs)
    assert (slot.current_avatar, slot.loads) == before
    assert [r[0].png_bytes for r in again] == [r[0].png_bytes for r in batch]
    assert [r[0].png_bytes for r in _singles(engine, specs, floats)[0]] == [
        r[0].png_bytes for r in singles
    ]


def test_order_is_preserved(engine: Engine, floats: list[np.ndarray]):
    specs = _mixed_specs()
    forward = engine.render_batch(specs)
    backward = engine.render_batch(specs[::-1])
    assert [r[0].seed for r in backward] == [13, 12, 11]
    for got, want, i in zip(backward[::-1], forward, range(3), strict=True):
        assert float(np.abs(floats[1][2 - i] - floats[0][i]).max()) <= ATOL
        assert int(np.abs(_pixels(got[0].png_bytes) - _pixels(want[0].png_bytes)).max()) <= 1


def test_batch_on_a_fresh_engine_then_single_renders(
    tiny_registry: ModelRegistry, avatars: dict[str, AvatarLora], floats: list[np.ndarray]
):
    """A batch before any avatar render creates the hot-swap slot first, so later single
    renders can still hot-swap; a render with no avatar is still exactly the base model."""
    fresh = Engine(tiny_registry, device="cpu")
    plain = fresh.render(RenderSpec(prompt="a", seed=5))[0].png_bytes
    source = lambda avatar_id: avatars[avatar_id]  # noqa: E731
    specs = [
        RenderSpec(prompt="{subject}", seed=s, avatar={"id": a})
        for s, a in ((1, "A"), (2, "B"), (3, "C"), (4, "D"))
    ]
    batch = fresh.render_batch(specs, avatar_source=source)
    batch_floats = floats[-1]
    singles, single_floats = _singles(fresh, specs, floats, avatar_source=source)
    _assert_matches(batch, batch_floats, singles, single_floats)
    assert fresh.render(RenderSpec(prompt="a", seed=5))[0].png_bytes == plain


def test_same_avatar_at_two_weights_and_avatar_only_batch(engine: Engine, floats):
    specs = [
        RenderSpec(prompt="{subject}", seed=s, avatar={"id": "A", "weight": w})
        for s, w in ((1, 1.0), (2, 0.3), (3, 1.0))
    ]
    batch = engine.render_batch(specs)
    batch_floats = floats[-1]
    singles, single_floats = _singles(engine, specs, floats)
    _assert_matches(batch, batch_floats, singles, single_floats)


def test_controlnet_batch_uses_each_samples_control_image(engine: Engine, floats):
    specs = [
        RenderSpec(
            prompt="{subject}",
            seed=1,
            avatar={"id": "A"},
            controls=[{"kind": "pose", "image": _pose(8), "conditioning_scale": 0.8}],
        ),
        RenderSpec(
            prompt="a person",
            seed=1,
            controls=[{"kind": "pose", "image": _pose(40), "conditioning_scale": 0.8}],
        ),
    ]
    batch = engine.render_batch(specs)
    batch_floats = floats[-1]
    singles, single_floats = _singles(engine, specs, floats)
    _assert_matches(batch, batch_floats, singles, single_floats)


def test_style_loras_combine_with_each_avatar(
    engine: Engine, avatars: dict[str, AvatarLora], tmp_path: Path, floats
):
    style = random_lora_state_dict(engine.pipeline().unet, seed=9, rank=2, scale=0.3)
    style = {k: v for k, v in style.items() if ".to_k." in k or ".to_v." in k}
    path = tmp_path / "style.safetensors"
    safetensors.torch.save_file(style, str(path))
    styles = [{"path": str(path), "weight": 0.7}]
    specs = [
        RenderSpec(
            prompt="{subject}", seed=1, avatar={"id": "C", "weight": 0.9}, style_loras=styles
        ),
        RenderSpec(prompt="a person", seed=2, style_loras=styles),
        RenderSpec(prompt="{subject}", seed=3, avatar={"id": "D"}, style_loras=styles),
    ]
    batch = engine.render_batch(specs)
    batch_floats = floats[-1]
    singles, single_floats = _singles(engine, specs, floats)
    _assert_matches(batch, batch_floats, singles, single_floats)
    unstyled = engine.render(RenderSpec(prompt="a person", seed=2))[0].png_bytes
    assert unstyled != batch[1][0].png_bytes  # the style acted on the no-avatar sample


def test_incompatible_specs_are_rejected(engine: Engine):
    good = RenderSpec(prompt="a", seed=1)
    for other, field in [
        (RenderSpec(prompt="a", seed=2, steps=2), "specs.1"),
        (RenderSpec(prompt="a", seed=2, width=128), "specs.1"),
        (RenderSpec(prompt="a", seed=2, identity={"id": "x"}), "specs.1"),
        (RenderSpec(prompt="a", seed=2, face_refine={"strength": 0.5}), "specs.1"),
    ]:
        with pytest.raises(SpecError) as info:
            engine.render_batch([good, other])
        assert info.value.field == field
    with pytest.raises(SpecError) as info:
        engine.render_batch([good, good], labels=[None])
    assert info.value.field == "labels"
    with pytest.raises(SpecError) as info:
        engine.render_batch([good], reference_embeddings=[None, None])
    assert info.value.field == "reference_embeddings"
    assert engine.render_batch([]) == []


def test_labels_and_likeness_per_spec(tiny_registry: ModelRegistry, avatars, floats):
    from engine.labels import read_labels, watermark_matches

    embeddings = [np.full(128, 0.25, np.float32), None, np.full(128, 0.75, np.float32)]
    labelled = Engine(
        tiny_registry,
        device="cpu",
        avatar_source=lambda avatar_id: avatars[avatar_id],
        likeness_scorer=lambda _image, reference: float(reference[0]),
    )
    specs = [
        RenderSpec(
            prompt="{subject}",
            seed=s,
            width=256,
            height=256,
            steps=1,
            avatar={"id": a} if a else None,
        )
        for s, a in ((1, "A"), (2, None), (3, "B"))
    ]
    labels = [
        LabelOptions("job-a", "workstation"),
        None,
        LabelOptions("job-c", "workstation", format="JPEG"),
    ]
    batch = labelled.render_batch(specs, labels=labels, reference_embeddings=embeddings)
    assert [r[0].likeness for r in batch] == [0.25, None, 0.75]
    assert [r[0].format for r in batch] == ["PNG", "PNG", "JPEG"]
    for result, label in zip(batch, labels, strict=True):
        if label is None:
            assert Image.open(io.BytesIO(result[0].png_bytes)).info == {}  # no labels
            continue
        report = read_labels(result[0].png_bytes)
        assert report.implicit_label["ProduceID"] == label.job_id
        assert watermark_matches(report, label.job_id)
    [unlabelled] = labelled.render(specs[1])
    assert unlabelled.png_bytes == batch[1][0].png_bytes or (
        int(np.abs(_pixels(unlabelled.png_bytes) - _pixels(batch[1][0].png_bytes)).max()) <= 1
    )


def test_progress_and_cancel_restore_the_pipeline(engine: Engine):
    calls: list[tuple[int, int]] = []
    engine.render_batch(_mixed_specs(), on_progress=lambda *a: calls.append(a))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    base = engine.mode_pipelines().base
    before = loaded_adapter_names(base)
    reference = engine.render(_mixed_specs()[0])[0].png_bytes
    polls = iter([False, False, True])
    with pytest.raises(RenderCanceled):
        engine.render_batch(_mixed_specs(), should_cancel=lambda: next(polls))
    assert loaded_adapter_names(base) == before
    assert engine.render(_mixed_specs()[0])[0].png_bytes == reference
    with pytest.raises(RenderCanceled):
        engine.render_batch(_mixed_specs(), should_cancel=lambda: True)


# ------------------------------------------------------------------------------ avatar pool


def test_batches_use_the_resident_avatar_pool(engine: Engine, avatars, floats):
    """Mixed batches run through the pool: each avatar is copied into a slot once, and a later
    batch with the same avatars copies, loads and unloads nothing."""
    base = engine.mode_pipelines().base
    specs = _mixed_specs()
    engine.render_batch(specs)
    assert engine.last_batch_path == "pool"
    pool = engine.loras.pool(base, create=False)
    assert pool is not None and {"A@r1", "B@r1"} <= set(pool.resident)
    loads, adapters = pool.loads, loaded_adapter_names(base)
    engine.render_batch(specs[::-1])
    assert pool.loads == loads and loaded_adapter_names(base) == adapters


def test_a_full_pool_reuses_its_least_recently_used_slot(
    tiny_registry: ModelRegistry, avatars: dict[str, AvatarLora], floats
):
    from engine.loras import SlotLoraManager

    small = Engine(
        tiny_registry,
        device="cpu",
        avatar_source=avatars.__getitem__,
        lora_manager=SlotLoraManager(pool_slots=2),
    )
    specs = {
        key: RenderSpec(prompt="{subject}", seed=seed, avatar={"id": key})
        for key, seed in (("A", 1), ("B", 2), ("C", 3))
    }
    small.render_batch([specs["A"], specs["B"]])
    pool = small.loras.pool(small.mode_pipelines().base, create=False)
    assert pool.resident == ["A@r1", "B@r1"]
    batch = small.render_batch([specs["C"], specs["B"]])  # A's slot is reused for C
    assert pool.resident == ["C@r1", "B@r1"] and pool.loads == 3
    batch_floats = floats[-1]
    singles, single_floats = _singles(small, [specs["C"], specs["B"]], floats)
    _assert_matches(batch, batch_floats, singles, single_floats)
    # More distinct avatars than slots: the batch loads them per call instead.
    three = small.render_batch(list(specs.values()))
    assert small.last_batch_path == "per_sample_adapters"
    batch_floats = floats[-1]
    singles, single_floats = _singles(small, list(specs.values()), floats)
    _assert_matches(three, batch_floats, singles, single_floats)


def test_without_a_pool_batches_load_adapters_per_call(
    tiny_registry: ModelRegistry, avatars: dict[str, AvatarLora], tmp_path: Path, floats
):
    from engine.loras import SlotLoraManager

    unpooled = Engine(
        tiny_registry,
        device="cpu",
        avatar_source=avatars.__getitem__,
        lora_manager=SlotLoraManager(pool_slots=0),
    )
    style = random_lora_state_dict(unpooled.pipeline().unet, seed=9, rank=2, scale=0.3)
    path = tmp_path / "style.safetensors"
    safetensors.torch.save_file(style, str(path))
    styles = [{"path": str(path), "weight": 0.7}]
    specs = [
        RenderSpec(
            prompt="{subject}", seed=1, avatar={"id": "C", "weight": 0.9}, style_loras=styles
        ),
        RenderSpec(prompt="a person", seed=2, style_loras=styles),
    ]
    batch = unpooled.render_batch(specs)
    assert unpooled.last_batch_path == "per_sample_adapters"
    batch_floats = floats[-1]
    singles, single_floats = _singles(unpooled, specs, floats)
    _assert_matches(batch, batch_floats, singles, single_floats)


def test_the_pool_takes_avatars_in_the_format_training_saves(
    engine: Engine, avatars: dict[str, AvatarLora], floats
):
    """`engine.training` saves ``lora.down`` / ``lora.up`` keys (diffusers format)."""
    renamed = {
        key.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): value
        for key, value in avatars["D"].state_dict.items()
    }
    trained = {"T": AvatarLora("T", renamed, "skst", "r1"), **avatars}
    specs = [
        RenderSpec(prompt="{subject}", seed=1, avatar={"id": "T", "weight": 0.8}),
        RenderSpec(prompt="{subject}", seed=2, avatar={"id": "A"}),
    ]
    batch = engine.render_batch(specs, avatar_source=trained.__getitem__)
    assert engine.last_batch_path == "pool"
    batch_floats = floats[-1]
    singles, single_floats = _singles(engine, specs, floats, avatar_source=trained.__getitem__)
    _assert_matches(batch, batch_floats, singles, single_floats)
