"""Identity adapters (`engine.identity`): IP-Adapter-style "instant identity" from an embedding.

The tiny profile's two adapters (random weights written by build-tiny) are loaded through
diffusers' ``load_ip_adapter`` from the saved files. Float images are captured as in
test_batch_render.py (a `_call` that asks for numpy output and converts like diffusers does).

Tolerance: a sample of a batch equals its solo render within ``ATOL`` = 1e-4 max abs on 0-1
pixel floats (measured: ~1e-6; batched kernels sum in another order), and its PNG within one
level (a value at a .5 boundary can round either way).
"""

from __future__ import annotations

import inspect
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import engine.runtime as runtime
from engine.batching import batch_key
from engine.errors import ConfigError, ModelLoadError, ModelNotFoundError, SpecError
from engine.identity import (
    FACE_EMBEDDING,
    IMAGE_EMBEDS,
    IdentityEmbedding,
    has_identity_adapter,
    load_identity_adapter,
)
from engine.registry import ModelRegistry, ModelSpec
from engine.runtime import Engine
from engine.spec import IdentityRef, RenderSpec

ATOL = 1e-4
STEPS = 3


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _crops(count: int, seed: int = 0) -> list[Image.Image]:
    """Stand-ins for aligned face crops: smooth random colour fields, 96 px."""
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        crops.append(Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC))
    return crops


def _vectors(adapter: str, kind: str, dim: int, count: int) -> dict[str, IdentityEmbedding]:
    rng = np.random.default_rng(7)
    return {
        f"u{i}": IdentityEmbedding(
            f"u{i}", adapter, kind, rng.normal(size=dim).astype(np.float32), revision="r1"
        )
        for i in range(count)
    }


@pytest.fixture(scope="module")
def identities(tiny_registry: ModelRegistry) -> dict[str, IdentityEmbedding]:
    return _vectors("tiny-identity", "image_encoder", 32, 5)


@pytest.fixture(scope="module")
def engine(tiny_registry: ModelRegistry, identities) -> Engine:
    """Its own Engine with the tiny-identity adapter loaded with the pipeline (eager)."""
    return Engine(tiny_registry, device="cpu", identity_source=identities.__getitem__)


@pytest.fixture(scope="module")
def plain(tiny_registry: ModelRegistry) -> Engine:
    """An engine that never loads an identity adapter: the base model."""
    return Engine(tiny_registry, device="cpu", identity_adapters="off")


@pytest.fixture(scope="module")
def faceid_registry(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    config = tmp_path_factory.mktemp("faceid") / "models.json"
    config.write_text(json.dumps({"default_identity": "tiny-faceid"}), encoding="utf-8")
    return ModelRegistry.for_profile("tiny", models_dir=tiny_dir, config_file=config)


@pytest.fixture
def floats(monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, dict]]:
    """Every pipeline call's float images ([N, H, W, 3] in [0, 1]) and its arguments."""
    captured: list[tuple[np.ndarray, dict]] = []

    def call(pipe, **kwargs):
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k in accepted}
        images = pipe(**kwargs, output_type="np").images
        captured.append((images, kwargs))
        return pipe.numpy_to_pil(images)

    monkeypatch.setattr(runtime, "_call", call)
    return captured


def _spec(
    seed: int | None, identity: str | None = None, scale: float = 0.6, **fields
) -> RenderSpec:
    return RenderSpec(
        prompt="a portrait photo",
        seed=seed,
        steps=STEPS,
        identity=IdentityRef(identity, scale) if identity else None,
        **fields,
    )


# ------------------------------------------------------------------------------ registry


def test_tiny_profile_registers_both_adapter_kinds(tiny_registry: ModelRegistry, tiny_dir: Path):
    image = tiny_registry.get("tiny-identity")
    face = tiny_registry.get("tiny-faceid")
    assert (image.kind, image.identity_kind, image.source, image.image_encoder) == (
        "identity_adapter",
        "image_encoder",
        tiny_dir / "identity-tiny",
        "image_encoder",
    )
    assert (face.identity_kind, face.face_encoder, face.image_encoder) == (
        "face_embedding",
        "dlib",
        None,
    )
    assert image.licence and face.licence
    assert tiny_registry.identity_adapter() == image  # image_encoder kind first
    assert tiny_registry.identity_adapter("tiny") == image
    status = tiny_registry.status()
    assert status["tiny-identity"].ready and status["tiny-faceid"].ready
    assert [m.key for m in tiny_registry.models("identity_adapter")] == [
        "tiny-faceid",
        "tiny-identity",
    ]


def test_identity_adapter_readiness_is_its_weight_file(tmp_path: Path):
    (tmp_path / "identity-tiny").mkdir()
    status = ModelRegistry.for_profile("tiny", models_dir=tmp_path).status()
    assert not status["tiny-identity"].ready
    assert "ip-adapter.safetensors" in status["tiny-identity"].detail


def test_config_adds_identity_adapters(tmp_path: Path):
    config = tmp_path / "models.json"
    config.write_text(
        json.dumps(
            {
                "default_identity": "faceid",
                "models": [
                    {
                        "key": "ip-face",
                        "kind": "identity_adapter",
                        "hub_id": "h94/IP-Adapter",
                        "identity_kind": "image_encoder",
                        "weight_name": "models/ip-adapter-plus-face_sd15.safetensors",
                        "image_encoder": "models/image_encoder",
                        "licence": "Apache-2.0",
                    },
                    {
                        "key": "faceid",
                        "kind": "identity_adapter",
                        "path": "faceid",
                        "identity_kind": "face_embedding",
                        "weight_name": "ip-adapter-faceid_sd15.safetensors",
                        "face_encoder": "encoders/arcface.onnx",
                        "licence": "non-commercial research only",
                    },
                    {
                        "key": "xl-face",
                        "kind": "identity_adapter",
                        "family": "sdxl",
                        "path": "xl",
                        "identity_kind": "image_encoder",
                        "weight_name": "ip.safetensors",
                    },
                ],
            }
        ),
        encoding="utf-8",
    )
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)
    hub = registry.get("ip-face")
    assert (hub.source, hub.is_local, hub.licence) == ("h94/IP-Adapter", False, "Apache-2.0")
    assert hub.image_encoder == "models/image_encoder" and hub.face_encoder is None
    face = registry.get("faceid")
    assert face.face_encoder == str(tmp_path / "encoders/arcface.onnx")
    assert face.source == tmp_path / "faceid" and face.image_encoder is None
    assert registry.default_identity == "faceid"
    assert registry.identity_adapter() == face  # default_identity wins in its family
    assert registry.get("xl-face").image_encoder == "image_encoder"  # the default folder


def test_default_identity_of_another_family_is_not_used(tmp_path: Path):
    config = tmp_path / "models.json"
    config.write_text(
        json.dumps(
            {
                "default_identity": "xl",
                "models": [
                    {
                        "key": "xl",
                        "kind": "identity_adapter",
                        "family": "sdxl",
                        "path": "xl",
                        "identity_kind": "face_embedding",
                        "weight_name": "w.safetensors",
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)
    assert registry.identity_adapter().key == "tiny-identity"
    assert ModelRegistry.for_profile("sdxl-random", models_dir=tmp_path).identity_adapter() is None


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"kind": "identity_adapter", "weight_name": "w"}, "identity_kind"),
        ({"kind": "identity_adapter", "identity_kind": "image_encoder"}, "weight_name"),
        ({"kind": "identity_adapter", "identity_kind": "voice", "weight_name": "w"}, "voice"),
        ({"kind": "base", "identity_kind": "image_encoder"}, "only for identity adapters"),
        ({"kind": "controlnet", "controlnet_kind": "pose", "weight_name": "w"}, "only for"),
        (
            {
                "kind": "identity_adapter",
                "identity_kind": "face_embedding",
                "weight_name": "w",
                "image_encoder": "enc",
            },
            "image_encoder kind",
        ),
        (
            {
                "kind": "identity_adapter",
                "identity_kind": "image_encoder",
                "weight_name": "w",
                "face_encoder": "dlib",
            },
            "face_embedding kind",
        ),
        ({"kind": "lora", "licence": 3}, "licence"),
    ],
)
def test_invalid_identity_adapter_entries(tmp_path: Path, entry: dict, match: str):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"models": [{"key": "x", "path": "x", **entry}]}), "utf-8")
    with pytest.raises(ConfigError, match=match):
        ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)


def test_unknown_default_identity(tmp_path: Path):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"default_identity": "tiny"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="default identity"):
        ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)


# ------------------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("key", "projection", "shape"),
    [("tiny-identity", IMAGE_EMBEDS, (32,)), ("tiny-faceid", FACE_EMBEDDING, (128,))],
)
def test_both_kinds_load_through_load_ip_adapter(
    tiny_registry: ModelRegistry, tiny_pipeline, key: str, projection: str, shape: tuple
):
    from diffusers.models.embeddings import ImageProjection, IPAdapterFaceIDImageProjection

    calls = []
    real = tiny_pipeline.load_ip_adapter

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    tiny_pipeline.load_ip_adapter = spy
    assert not has_identity_adapter(tiny_pipeline.unet)
    loaded = load_identity_adapter(tiny_pipeline, tiny_registry.get(key))
    model = tiny_registry.get(key)
    [(args, kwargs)] = calls
    assert args == (str(model.source),)
    assert kwargs["weight_name"] == model.weight_name and kwargs["subfolder"] == ""
    assert kwargs["local_files_only"] is True
    assert has_identity_adapter(tiny_pipeline.unet)
    assert (loaded.key, loaded.projection, loaded.shape, loaded.scale) == (
        key,
        projection,
        shape,
        0,
    )
    layer = tiny_pipeline.unet.encoder_hid_proj.image_projection_layers[0]
    if key == "tiny-identity":
        assert kwargs["image_encoder_folder"] == "image_encoder"
        assert isinstance(layer, ImageProjection)
        assert type(tiny_pipeline.image_encoder).__name__ == "CLIPVisionModelWithProjection"
        assert loaded.image_encoder is tiny_pipeline.image_encoder
    else:
        assert kwargs["image_encoder_folder"] is None
        assert isinstance(layer, IPAdapterFaceIDImageProjection)
        assert loaded.image_encoder is None
    # The random adapter really has weights (no zero layer left to make it a no-op).
    ip_weights = [p for n, p in tiny_pipeline.unet.named_parameters() if "_ip." in n]
    assert ip_weights and all(float(p.detach().abs().sum()) > 0 for p in ip_weights)


def test_a_kind_that_does_not_match_the_weights_is_refused(tiny_dir: Path, tiny_pipeline):
    wrong = ModelSpec(
        "wrong",
        "identity_adapter",
        "sd15",
        tiny_dir / "faceid-tiny",
        identity_kind="image_encoder",
        weight_name="ip-adapter-faceid.safetensors",
    )
    with pytest.raises(ModelLoadError, match="face embedding"):
        load_identity_adapter(tiny_pipeline, wrong)
    assert not has_identity_adapter(tiny_pipeline.unet)  # refused before loading anything
    missing = ModelSpec(
        "missing",
        "identity_adapter",
        "sd15",
        tiny_dir / "nowhere",
        identity_kind="face_embedding",
        weight_name="w.safetensors",
    )
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_identity_adapter(tiny_pipeline, missing)


def test_missing_adapter_files_do_not_break_base_renders(tiny_dir: Path, tmp_path: Path):
    """An older models dir without the adapters: the base still renders; identities fail."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("sd-tiny", "controlnet-tiny"):
        (models / name).symlink_to(tiny_dir / name)
    registry = ModelRegistry.for_profile("tiny", models_dir=models)
    identity = _vectors("tiny-identity", "image_encoder", 32, 1)["u0"]
    engine = Engine(registry, device="cpu", identity_source=lambda _id: identity)
    assert engine.render(_spec(1))[0].png_bytes
    assert engine.identity_adapter() is None
    with pytest.raises(ModelLoadError, match="does not exist"):
        engine.render(_spec(1, "u0"))


# ------------------------------------------------------------------------------ build_identity


def test_build_identity_image_kind_averages_clip_embeddings(engine: Engine):
    crops = _crops(20)
    engine.build_identity(crops[:1])  # first use: nothing left to load afterwards
    key, kind, vector = engine.build_identity(crops)
    assert (key, kind, vector.dtype, vector.shape) == (
        "tiny-identity",
        "image_encoder",
        np.float32,
        (32,),
    )
    singles = [engine.build_identity([crop])[2] for crop in crops[:3]]
    mean = engine.build_identity(crops[:3])[2]
    np.testing.assert_allclose(mean, np.mean(singles, axis=0), atol=1e-5)
    assert np.array_equal(engine.build_identity(crops)[2], vector)  # deterministic
    assert float(np.abs(singles[0] - singles[1]).max()) > 1e-3  # photos matter
    with pytest.raises(SpecError, match="photo"):
        engine.build_identity([])


def test_build_identity_face_kind_takes_the_mean_dlib_embedding(faceid_registry: ModelRegistry):
    faceid = Engine(faceid_registry, device="cpu")
    rng = np.random.default_rng(3)
    embeddings = [rng.normal(size=128).astype(np.float32) * 0.09 for _ in range(5)]
    key, kind, vector = faceid.build_identity([], face_embeddings=embeddings)
    assert (key, kind, vector.shape, vector.dtype) == (
        "tiny-faceid",
        "face_embedding",
        (128,),
        np.float32,
    )
    np.testing.assert_allclose(vector, np.mean(embeddings, axis=0), atol=1e-7)
    with pytest.raises(SpecError, match="face"):
        faceid.build_identity([], face_embeddings=[])
    with pytest.raises(SpecError):
        faceid.build_identity([], face_embeddings=[np.zeros(128), np.zeros(64)])
    # Without given embeddings the crops go through engine.faces (dlib): no face, no identity.
    with pytest.raises(SpecError, match="no face"):
        faceid.build_identity([Image.new("RGB", (128, 128), (90, 90, 90))])
    assert "tiny" not in faceid.cache  # the face kind needs no pipeline


def test_build_identity_with_an_onnx_encoder_needs_onnxruntime(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = tmp_path / "arcface.onnx"
    model.write_bytes(b"not a model")
    config = tmp_path / "models.json"
    entry = {
        "key": "onnx-face",
        "kind": "identity_adapter",
        "path": str(tiny_dir / "faceid-tiny"),
        "identity_kind": "face_embedding",
        "weight_name": "ip-adapter-faceid.safetensors",
        "face_encoder": str(model),
    }
    config.write_text(json.dumps({"models": [entry], "default_identity": "onnx-face"}), "utf-8")
    registry = ModelRegistry.for_profile("tiny", models_dir=tiny_dir, config_file=config)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ModelLoadError, match="onnxruntime"):
        Engine(registry, device="cpu").build_identity(_crops(2))


def test_build_identity_without_an_adapter_for_the_base(tmp_path: Path):
    registry = ModelRegistry.for_profile("sdxl-random", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="identity adapter"):
        Engine(registry, device="cpu").build_identity(_crops(1))


# ------------------------------------------------------------------------------ rendering


def test_no_identity_and_scale_zero_equal_the_base_model(engine: Engine, plain: Engine):
    assert engine.identity_adapter() is not None and plain.identity_adapter() is None
    assert not has_identity_adapter(plain.pipeline().unet)
    base = plain.render(_spec(4))[0].png_bytes
    assert engine.render(_spec(4))[0].png_bytes == base
    assert engine.render(_spec(4, "u0", scale=0.0))[0].png_bytes == base

    # A direct pipeline call that knows nothing of the adapter is the base model too.
    def direct(pipe):
        return pipe(
            prompt="a",
            num_inference_steps=2,
            width=64,
            height=64,
            output_type="np",
            generator=torch.Generator().manual_seed(1),
        ).images

    assert np.array_equal(direct(engine.pipeline()), direct(plain.pipeline()))


def test_identities_change_the_image(engine: Engine, plain: Engine):
    base = _pixels(plain.render(_spec(5))[0].png_bytes)
    first = _pixels(engine.render(_spec(5, "u0"))[0].png_bytes)
    second = _pixels(engine.render(_spec(5, "u1"))[0].png_bytes)
    stronger = _pixels(engine.render(_spec(5, "u0", scale=1.2))[0].png_bytes)
    assert int(np.abs(first - base).max()) > 10
    assert int(np.abs(first - second).max()) > 10
    assert int(np.abs(first - stronger).max()) > 10
    assert engine.identity_adapter().scale == 0.0  # back to idle after each render
    assert engine.render(_spec(5))[0].png_bytes == plain.render(_spec(5))[0].png_bytes


def test_face_embedding_identity_renders(faceid_registry: ModelRegistry, plain: Engine):
    faceid = Engine(faceid_registry, device="cpu")
    ids = _vectors("tiny-faceid", "face_embedding", 128, 2)
    base = _pixels(plain.render(_spec(6))[0].png_bytes)
    one = _pixels(faceid.render(_spec(6, "u0"), identity_source=ids.__getitem__)[0].png_bytes)
    two = _pixels(faceid.render(_spec(6, "u1"), identity_source=ids.__getitem__)[0].png_bytes)
    assert int(np.abs(one - base).max()) > 10 and int(np.abs(one - two).max()) > 10
    assert _pixels(faceid.render(_spec(6))[0].png_bytes).tolist() == base.tolist()


def test_an_identity_for_another_adapter_is_a_spec_error(engine: Engine, identities):
    stale = IdentityEmbedding("old", "tiny-faceid", "face_embedding", np.zeros(128, np.float32))
    source = {**identities, "old": stale}.__getitem__
    with pytest.raises(SpecError) as info:
        engine.render(_spec(1, "old"), identity_source=source)
    assert info.value.field == "identity"
    assert (
        "made for adapter 'tiny-faceid'" in info.value.message and "rebuild" in info.value.message
    )
    with pytest.raises(SpecError) as info:
        engine.render_batch([_spec(1, "u0"), _spec(2, "old")], identity_source=source)
    assert info.value.field == "specs.1.identity"
    short = IdentityEmbedding("short", "tiny-identity", "image_encoder", np.zeros(8, np.float32))
    with pytest.raises(SpecError, match="8 values"):
        engine.render(_spec(1, "short"), identity_source=lambda _id: short)
    with pytest.raises(SpecError, match="identity source"):
        Engine(engine.registry, device="cpu").render(_spec(1, "u0"))


def test_identity_and_avatar_together_and_every_mode_carries_it(
    engine: Engine, floats, monkeypatch: pytest.MonkeyPatch
):
    """img2img + ControlNet + face pass with an avatar LoRA and an identity: every pipeline
    call gets one identity row per image (negatives first) and the identity changes it."""
    from engine.loras import AvatarLora, random_lora_state_dict

    box = type("Box", (), {"left": 16, "top": 16, "right": 48, "bottom": 48})()
    monkeypatch.setattr(engine, "_face_detector", lambda _image: box)
    avatar = AvatarLora(
        "a", random_lora_state_dict(engine.pipeline().unet, seed=3, scale=0.2), "sks"
    )
    pose = Image.new("RGB", (64, 64))
    pose.paste((255, 255, 255), (20, 8, 32, 56))
    fields = dict(
        avatar={"id": "a"},
        num_images=2,
        reference={"image": Image.new("RGB", (64, 64), (120, 90, 60)), "strength": 0.7},
        controls=[{"kind": "pose", "image": pose}],
        face_refine={"strength": 0.7},
    )
    with_identity = engine.render(_spec(8, "u2", **fields), avatar_source=lambda _id: avatar)
    calls = floats[:]
    assert len(calls) == 2  # the img2img+ControlNet pass, then the face pass
    for images, kwargs in calls:
        [embeds] = kwargs["ip_adapter_image_embeds"]
        assert embeds.shape == (2 * len(images), 1, 32)
        assert float(embeds[: len(images)].abs().sum()) == 0  # the guidance negatives
        assert float(embeds[len(images) :].abs().sum()) > 0
    without = engine.render(_spec(8, None, **fields), avatar_source=lambda _id: avatar)
    for got, other in zip(with_identity, without, strict=True):
        assert got.png_bytes != other.png_bytes


# ------------------------------------------------------------------------------ batches


def test_batch_key_separates_identity_presence_and_scale():
    plain_key = batch_key(_spec(1))
    assert batch_key(_spec(2, "u0")) == batch_key(_spec(3, "u1")) != plain_key
    assert batch_key(_spec(2, "u0", scale=0.8)) != batch_key(_spec(2, "u0"))
    assert batch_key(_spec(1, num_images=3, keep=1)) == plain_key  # candidates batch now


def test_four_identities_in_one_batch_equal_their_solo_renders(engine: Engine, floats):
    from engine.loras import AvatarLora, random_lora_state_dict

    # An avatar render first: the LoRA it leaves active must not reach the batch.
    unet = engine.pipeline().unet
    avatar = AvatarLora("z", random_lora_state_dict(unet, seed=9, scale=0.3), "sksz")
    engine.render(_spec(1, avatar={"id": "z"}), avatar_source=lambda _id: avatar)
    specs = [_spec(10 + i, f"u{i}") for i in range(4)]
    floats.clear()
    batch = engine.render_batch(specs)
    assert engine.last_batch_path == "base"  # no LoRA in this batch
    assert len(floats) == 1 and floats[0][0].shape[0] == 4  # one forward pass for all four
    batch_floats = floats[0][0]
    for i, spec in enumerate(specs):
        [solo] = engine.render(spec)
        assert float(np.abs(batch_floats[i] - floats[-1][0][0]).max()) <= ATOL, i
        assert int(np.abs(_pixels(batch[i][0].png_bytes) - _pixels(solo.png_bytes)).max()) <= 1
    distinct = {batch[i][0].png_bytes for i in range(4)}
    assert len(distinct) == 4


def test_batches_of_several_candidates_equal_their_solo_renders(
    tiny_registry: ModelRegistry, identities, floats
):
    """Every candidate is a sample; max_batch splits the samples across specs; each spec is
    ranked and kept as its own render (a deterministic stand-in scorer: mean brightness)."""
    ranked = Engine(
        tiny_registry,
        device="cpu",
        identity_source=identities.__getitem__,
        max_batch=3,
        likeness_scorer=lambda image, _reference: float(np.asarray(image).mean()),
    )
    reference = np.zeros(128, np.float32)
    specs = [
        _spec(20, "u0", num_images=3, keep=2),
        _spec(None, "u1", seeds=(31, 7)),
        _spec(None, "u2", seeds=(41, 42, 43), keep=1),
    ]
    batch = ranked.render_batch(specs, reference_embeddings=[reference, None, reference])
    assert [len(f[0]) for f in floats] == [3, 3, 2]  # 8 samples, at most max_batch per call
    batch_floats = np.concatenate([f[0] for f in floats])
    calls = len(floats)
    offset = 0
    for spec, got, ref in zip(specs, batch, [reference, None, reference], strict=True):
        solo = ranked.render(spec, reference_embedding=ref)
        solo_floats = np.concatenate([f[0] for f in floats[calls:]])
        calls = len(floats)
        count = spec.num_candidates
        diff = np.abs(batch_floats[offset : offset + count] - solo_floats).max()
        assert float(diff) <= ATOL
        offset += count
        assert [(r.seed, r.candidate) for r in got] == [(r.seed, r.candidate) for r in solo]
        assert len(got) == spec.num_kept
        for a, b in zip(got, solo, strict=True):
            assert int(np.abs(_pixels(a.png_bytes) - _pixels(b.png_bytes)).max()) <= 1
    assert [r.seed for r in batch[1]] == [31, 7]  # unranked: seed order


def test_identity_batch_with_avatars_uses_the_pool(engine: Engine, floats):
    from engine.loras import AvatarLora, random_lora_state_dict

    unet = engine.pipeline().unet
    avatars = {
        k: AvatarLora(k, random_lora_state_dict(unet, seed=s, scale=0.2), f"sks{k}", "1")
        for k, s in (("A", 1), ("B", 2))
    }
    specs = [
        _spec(50, "u0", avatar={"id": "A"}, num_images=2),  # both
        _spec(51, "u1"),  # identity only
        _spec(52, "u2", avatar={"id": "B", "weight": 0.8}),
    ]
    batch = engine.render_batch(specs, avatar_source=avatars.__getitem__)
    assert engine.last_batch_path == "pool"
    batch_floats = floats[-1][0]
    assert batch_floats.shape[0] == 4
    offset = 0
    for spec, got in zip(specs, batch, strict=True):
        solo = engine.render(spec, avatar_source=avatars.__getitem__)
        count = spec.num_candidates
        diff = np.abs(batch_floats[offset : offset + count] - floats[-1][0]).max()
        assert float(diff) <= ATOL
        offset += count
        for a, b in zip(got, solo, strict=True):
            assert int(np.abs(_pixels(a.png_bytes) - _pixels(b.png_bytes)).max()) <= 1


# ------------------------------------------------------------------------------ training


def test_training_on_a_pipeline_with_an_identity_adapter_trains_the_base(
    engine: Engine, tiny_pipeline, synthetic_photos
):
    from engine.training import TrainingConfig, train_avatar_lora

    config = TrainingConfig(resolution=64, steps=2, batch_size=2, learning_rate=1e-3, seed=0)
    assert has_identity_adapter(engine.pipeline().unet)
    with_adapter = train_avatar_lora(
        pipeline=engine.pipeline(), photos=synthetic_photos, config=config
    )
    plain = train_avatar_lora(pipeline=tiny_pipeline, photos=synthetic_photos, config=config)
    assert with_adapter.state_dict.keys() == plain.state_dict.keys()
    for key, value in plain.state_dict.items():
        torch.testing.assert_close(with_adapter.state_dict[key], value, atol=1e-6, rtol=0)
    assert has_identity_adapter(engine.pipeline().unet)  # the engine's UNet kept its adapter


def test_hub_adapters_are_read_from_the_local_cache(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A hub adapter is ready when its weight file is in a cached snapshot (a nested
    ``weight_name`` like h94/IP-Adapter's ``models/...``); its format is read from there."""
    import shutil

    from engine.identity import _weight_keys, projection_kind

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    spec = ModelSpec(
        "hub-face",
        "identity_adapter",
        "sd15",
        "org/ip-adapter",
        identity_kind="face_embedding",
        weight_name="models/faceid.safetensors",
    )
    registry = ModelRegistry(
        [spec, ModelSpec("b", "base", "sd15", tmp_path)], default_base="b", origin="t"
    )
    assert not registry.status_of("hub-face").ready
    assert _weight_keys(spec) is None  # not cached: diffusers decides
    target = cache / "models--org--ip-adapter" / "snapshots" / "abc123" / "models"
    target.mkdir(parents=True)
    shutil.copy(
        tiny_dir / "faceid-tiny" / "ip-adapter-faceid.safetensors", target / "faceid.safetensors"
    )
    assert registry.status_of("hub-face").ready
    keys = _weight_keys(spec)
    assert keys is not None and projection_kind(keys) == FACE_EMBEDDING


def test_projection_kind_from_weight_keys():
    from engine.identity import HIDDEN_STATES, projection_kind

    attention = ["ip_adapter.1.to_k_ip.weight", "ip_adapter.1.to_v_ip.weight"]
    assert projection_kind(["image_proj.proj.weight", *attention]) == IMAGE_EMBEDS
    assert projection_kind(["image_proj.proj.3.weight", *attention]) == HIDDEN_STATES  # full
    assert projection_kind(["image_proj.latents", "image_proj.norm_out.weight"]) == HIDDEN_STATES
    assert projection_kind(["image_proj.proj.0.weight", "image_proj.norm.weight"]) == FACE_EMBEDDING
    with pytest.raises(ModelLoadError, match="FaceID-Plus"):
        projection_kind(["image_proj.perceiver_resampler.proj_in.weight", "image_proj.norm.weight"])
    with pytest.raises(ModelLoadError, match="LoRA"):
        projection_kind(["image_proj.norm.weight", "ip_adapter.1.to_k_lora.down.weight"])
    with pytest.raises(ModelLoadError, match="image_proj"):
        projection_kind(attention)
