"""Tuning-free identity adapters: a user's likeness from an embedding, no training.

An *identity adapter* is an IP-Adapter-style module (decoupled cross-attention: extra key/value
projections fed by a few tokens projected from an embedding) loaded into a base pipeline's
UNet with diffusers' own ``load_ip_adapter``. The identity itself is an input tensor, not
weights: many users' identities share one batch, one per sample, with no adapter swap. See
docs/identity-adapters.md for the weights, their licences and how to configure them.

Two kinds (`engine.registry.ModelSpec.identity_kind`):

- ``image_encoder``: the aligned face crops are encoded with the adapter's CLIP vision encoder
  (loaded with the adapter) and the image embeddings averaged. Standard IP-Adapters
  (``ImageProjection``) take the projected image embedding (``[D]``); "plus" / "full" ones
  take the penultimate hidden states, stored flattened (``[tokens * hidden]``).
- ``face_embedding``: IP-Adapter-FaceID; the mean face-recognition embedding of the crops:
  dlib's 128-d embedding (``face_encoder="dlib"``, what ships offline) or an ONNX model run
  with onnxruntime (e.g. an ArcFace; mind its licence).

An `IdentityEmbedding` records the adapter it was made for; a render refuses an identity made
for another adapter (the vector means nothing to it). Renders pass precomputed embeddings
(``ip_adapter_image_embeds``; the classifier-free-guidance negative is zeros, or for
hidden-state adapters the encoder's output for a zero image, as diffusers makes them) and the
adapter scale (``set_ip_adapter_scale``, one per pipeline call). A render without an identity
runs at scale 0 with zero embeddings, which diffusers skips exactly: the base model's output.

Privacy: a face embedding is biometric data. This module computes and returns vectors; it never
writes one anywhere. Storing them is the caller's decision.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ModelLoadError, SpecError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from engine.registry import ModelSpec

logger = logging.getLogger(__name__)

IDENTITY_KINDS = ("image_encoder", "face_embedding")
# What the adapter's projection takes (detected from its weights).
IMAGE_EMBEDS = "image_embeds"  # ImageProjection: the CLIP image embedding
HIDDEN_STATES = "hidden_states"  # plus / full-face: CLIP's penultimate hidden states
FACE_EMBEDDING = "face_embedding"  # FaceID: a face-recognition embedding
# CLIP's preprocessing defaults (OpenAI CLIP; also what IP-Adapter's encoders use).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ENCODE_BATCH = 32
ONNX_INPUT_SIZE = 112  # ArcFace-style models, when the input shape is not fixed
_SHAPE_ATTRIBUTE = "_engine_identity_input_shape"  # set on a UNet with an adapter loaded


@dataclass(frozen=True)
class IdentityEmbedding:
    """A user's identity for one identity adapter: ``vector`` (float32, ``[D]``) made by
    `engine.runtime.Engine.build_identity` for the adapter with registry key ``adapter``.
    ``revision`` changes when the identity is rebuilt (e.g. new photos)."""

    avatar_id: str
    adapter: str
    kind: str
    vector: np.ndarray = field(repr=False)
    revision: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.avatar_id, str) or not self.avatar_id:
            raise SpecError("identity.avatar_id", "must be a non-empty string")
        if not isinstance(self.adapter, str) or not self.adapter:
            raise SpecError("identity.adapter", "must be a registry key")
        if self.kind not in IDENTITY_KINDS:
            raise SpecError("identity.kind", f"must be one of {list(IDENTITY_KINDS)}")
        vector = np.asarray(self.vector, dtype=np.float32)
        if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
            raise SpecError("identity.vector", "must be a non-empty 1-d vector of finite numbers")
        object.__setattr__(self, "vector", vector)


# avatar id -> its identity (raise engine.errors.ModelNotFoundError if it has none)
IdentitySource = Callable[[str], IdentityEmbedding]


@dataclass
class LoadedIdentityAdapter:
    """An identity adapter loaded into one base pipeline (see `load_identity_adapter`)."""

    model: ModelSpec
    projection: str  # IMAGE_EMBEDS | HIDDEN_STATES | FACE_EMBEDDING
    shape: tuple[int, ...]  # one identity's input to the projection
    negative: torch.Tensor = field(repr=False)  # [1, 1, *shape] on the UNet's device
    unet: Any = field(repr=False)
    image_encoder: Any | None = field(default=None, repr=False)
    preprocess: dict[str, Any] = field(default_factory=dict)
    scale: float = 0.0  # what the pipeline's IP-Adapter layers are set to now

    @property
    def key(self) -> str:
        return self.model.key

    @property
    def kind(self) -> str:
        assert self.model.identity_kind is not None
        return self.model.identity_kind

    @property
    def dim(self) -> int:
        return math.prod(self.shape)


# ------------------------------------------------------------------------------ loading


def _weight_keys(model: ModelSpec) -> list[str] | None:
    """The keys of the adapter's weights file (``image_proj.*`` / ``ip_adapter.*``), or None
    when the file is not on this machine (a hub model not cached: diffusers then decides)."""
    assert model.weight_name is not None
    if model.is_local:
        path: Path | None = Path(model.source) / model.weight_name
    else:
        from engine.registry import hf_hub_cache_dir

        repo = hf_hub_cache_dir() / ("models--" + str(model.source).replace("/", "--"))
        snapshots = sorted((repo / "snapshots").glob(f"*/{model.weight_name}"))
        path = snapshots[-1] if snapshots else None
    if path is None or not path.is_file():
        return None
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return [f"{part}.{key}" for part, values in state.items() for key in values]


def projection_kind(keys: Sequence[str]) -> str:
    """Which input an IP-Adapter's image projection takes, from its weight keys (the formats
    diffusers' loader knows). Raises `ModelLoadError` for FaceID-Plus (it needs a face
    embedding *and* CLIP hidden states) and for weights with a FaceID LoRA part."""
    proj = {key.removeprefix("image_proj.") for key in keys if key.startswith("image_proj.")}
    if any("lora" in key for key in keys if key.startswith("ip_adapter.")):
        raise ModelLoadError(
            "the weights include IP-Adapter-FaceID's LoRA part, which the engine does not load "
            "(it would take the avatar LoRA layers); save the weights without the "
            "'ip_adapter.*lora*' keys"
        )
    if not proj:
        raise ModelLoadError("the weights have no 'image_proj.*' keys (not an IP-Adapter)")
    if "proj.weight" in proj:
        return IMAGE_EMBEDS
    if "proj.3.weight" in proj:
        return HIDDEN_STATES  # full-face
    if "perceiver_resampler.proj_in.weight" in proj:
        raise ModelLoadError("IP-Adapter-FaceID-Plus weights are not supported")
    if "norm.weight" in proj:
        return FACE_EMBEDDING
    return HIDDEN_STATES  # plus (a resampler over the hidden states)


def _check_kind(model: ModelSpec, projection: str) -> None:
    wanted = FACE_EMBEDDING if model.identity_kind == "face_embedding" else None
    if (wanted is None) == (projection == FACE_EMBEDDING):
        raise ModelLoadError(
            f"identity adapter {model.key!r} is registered as {model.identity_kind!r} but its "
            f"weights take {projection.replace('_', ' ')}"
        )


def _ip_layers(unet: Any) -> list[Any]:
    from diffusers.models.attention_processor import (
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    kinds = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)
    return [p for p in unet.attn_processors.values() if isinstance(p, kinds)]


def has_identity_adapter(unet: Any) -> bool:
    """True when an IP-Adapter is loaded in ``unet`` (its projection feeds cross-attention)."""
    unet = getattr(unet, "_orig_mod", unet)
    return (
        getattr(unet, "encoder_hid_proj", None) is not None
        and getattr(unet.config, "encoder_hid_dim_type", None) == "ip_image_proj"
    )


def _input_shape(adapter_layer: Any, projection: str, image_encoder: Any | None) -> tuple[int, ...]:
    from diffusers.models.embeddings import (
        ImageProjection,
        IPAdapterFaceIDImageProjection,
    )

    if projection == IMAGE_EMBEDS:
        assert isinstance(adapter_layer, ImageProjection)
        return (int(adapter_layer.image_embeds.in_features),)
    if projection == FACE_EMBEDDING:
        assert isinstance(adapter_layer, IPAdapterFaceIDImageProjection)
        return (int(adapter_layer.ff.net[0].proj.in_features),)
    if image_encoder is None:
        raise ModelLoadError("this adapter takes CLIP hidden states: it needs its image encoder")
    config = image_encoder.config
    tokens = (int(config.image_size) // int(config.patch_size)) ** 2 + 1
    return (tokens, int(config.hidden_size))


def _preprocess_config(model: ModelSpec, image_encoder: Any) -> dict[str, Any]:
    """CLIP preprocessing for the encoder: its folder's ``preprocessor_config.json`` where the
    folder is local, else CLIP's defaults at the encoder's image size."""
    size = int(image_encoder.config.image_size)
    settings: dict[str, Any] = {"size": size, "crop": size, "mean": CLIP_MEAN, "std": CLIP_STD}
    if model.is_local and model.image_encoder is not None:
        path = Path(model.source) / model.image_encoder / "preprocessor_config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return settings
        shortest = data.get("size", {})
        crop = data.get("crop_size", {})
        settings.update(
            size=int(shortest.get("shortest_edge", size) if isinstance(shortest, dict) else size),
            crop=int(crop.get("height", size) if isinstance(crop, dict) else crop),
            mean=tuple(data.get("image_mean", CLIP_MEAN)),
            std=tuple(data.get("image_std", CLIP_STD)),
        )
    return settings


def _fill_missing_image_embeds(shape: tuple[int, ...]) -> Callable[..., Any]:
    """A UNet forward pre-hook: a call without ``image_embeds`` (a caller that knows nothing
    of the adapter, e.g. a benchmark calling the pipeline directly) gets zero embeddings. With
    the adapter at scale 0, its idle state, that call is exactly the base model's."""

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not has_identity_adapter(module):
            return None
        added = kwargs.get("added_cond_kwargs") or {}
        if "image_embeds" in added:
            return None
        sample = args[0] if args else kwargs["sample"]
        import torch

        zeros = torch.zeros((sample.shape[0], 1, *shape), device=sample.device, dtype=sample.dtype)
        return args, {**kwargs, "added_cond_kwargs": {**added, "image_embeds": [zeros]}}

    return hook


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """diffusers and transformers warn at every IP-Adapter load about what the engine does on
    purpose (no image encoder for FaceID, precomputed embeddings, a feature extractor made
    without torchvision); keep their errors only."""
    import diffusers
    import transformers

    levels = (diffusers.utils.logging.get_verbosity(), transformers.logging.get_verbosity())
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(levels[0])
        transformers.logging.set_verbosity(levels[1])


def load_identity_adapter(pipeline: Any, model: ModelSpec) -> LoadedIdentityAdapter:
    """Load ``model`` into ``pipeline`` with its own ``load_ip_adapter`` (from the saved files;
    the CLIP image encoder too for the image_encoder kind) and leave it at scale 0.

    Raises `ModelLoadError` when the files are missing or do not match the registered kind.
    Loads into the UNet shared by every mode pipeline (`engine.pipelines.ModePipelines`).
    """
    if model.kind != "identity_adapter":
        raise ModelLoadError(f"model {model.key!r} is a {model.kind}, not an identity adapter")
    from engine.adapters import unet_qkv_fused

    if unet_qkv_fused(pipeline):
        raise ModelLoadError(
            f"cannot load identity adapter {model.key!r}: the UNet's attention is fused "
            "(fuse_qkv_projections); serve identities from an unfused UNet"
        )
    if has_identity_adapter(pipeline.unet):
        raise ModelLoadError("the pipeline already has an IP-Adapter loaded")
    if model.is_local and not (Path(model.source) / str(model.weight_name)).is_file():
        raise ModelLoadError(
            f"identity adapter {model.key!r}: {Path(model.source) / str(model.weight_name)} "
            "does not exist (for the tiny profile run `python -m engine build-tiny DIR`)"
        )
    keys = _weight_keys(model)
    projection = projection_kind(keys) if keys is not None else None
    if projection is not None:
        _check_kind(model, projection)
    image_encoder_folder = model.image_encoder if model.identity_kind == "image_encoder" else None
    try:
        with _quiet_loading():
            pipeline.load_ip_adapter(
                str(model.source),
                subfolder="",
                weight_name=model.weight_name,
                image_encoder_folder=image_encoder_folder,
                local_files_only=model.is_local,
            )
    except Exception as exc:  # diffusers raises many types; keep the cause
        raise ModelLoadError(
            f"cannot load identity adapter {model.key!r} from {model.source}: {exc}"
        ) from exc
    unet = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
    layer = unet.encoder_hid_proj.image_projection_layers[0]
    if projection is None:
        from diffusers.models.embeddings import ImageProjection, IPAdapterFaceIDImageProjection

        if isinstance(layer, ImageProjection):
            projection = IMAGE_EMBEDS
        elif isinstance(layer, IPAdapterFaceIDImageProjection):
            projection = FACE_EMBEDDING
        else:
            projection = HIDDEN_STATES
        _check_kind(model, projection)
    image_encoder = getattr(pipeline, "image_encoder", None) if image_encoder_folder else None
    if image_encoder_folder and image_encoder is None:
        raise ModelLoadError(f"identity adapter {model.key!r}: its image encoder did not load")
    shape = _input_shape(layer, projection, image_encoder)
    pipeline.set_ip_adapter_scale(0.0)
    import torch

    weight = next(unet.parameters())
    negative = torch.zeros((1, 1, *shape), device=weight.device, dtype=weight.dtype)
    preprocess: dict[str, Any] = {}
    if image_encoder is not None:
        image_encoder.requires_grad_(False)
        preprocess = _preprocess_config(model, image_encoder)
        if projection == HIDDEN_STATES:
            # diffusers' negative for hidden-state adapters: the encoder's view of a zero image
            crop = preprocess["crop"]
            param = next(image_encoder.parameters())
            zeros = torch.zeros((1, 3, crop, crop), device=param.device, dtype=param.dtype)
            with torch.no_grad():
                hidden = image_encoder(zeros, output_hidden_states=True).hidden_states[-2]
            negative = hidden.to(device=weight.device, dtype=weight.dtype)[:, None]
    unet.register_forward_pre_hook(_fill_missing_image_embeds(shape), with_kwargs=True)
    setattr(unet, _SHAPE_ATTRIBUTE, shape)
    logger.info("identity adapter %s loaded (%s, input %s)", model.key, projection, shape)
    return LoadedIdentityAdapter(
        model=model,
        projection=projection,
        shape=shape,
        negative=negative,
        unet=unet,
        image_encoder=image_encoder,
        preprocess=preprocess,
    )


def zero_image_embeds(unet: Any, rows: int, *, device: Any, dtype: Any) -> list[torch.Tensor]:
    """Zero ``image_embeds`` for a direct UNet call of ``rows`` rows (``added_cond_kwargs``)
    when an identity adapter is loaded (at scale 0 the call is then the base model's); []
    without one. For ``unet.forward`` calls, which bypass the adapter's forward pre-hook."""
    import torch

    unet = getattr(unet, "_orig_mod", unet)
    shape = getattr(unet, _SHAPE_ATTRIBUTE, None)
    if shape is None or not has_identity_adapter(unet):
        return []
    return [torch.zeros((rows, 1, *shape), device=device, dtype=dtype)]


def strip_identity_adapter(unet: Any) -> None:
    """Make ``unet`` (a training copy) the plain base UNet again: no image projection and
    the plain SDPA attention processors where the IP-Adapter ones were. In place."""
    if not has_identity_adapter(unet):
        return
    from diffusers.models.attention_processor import AttnProcessor2_0

    ip_layers = {id(p) for p in _ip_layers(unet)}
    processors = {
        name: AttnProcessor2_0() if id(processor) in ip_layers else processor
        for name, processor in unet.attn_processors.items()
    }
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = None
    unet.config.encoder_hid_dim_type = None  # diffusers' unload_ip_adapter does the same


def set_scale(pipeline: Any, adapter: LoadedIdentityAdapter, scale: float) -> None:
    """Set every IP-Adapter layer's scale (one scale per pipeline call, not per sample)."""
    scale = float(scale)
    if scale != adapter.scale:
        pipeline.set_ip_adapter_scale(scale)
        adapter.scale = scale


# ------------------------------------------------------------------------------ rendering


def check_embedding(
    adapter: LoadedIdentityAdapter, embedding: IdentityEmbedding, field: str
) -> None:
    """`SpecError` unless ``embedding`` was made for this adapter and fits its input."""
    if embedding.adapter != adapter.key:
        raise SpecError(
            field,
            f"identity of {embedding.avatar_id!r} was made for adapter {embedding.adapter!r}, "
            f"but this base model uses {adapter.key!r}; rebuild it",
        )
    if embedding.kind != adapter.kind:
        raise SpecError(
            field, f"identity kind {embedding.kind!r} does not match adapter kind {adapter.kind!r}"
        )
    if embedding.vector.size != adapter.dim:
        raise SpecError(
            field,
            f"identity vector has {embedding.vector.size} values, adapter {adapter.key!r} "
            f"takes {adapter.dim}; rebuild it",
        )


def identity_embeds(
    adapter: LoadedIdentityAdapter,
    vectors: Sequence[np.ndarray | None],
    *,
    guidance: bool,
) -> list[torch.Tensor]:
    """``ip_adapter_image_embeds`` for a pipeline call making one image per entry of
    ``vectors`` (None: zeros, for samples at scale 0), on the UNet's device and dtype:
    ``[negatives..., positives...]`` with classifier-free guidance, the UNet's row order.
    Pass them under `rows_as_given`."""
    import torch

    negative = adapter.negative
    rows = []
    for vector in vectors:
        if vector is None:
            rows.append(torch.zeros_like(negative))
            continue
        values = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
        rows.append(values.reshape(1, 1, *adapter.shape).to(negative.device, negative.dtype))
    positive = torch.cat(rows)
    if not guidance:
        return [positive]
    return [torch.cat([negative.expand(len(rows), *negative.shape[1:]), positive])]


@contextlib.contextmanager
def rows_as_given(pipe: Any) -> Iterator[None]:
    """For the block, ``pipe`` takes ``ip_adapter_image_embeds`` as the final per-row tensors
    (`identity_embeds`: one row per image, negatives first) instead of tiling them over the
    batch: diffusers repeats precomputed embeddings ``batch_size * num_images_per_prompt``
    times, which suits one image prompt for the whole batch, not one identity per sample."""

    def prepare(
        ip_adapter_image: Any,
        ip_adapter_image_embeds: list[torch.Tensor] | None,
        device: Any,
        num_images: int,
        do_classifier_free_guidance: bool,
    ) -> list[torch.Tensor]:
        rows = num_images * (2 if do_classifier_free_guidance else 1)
        if ip_adapter_image_embeds is None or any(
            embeds.shape[0] != rows for embeds in ip_adapter_image_embeds
        ):
            raise ValueError(f"identity embeddings must have one row per image ({rows})")
        return [embeds.to(device=device) for embeds in ip_adapter_image_embeds]

    pipe.prepare_ip_adapter_image_embeds = prepare
    try:
        yield
    finally:
        del pipe.prepare_ip_adapter_image_embeds  # the class's method again


def uses_guidance(pipe: Any, guidance: float) -> bool:
    """Whether ``pipe`` runs classifier-free guidance at ``guidance`` (as diffusers decides)."""
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    return guidance > 1 and getattr(unet.config, "time_cond_proj_dim", None) is None


# ------------------------------------------------------------------------------ building


def _clip_pixels(images: Sequence[Image.Image], settings: dict[str, Any]) -> np.ndarray:
    """CLIP preprocessing: shortest side to ``size`` (bicubic), centre crop, normalise."""
    from PIL import Image

    size, crop = int(settings["size"]), int(settings["crop"])
    mean = np.asarray(settings["mean"], dtype=np.float32)
    std = np.asarray(settings["std"], dtype=np.float32)
    out = np.empty((len(images), 3, crop, crop), dtype=np.float32)
    for i, image in enumerate(images):
        image = image.convert("RGB")
        scale = size / min(image.width, image.height)
        width = max(crop, round(image.width * scale))
        height = max(crop, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - crop) // 2, (height - crop) // 2
        image = image.crop((left, top, left + crop, top + crop))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        out[i] = ((pixels - mean) / std).transpose(2, 0, 1)
    return out


def encode_images(adapter: LoadedIdentityAdapter, photos: Sequence[Image.Image]) -> np.ndarray:
    """The mean CLIP embedding of ``photos`` (aligned face crops) as the adapter takes it:
    the projected image embedding, or the flattened penultimate hidden states. Batched, no
    gradients, on the encoder's device and dtype."""
    import torch

    encoder = adapter.image_encoder
    if encoder is None:
        raise ModelLoadError(f"identity adapter {adapter.key!r} has no image encoder")
    param = next(encoder.parameters())
    total: torch.Tensor | None = None
    with torch.no_grad():
        for start in range(0, len(photos), ENCODE_BATCH):
            chunk = photos[start : start + ENCODE_BATCH]
            pixels = torch.from_numpy(_clip_pixels(chunk, adapter.preprocess))
            pixels = pixels.to(device=param.device, dtype=param.dtype)
            if adapter.projection == IMAGE_EMBEDS:
                embeds = encoder(pixels).image_embeds
            else:
                embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]
            summed = embeds.float().sum(dim=0)
            total = summed if total is None else total + summed
    assert total is not None
    mean = (total / len(photos)).reshape(-1)
    return mean.cpu().numpy().astype(np.float32)


def mean_embedding(embeddings: Sequence[np.ndarray], field: str) -> np.ndarray:
    """The mean of same-sized 1-d embeddings (float32); `SpecError` on bad input."""
    if not embeddings:
        raise SpecError(field, "no face embedding to build the identity from")
    try:
        stacked = np.stack([np.asarray(e, dtype=np.float32).reshape(-1) for e in embeddings])
    except ValueError as exc:
        raise SpecError(field, f"embeddings differ in size: {exc}") from exc
    if stacked.shape[1] == 0 or not np.isfinite(stacked).all():
        raise SpecError(field, "embeddings must be finite, non-empty vectors")
    return stacked.mean(axis=0).astype(np.float32)


def onnx_session(path: str) -> Any:
    """An onnxruntime session for a face-recognition model (CUDA first where available)."""
    try:
        # Optional, not a dependency of the project: installed where ONNX encoders are used.
        onnxruntime = importlib.import_module("onnxruntime")
    except ImportError:
        raise ModelLoadError(
            f"face encoder {path} is an ONNX model, which needs onnxruntime; it is not "
            "installed (install onnxruntime, or use face_encoder 'dlib')"
        ) from None
    if not Path(path).is_file():
        raise ModelLoadError(f"face encoder {path} does not exist")
    available = onnxruntime.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return onnxruntime.InferenceSession(path, providers=providers or None)
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelLoadError(f"cannot load face encoder {path}: {exc}") from exc


def onnx_face_embeddings(session: Any, crops: Sequence[Image.Image]) -> list[np.ndarray]:
    """L2-normalised embeddings of aligned face crops from an ArcFace-style ONNX model
    (RGB, NCHW, ``(x - 127.5) / 127.5``, one crop per run), as IP-Adapter-FaceID uses them."""
    from PIL import Image

    model_input = session.get_inputs()[0]
    dims = list(model_input.shape)
    height = dims[2] if len(dims) == 4 and isinstance(dims[2], int) else ONNX_INPUT_SIZE
    width = dims[3] if len(dims) == 4 and isinstance(dims[3], int) else ONNX_INPUT_SIZE
    embeddings = []
    for crop in crops:
        image = crop.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        pixels = (np.asarray(image, dtype=np.float32) - 127.5) / 127.5
        batch = pixels.transpose(2, 0, 1)[None]
        output = np.asarray(session.run(None, {model_input.name: batch})[0], dtype=np.float32)
        vector = output.reshape(-1)
        norm = float(np.linalg.norm(vector))
        embeddings.append(vector / norm if norm > 0 else vector)
    return embeddings
