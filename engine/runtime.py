"""Turns a `RenderSpec` into PNG bytes, keeping loaded pipelines in memory between renders.

One `Engine` per worker process: loading a pipeline costs seconds to minutes on real models,
rendering with a loaded one costs the steps only.

A render: resolve the base model -> pick the mode pipeline (txt2img / img2img / inpaint, with
or without ControlNets; all share the base modules, see `engine.pipelines`) -> activate the
avatar and style LoRAs (`engine.loras`) -> denoise the candidates (in chunks of ``max_batch``)
-> optional face refinement pass -> optional likeness re-ranking (keep the best ``keep``) ->
PNG bytes, or labelled PNG/JPEG bytes when a `LabelOptions` is given.

`Engine.render_batch` renders several users' compatible specs (same `engine.batching.batch_key`:
txt2img, optionally with ControlNets) in one pipeline call (chunks of ``max_batch`` samples),
every candidate of every spec a sample with its own prompt, seed, control images, avatar LoRA
and identity embedding; each spec's result equals its own `render` within float tolerance.

Identity adapters (`engine.identity`): the registry's identity adapter for a base model is
loaded into its pipeline when the pipeline loads (``identity_adapters="eager"``, the default:
before `engine.serving` compiles the UNet) or on the first render with an identity
(``"lazy"``). A spec's ``identity`` is an embedding from the engine's `IdentitySource`, passed
per sample as ``ip_adapter_image_embeds``; without one the adapter runs at scale 0 with zero
embeddings, exactly the base model.

Seeds go through CPU generators, so the starting noise never depends on the device. The same
spec then gives byte-identical PNGs across runs and processes given the same hardware, library
versions and torch thread count (the thread count changes float summation order; measured on
CPU: 1 and 2 threads give different bytes).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers
from diffusers import (
    ControlNetModel,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image, ImageDraw, ImageFilter

from engine.errors import ModelLoadError, ModelNotFoundError, RenderCanceled, SpecError
from engine.identity import (
    IdentityEmbedding,
    IdentitySource,
    LoadedIdentityAdapter,
    check_embedding,
    identity_embeds,
    uses_guidance,
)
from engine.loras import ActiveLora, AvatarLora, AvatarSource, adapter_name, default_lora_manager
from engine.pipelines import Mode, ModePipelines, make_scheduler
from engine.postprocess import (
    Finished,
    LabelOptions,
    LikenessScorer,
    PostProcessDied,
    PostProcessor,
    RenderedImage,
    finish_candidates,
)
from engine.registry import ModelRegistry, ModelSpec
from engine.spec import MAX_AVATAR_WEIGHT, RenderSpec, is_pil_image

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
PipelineLoader = Callable[[ModelSpec], DiffusionPipeline]
# (image, reference embedding) -> similarity in [0, 1] or None without a face
# image -> the largest face box (left, top, right, bottom attributes) or None
FaceDetector = Callable[[Image.Image], Any]

_PIPELINE_CLASSES: dict[str, type[DiffusionPipeline]] = {
    "sd15": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Style LoRAs run at this share of their weight during the face pass.
FACE_PASS_STYLE_FACTOR = 0.5
# Adapter name, in `Engine.render_batch` with style LoRAs, of the samples without an avatar.
BATCH_STYLES = "batch_styles"
IDENTITY_LOADING = ("eager", "lazy", "off")


def disable_progress_bars() -> None:
    """Silence tqdm bars from diffusers/transformers: workers log, they have no terminal."""
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA (half the memory, same quality) and float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto or one of {sorted(_DTYPES)}") from None


def load_pipeline(
    model: ModelSpec, *, device: torch.device, dtype: torch.dtype
) -> DiffusionPipeline:
    """Load a base model with ``from_pretrained``, never touching the network for local paths."""
    if model.kind != "base":
        raise ModelLoadError(f"model {model.key!r} is a {model.kind}, not a base model")
    if model.is_local and not Path(model.source).is_dir():
        raise ModelLoadError(
            f"model {model.key!r}: {model.source} does not exist "
            "(for the tiny profile run `python -m engine build-tiny DIR`; for sd15-random / "
            "sdxl-random `python -m engine build-random --profile NAME DIR`)"
        )
    pipeline_class = _PIPELINE_CLASSES[model.family]
    try:
        pipeline = pipeline_class.from_pretrained(
            str(model.source), local_files_only=model.is_local, dtype=dtype
        )
        pipeline.to(device)
    except Exception as exc:  # from_pretrained raises many unrelated types; keep the cause
        raise ModelLoadError(f"cannot load model {model.key!r} from {model.source}: {exc}") from exc
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class PipelineCache:
    """Loaded pipelines by model key; each key is loaded at most once, even across threads."""

    def __init__(self, loader: PipelineLoader) -> None:
        self._loader = loader
        self._pipelines: dict[str, DiffusionPipeline] = {}
        self._lock = threading.Lock()

    def get(self, model: ModelSpec) -> DiffusionPipeline:
        with self._lock:
            if model.key not in self._pipelines:
                self._pipelines[model.key] = self._loader(model)
            return self._pipelines[model.key]

    def evict(self, key: str) -> None:
        with self._lock:
            self._pipelines.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._pipelines

    def __len__(self) -> int:
        return len(self._pipelines)


def to_rgb(value: Any, field: str) -> Image.Image:
    """A spec image (bytes decoded safely, or PIL) as an RGB image."""
    if is_pil_image(value):
        return value.convert("RGB")
    from engine.imageio import ImageDecodeError, decode_rgb

    try:
        return decode_rgb(value)
    except ImageDecodeError as exc:
        raise SpecError(field, str(exc)) from exc


def phase_steps(steps: int, strength: float) -> int:
    """Denoising steps an img2img/inpaint pass runs (diffusers: ``int(steps * strength)``)."""
    return min(int(steps * strength), steps)


class _Progress:
    """Reports ``(step, total)`` over several denoising passes (chunks, face pass).

    ``total`` is planned up front from the spec and raised if a pass turns out longer (e.g.
    Heun runs about two model calls per step); the last report always has ``step == total``.
    """

    def __init__(
        self, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None, total: int
    ) -> None:
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.total = total
        self.done = 0
        self.last: tuple[int, int] | None = None

    def _report(self) -> None:
        self.last = (self.done, self.total)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def callback(self, planned: int) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        """A diffusers ``callback_on_step_end`` for the next pass, planned at ``planned`` steps."""
        start = self.done
        grown = False

        def on_step(pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal grown
            if not grown:
                self.total += max(0, pipe.num_timesteps - planned)
                grown = True
            self.done = start + step + 1
            self._report()
            if self.should_cancel is not None and self.should_cancel():
                raise RenderCanceled(f"canceled after step {self.done} of {self.total}")
            return kwargs

        return on_step

    def skip(self, steps: int) -> None:
        """A planned pass did not run (e.g. no face found): drop it from the total."""
        self.total -= steps

    def finish(self) -> None:
        """Report completion if the last report was not already ``(total, total)``."""
        self.done = self.total
        if self.last != (self.total, self.total):
            self._report()


def _call(pipe: DiffusionPipeline, **kwargs: Any) -> list[Image.Image]:
    """Call ``pipe`` with the arguments it accepts (img2img pipelines take no height/width)."""
    accepted = inspect.signature(pipe.__call__).parameters
    kwargs = {k: v for k, v in kwargs.items() if v is not None and k in accepted}
    return pipe(**kwargs, output_type="pil").images


@dataclass
class _ModeInputs:
    mode: Mode
    image: Image.Image | None = None
    mask: Image.Image | None = None
    strength: float | None = None
    strength_field: str | None = None


def _face_crop(image: Image.Image, box: Any, padding: float) -> tuple[int, int, int]:
    """Square ``(left, top, side)`` around ``box``, ``padding`` x its larger side, in bounds."""
    side = int(max(box.right - box.left, box.bottom - box.top) * padding)
    side = max(8, min(side, image.width, image.height))
    cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
    left = min(max(cx - side // 2, 0), image.width - side)
    top = min(max(cy - side // 2, 0), image.height - side)
    return left, top, side


def _face_mask(box: Any, left: int, top: int, side: int, size: int) -> Image.Image:
    """Feathered ellipse over the face box (10% larger), in crop coordinates at ``size``."""
    scale = size / side
    grow_x = (box.right - box.left) * 0.1
    grow_y = (box.bottom - box.top) * 0.1
    ellipse = [
        (box.left - grow_x - left) * scale,
        (box.top - grow_y - top) * scale,
        (box.right + grow_x - left) * scale,
        (box.bottom + grow_y - top) * scale,
    ]
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse(ellipse, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1.0, size / 32)))


def _identity_kwargs(
    pipe: DiffusionPipeline,
    adapter: LoadedIdentityAdapter | None,
    vectors: list[np.ndarray | None],
    guidance: float,
) -> dict[str, Any]:
    """``ip_adapter_image_embeds`` for a call making one image per entry of ``vectors``
    (call the pipeline under `_identity_rows`); nothing without an adapter."""
    if adapter is None:
        return {}
    embeds = identity_embeds(adapter, vectors, guidance=uses_guidance(pipe, guidance))
    return {"ip_adapter_image_embeds": embeds}


def _identity_rows(pipe: DiffusionPipeline, adapter: LoadedIdentityAdapter | None) -> Any:
    """`engine.identity.rows_as_given` when an identity adapter is loaded."""
    from engine.identity import rows_as_given

    return rows_as_given(pipe) if adapter is not None else contextlib.nullcontext()


@contextlib.contextmanager
def _identity_scale(
    pipeline: DiffusionPipeline, adapter: LoadedIdentityAdapter, scale: float
) -> Iterator[None]:
    """The identity adapter at ``scale`` for the block, back to 0 (its idle state) after."""
    from engine.identity import set_scale

    set_scale(pipeline, adapter, scale)
    try:
        yield
    finally:
        set_scale(pipeline, adapter, 0.0)


def _scale_of(spec: RenderSpec) -> float:
    """The identity adapter scale a spec renders at (0 without an identity)."""
    return float(spec.identity.scale) if spec.identity is not None else 0.0


class Engine:
    """Renders specs with the models of one registry, caching loaded pipelines.

    ``avatar_source`` loads avatar LoRAs by id (see `engine.loras.AvatarSource`);
    ``max_batch`` caps how many candidates are denoised in one batch (None: all at once);
    ``face_detector`` / ``likeness_scorer`` default to `engine.faces` (dlib, loaded lazily);
    ``loader`` replaces ``from_pretrained`` loading (e.g. in-memory random models);
    ``on_load(pipeline, model)`` runs on every freshly loaded base pipeline before it is cached
    (`engine.serving.build_engine` applies the serving profile's speed options there);
    ``identity_source`` loads identity embeddings by id (`engine.identity.IdentitySource`);
    ``identity_adapters``: ``eager`` loads the registry's identity adapter of a base model
    with its pipeline (before ``on_load``), ``lazy`` on its first identity render, ``off``
    never (identity renders are refused).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        device: str = "auto",
        dtype: str | None = None,
        avatar_source: AvatarSource | None = None,
        lora_manager: Any | None = None,
        max_batch: int | None = None,
        face_detector: FaceDetector | None = None,
        likeness_scorer: LikenessScorer | None = None,
        loader: PipelineLoader | None = None,
        on_load: Callable[[DiffusionPipeline, ModelSpec], None] | None = None,
        postprocess_workers: int = 0,
        identity_source: IdentitySource | None = None,
        identity_adapters: str = "eager",
    ) -> None:
        """``dtype`` overrides every model's registry dtype (e.g. ``float32`` for CPU tests);
        ``postprocess_workers`` processes finish the images (`engine.postprocess`; 0: the
        rendering thread does)."""
        if identity_adapters not in IDENTITY_LOADING:
            raise ValueError(f"identity_adapters must be one of {IDENTITY_LOADING}")
        self.registry = registry
        self.device = resolve_device(device)
        self._dtype_override = dtype
        self.identity_source = identity_source
        self.identity_adapters = identity_adapters
        # base pipeline -> its loaded identity adapter
        self._identity: weakref.WeakKeyDictionary[Any, LoadedIdentityAdapter] = (
            weakref.WeakKeyDictionary()
        )
        self._face_encoders: dict[str, Any] = {}  # ONNX path -> onnxruntime session
        base_loader = loader or self._load

        def load(model: ModelSpec) -> DiffusionPipeline:
            pipeline = base_loader(model)
            if self.identity_adapters == "eager":
                self._load_identity_eagerly(pipeline, model)
            if on_load is not None:
                on_load(pipeline, model)
            return pipeline

        self.cache = PipelineCache(load)
        # What `engine.serving.build_engine` applied (profile, speed options, warm-up).
        self.serving: dict[str, Any] = {}
        # How the last `render_batch` applied its avatars: "pool" or "per_sample_adapters";
        # "base" for a batch without avatar or style LoRAs (no adapter touched).
        self.last_batch_path = ""
        # Seconds per phase of the last `render` / `render_batch` (see `render`).
        self.last_timings: dict[str, float] = {}
        self.avatar_source = avatar_source
        self.loras = lora_manager or default_lora_manager()
        self.max_batch = max_batch
        self._face_detector = face_detector
        self._likeness_scorer = likeness_scorer
        self.postprocess = PostProcessor(postprocess_workers)
        self._modes: dict[str, ModePipelines] = {}
        self._controlnets: dict[str, ControlNetModel] = {}
        self._lock = threading.Lock()  # one render at a time: pipelines hold per-call state
        disable_progress_bars()

    def _dtype(self, model: ModelSpec) -> torch.dtype:
        return resolve_dtype(self._dtype_override or model.dtype, self.device)

    def _load(self, model: ModelSpec) -> DiffusionPipeline:
        return load_pipeline(model, device=self.device, dtype=self._dtype(model))

    def pipeline(self, key: str | None = None) -> DiffusionPipeline:
        """The loaded pipeline for a base model key (default base if None), loading it once."""
        return self.cache.get(self.registry.get(key or self.registry.default_base))

    def mode_pipelines(self, key: str | None = None) -> ModePipelines:
        """The per-mode pipelines of a base model, all sharing its loaded modules."""
        model = self.registry.get(key or self.registry.default_base)
        base = self.cache.get(model)
        modes = self._modes.get(model.key)
        if modes is None or modes.base is not base:
            modes = self._modes[model.key] = ModePipelines(base, model.family)
        return modes

    # -- identity adapters -------------------------------------------------------------------

    def _load_identity_eagerly(self, pipeline: DiffusionPipeline, model: ModelSpec) -> None:
        """Load the base model's identity adapter with the pipeline when its files are here;
        a missing or broken adapter is logged, not raised (base renders must still work)."""
        adapter = self.registry.identity_adapter(model.key)
        if adapter is None:
            return
        status = self.registry.status_of(adapter.key)
        if not status.ready:
            logger.warning("identity adapter %s not loaded: %s", adapter.key, status.detail)
            return
        from engine.identity import load_identity_adapter

        try:
            self._identity[pipeline] = load_identity_adapter(pipeline, adapter)
        except ModelLoadError as exc:
            logger.warning("identity adapter %s not loaded: %s", adapter.key, exc)

    def identity_adapter(self, key: str | None = None) -> LoadedIdentityAdapter | None:
        """The identity adapter loaded in base model ``key``'s pipeline (None: none loaded)."""
        model = self.registry.get(key or self.registry.default_base)
        if model.key not in self.cache:
            return None
        return self._identity.get(self.cache.get(model))

    def identity_adapter_of(self, pipeline: DiffusionPipeline) -> LoadedIdentityAdapter | None:
        """The identity adapter loaded in ``pipeline`` (a base pipeline of this engine)."""
        return self._identity.get(pipeline)

    def _identity_adapter(
        self, model: ModelSpec, base: DiffusionPipeline, *, field: str = "identity"
    ) -> LoadedIdentityAdapter:
        """The base pipeline's identity adapter, loading it now if needed (call it holding
        the render lock: loading changes the shared UNet)."""
        loaded = self._identity.get(base)
        if loaded is not None:
            return loaded
        if self.identity_adapters == "off":
            raise SpecError(field, "this engine serves without identity adapters")
        adapter = self.registry.identity_adapter(model.key)
        if adapter is None:
            raise SpecError(field, f"no identity adapter is registered for {model.key!r}")
        from engine.identity import load_identity_adapter

        loaded = self._identity[base] = load_identity_adapter(base, adapter)
        return loaded

    def _identity_embedding(
        self, spec: RenderSpec, source: IdentitySource | None, field: str = "identity"
    ) -> IdentityEmbedding | None:
        if spec.identity is None:
            return None
        source = source or self.identity_source
        if source is None:
            raise SpecError(field, "this engine has no identity source to load identities from")
        embedding = source(spec.identity.id)
        if not isinstance(embedding, IdentityEmbedding):
            raise SpecError(field, f"the identity source returned {type(embedding).__name__}")
        return embedding

    def _identity_inputs(
        self,
        model: ModelSpec,
        base: DiffusionPipeline,
        embeddings: Sequence[IdentityEmbedding | None],
        fields: Sequence[str],
    ) -> LoadedIdentityAdapter | None:
        """The adapter a render uses: the loaded one (also without identities: it then runs
        at scale 0), loaded now if an identity needs it; each embedding checked against it."""
        wanted = any(embedding is not None for embedding in embeddings)
        adapter = self._identity.get(base)
        if adapter is None and wanted:
            adapter = self._identity_adapter(model, base, field=fields[0])
        for embedding, field in zip(embeddings, fields, strict=True):
            if embedding is not None:
                assert adapter is not None
                check_embedding(adapter, embedding, field)
        return adapter

    def build_identity(
        self,
        photos: Sequence[Image.Image],
        *,
        face_embeddings: Sequence[np.ndarray] | None = None,
        base_model: str | None = None,
    ) -> tuple[str, str, np.ndarray]:
        """A user's identity for the identity adapter of ``base_model`` (default base):
        ``(adapter key, kind, float32 vector)``; wrap it in an `engine.identity.IdentityEmbedding`.

        ``photos`` are aligned face crops. image_encoder kind: the mean CLIP image embedding
        of the crops (the adapter's encoder, on the engine's device, batched). face_embedding
        kind: the mean of ``face_embeddings`` (dlib 128-d, computed from the crops with
        `engine.faces` when not given), or of the crops' embeddings from the adapter's ONNX
        face encoder. Raises `ModelNotFoundError` when no identity adapter is registered for
        the base, `SpecError` for unusable input (no photo, no face found).
        """
        model = self.registry.get(base_model or self.registry.default_base)
        if model.kind != "base":
            raise SpecError("base_model", f"{model.key!r} is a {model.kind}, not a base model")
        adapter = self.registry.identity_adapter(model.key)
        if adapter is None:
            raise ModelNotFoundError(
                f"no identity adapter is registered for base model {model.key!r} "
                f"({self.registry.origin})"
            )
        photos = list(photos)
        assert adapter.identity_kind is not None
        if adapter.identity_kind == "image_encoder":
            from engine.identity import encode_images

            if not photos:
                raise SpecError("photos", "at least one photo is required")
            base = self.pipeline(model.key)
            loaded = self._identity.get(base)
            if loaded is None:  # the lock only to load: renders may run meanwhile
                with self._lock:
                    loaded = self._identity_adapter(model, base, field="photos")
            return adapter.key, adapter.identity_kind, encode_images(loaded, photos)
        from engine.identity import mean_embedding, onnx_face_embeddings, onnx_session

        if adapter.face_encoder not in (None, "dlib"):
            if not photos:
                raise SpecError("photos", "at least one photo is required")
            path = str(adapter.face_encoder)
            session = self._face_encoders.get(path)
            if session is None:
                session = self._face_encoders[path] = onnx_session(path)
            vector = mean_embedding(onnx_face_embeddings(session, photos), "photos")
        elif face_embeddings is not None:
            vector = mean_embedding(list(face_embeddings), "face_embeddings")
        else:
            from engine.faces import face_embedding

            found = [e for e in (face_embedding(photo) for photo in photos) if e is not None]
            if not found:
                raise SpecError("photos", "no face found in any photo")
            vector = mean_embedding(found, "photos")
        current = self.identity_adapter(model.key)
        if current is not None and current.key == adapter.key and vector.size != current.dim:
            raise SpecError(
                "face_embeddings",
                f"embeddings have {vector.size} values, adapter {adapter.key!r} takes {current.dim}",
            )
        return adapter.key, adapter.identity_kind, vector

    # -- spec pieces -------------------------------------------------------------------------

    def _base_model(self, spec: RenderSpec) -> ModelSpec:
        model = self.registry.get(spec.base_model or self.registry.default_base)
        if model.kind != "base":
            raise SpecError("base_model", f"{model.key!r} is a {model.kind}, not a base model")
        return model

    def _controlnet(
        self, index: int, kind: str, key: str | None, base: ModelSpec
    ) -> tuple[str, ControlNetModel]:
        field = f"controls.{index}"
        if key is None:
            matches = [
                m.key
                for m in self.registry.models("controlnet")
                if m.controlnet_kind == kind and m.family == base.family
            ]
            if not matches:
                raise SpecError(
                    f"{field}.kind",
                    f"no ControlNet registered for kind {kind!r} and family {base.family!r}",
                )
            key = matches[0]
        model = self.registry.get(key)
        if model.kind != "controlnet" or model.family != base.family:
            raise SpecError(
                f"{field}.model", f"{key!r} is not a {base.family} ControlNet ({model.kind})"
            )
        if key not in self._controlnets:
            try:
                controlnet = ControlNetModel.from_pretrained(
                    str(model.source),
                    local_files_only=model.is_local,
                    torch_dtype=self._dtype(base),
                )
            except Exception as exc:
                raise ModelLoadError(
                    f"cannot load ControlNet {key!r} from {model.source}: {exc}"
                ) from exc
            self._controlnets[key] = controlnet.to(self.device)
        return key, self._controlnets[key]

    def _avatar(self, spec: RenderSpec, source: AvatarSource | None) -> AvatarLora | None:
        if spec.avatar is None:
            return None
        source = source or self.avatar_source
        if source is None:
            raise SpecError("avatar", "this engine has no avatar source to load avatars from")
        return source(spec.avatar.id)

    def _style_lora(self, index: int, lora: Any) -> tuple[str, Callable[[], Any]]:
        from engine.loras import read_lora_file

        if lora.key is not None:
            model = self.registry.get(lora.key)
            if model.kind != "lora" or not model.is_local:
                raise SpecError(f"style_loras.{index}.key", f"{lora.key!r} is not a local LoRA")
            path = Path(model.source)
        else:
            path = Path(lora.path).expanduser()
        if not path.exists():
            raise SpecError(f"style_loras.{index}", f"LoRA file {path} does not exist")
        return adapter_name("style", str(path.resolve())), lambda: read_lora_file(path)

    def _adapters(
        self,
        spec: RenderSpec,
        avatar: AvatarLora | None,
        *,
        avatar_boost: float = 0.0,
        style_factor: float = 1.0,
    ) -> list[ActiveLora]:
        adapters = []
        for i, lora in enumerate(spec.style_loras):
            name, load = self._style_lora(i, lora)
            adapters.append(ActiveLora(name, lora.weight * style_factor, load))
        if avatar is not None and spec.avatar is not None:
            weight = min(spec.avatar.weight + avatar_boost, MAX_AVATAR_WEIGHT)
            name = adapter_name("avatar", f"{avatar.avatar_id}@{avatar.revision}")
            adapters.append(ActiveLora(name, weight, lambda: avatar.state_dict, kind="avatar"))
        return adapters

    def _mode_inputs(self, spec: RenderSpec) -> _ModeInputs:
        size = (spec.width, spec.height)
        if spec.reference is not None:
            ref = spec.reference
            image = to_rgb(ref.image, "reference.image").resize(size, Image.Resampling.LANCZOS)
            mask = None
            if ref.mask is not None:
                mask = (
                    to_rgb(ref.mask, "reference.mask")
                    .convert("L")
                    .resize(size, Image.Resampling.NEAREST)
                )
            return _ModeInputs(ref.mode, image, mask, ref.strength, "reference.strength")
        if spec.lighting is not None:
            image = to_rgb(spec.lighting.image, "lighting.image").resize(
                size, Image.Resampling.LANCZOS
            )
            return _ModeInputs("img2img", image, None, spec.lighting.strength, "lighting.strength")
        return _ModeInputs("txt2img")

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        spec: RenderSpec,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        reference_embedding: np.ndarray | None = None,
        label: LabelOptions | None = None,
        avatar_source: AvatarSource | None = None,
        identity_source: IdentitySource | None = None,
    ) -> list[RenderedImage]:
        """`start_render` and wait for the finished images (best first when ranked)."""
        return self.start_render(
            spec,
            on_progress=on_progress,
            should_cancel=should_cancel,
            reference_embedding=reference_embedding,
            label=label,
            avatar_source=avatar_source,
            identity_source=identity_source,
        ).result()

    def start_render(
        self,
        spec: RenderSpec,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        reference_embedding: np.ndarray | None = None,
        label: LabelOptions | None = None,
        avatar_source: AvatarSource | None = None,
        identity_source: IdentitySource | None = None,
    ) -> PendingRender:
        """Denoise ``spec``'s candidates now and hand them to the post-processor; the returned
        `PendingRender` gives the kept ones (best first when ranked) when they are finished.

        ``on_progress(step, total)`` runs after each denoising step (over all passes);
        ``should_cancel()`` is polled before the first step and after every step, raising
        `RenderCanceled`. With ``reference_embedding`` (the avatar owner's 128-d face
        embedding) candidates are scored by likeness and the best ``spec.keep`` returned.
        ``label`` applies the AIGC labels to every returned image. ``spec.identity`` comes
        from ``identity_source`` (default: the engine's). Scoring, labels and
        encoding run in the engine's `PostProcessor` (``postprocess_workers`` processes, or
        this thread with 0), so the next render can start while they run.

        Once the result is taken, ``engine.last_timings`` holds the seconds of this render's phases:
        ``pipeline_s`` (diffusion pipeline calls: text encoding, denoising, VAE decode),
        ``face_pass_s``, ``likeness_s`` (scoring and ranking the candidates), ``output_s``
        (labels and PNG/JPEG encoding of the kept images) and ``total_s`` (with concurrent
        renders on one engine: whichever finished last).
        """
        started = time.perf_counter()
        timings = {"pipeline_s": 0.0, "face_pass_s": 0.0, "likeness_s": 0.0, "output_s": 0.0}
        model = self._base_model(spec)
        modes = self.mode_pipelines(model.key)
        if should_cancel is not None and should_cancel():
            raise RenderCanceled("canceled before the first step")
        avatar = self._avatar(spec, avatar_source)
        identity = self._identity_embedding(spec, identity_source)
        prompt = spec.resolved_prompt(avatar.trigger if avatar else None)
        inputs = self._mode_inputs(spec)
        main_steps = spec.steps
        if inputs.strength is not None:
            main_steps = phase_steps(spec.steps, inputs.strength)
            if main_steps < 1:
                raise SpecError(
                    inputs.strength_field or "strength", f"too low for {spec.steps} steps"
                )
        face_steps = 0
        if spec.face_refine is not None:
            face_steps = phase_steps(spec.steps, spec.face_refine.strength)
            if face_steps < 1:
                raise SpecError("face_refine.strength", f"too low for {spec.steps} steps")
        controlnets = [
            self._controlnet(i, control.kind, control.model, model)
            for i, control in enumerate(spec.controls)
        ]
        control_images = [
            to_rgb(control.image, f"controls.{i}.image").resize((spec.width, spec.height))
            for i, control in enumerate(spec.controls)
        ]
        seeds = spec.candidate_seeds
        chunk = self.max_batch or len(seeds)
        chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
        progress = _Progress(
            on_progress, should_cancel, main_steps * len(chunks) + (face_steps if face_steps else 0)
        )
        pipe = modes.get(inputs.mode, controlnets)
        with self._lock, contextlib.ExitStack() as scope:
            adapter = self._identity_inputs(model, modes.base, [identity], ["identity"])
            if adapter is not None:
                scope.enter_context(_identity_scale(modes.base, adapter, _scale_of(spec)))
            vector = identity.vector if identity is not None else None
            self.loras.activate(modes.base, self._adapters(spec, avatar))
            pipe.scheduler = make_scheduler(spec.sampler, modes.default_scheduler)
            control_kwargs: dict[str, Any] = {}
            if controls := spec.controls:
                single = len(controls) == 1
                control_kwargs = {
                    "image" if inputs.mode == "txt2img" else "control_image": (
                        control_images[0] if single else control_images
                    ),
                    "controlnet_conditioning_scale": (
                        float(controls[0].conditioning_scale)
                        if single
                        else [float(c.conditioning_scale) for c in controls]
                    ),
                    "control_guidance_start": [float(c.start) for c in controls],
                    "control_guidance_end": [float(c.end) for c in controls],
                }
            images: list[Image.Image] = []
            for chunk_seeds in chunks:
                call: dict[str, Any] = {
                    "prompt": prompt,
                    "negative_prompt": spec.negative_prompt or None,
                    "num_inference_steps": spec.steps,
                    "guidance_scale": float(spec.guidance),
                    "width": spec.width,
                    "height": spec.height,
                    "num_images_per_prompt": len(chunk_seeds),
                    "generator": [torch.Generator("cpu").manual_seed(s) for s in chunk_seeds],
                    "callback_on_step_end": progress.callback(main_steps),
                    **control_kwargs,
                    **_identity_kwargs(pipe, adapter, [vector] * len(chunk_seeds), spec.guidance),
                }
                if inputs.mode != "txt2img":
                    assert inputs.strength is not None  # img2img and inpaint inputs carry one
                    call.update(
                        image=inputs.image, mask_image=inputs.mask, strength=float(inputs.strength)
                    )
                phase = time.perf_counter()
                with _identity_rows(pipe, adapter):
                    images += _call(pipe, **call)
                timings["pipeline_s"] += time.perf_counter() - phase
            if spec.face_refine is not None:
                phase = time.perf_counter()
                images = self._refine_faces(
                    spec,
                    modes,
                    avatar,
                    prompt,
                    images,
                    seeds,
                    progress,
                    face_steps,
                    adapter,
                    vector,
                )
                timings["face_pass_s"] = time.perf_counter() - phase
        progress.finish()
        finishing = self._submit_finish(spec, images, seeds, reference_embedding, label)
        return PendingRender(self, [finishing], timings, started)

    def render_batch(
        self,
        specs: Sequence[RenderSpec],
        *,
        avatar_source: AvatarSource | None = None,
        identity_source: IdentitySource | None = None,
        reference_embeddings: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[LabelOptions | None] | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[list[RenderedImage]]:
        """`start_render_batch` and wait for every spec's finished images."""
        return self.start_render_batch(
            specs,
            avatar_source=avatar_source,
            identity_source=identity_source,
            reference_embeddings=reference_embeddings,
            labels=labels,
            on_progress=on_progress,
            should_cancel=should_cancel,
        ).results()

    def start_render_batch(
        self,
        specs: Sequence[RenderSpec],
        *,
        avatar_source: AvatarSource | None = None,
        identity_source: IdentitySource | None = None,
        reference_embeddings: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[LabelOptions | None] | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> PendingRender:
        """Render several compatible specs (e.g. different users') in one denoising pass.

        Every spec must have the same `engine.batching.batch_key` (not None): txt2img, with or
        without ControlNets. Every candidate of every spec is one sample (spec order, then
        seed order): it gets its spec's prompt (with its avatar's trigger), negative prompt,
        its own seed (its own CPU generator, as in `render`), control images, avatar LoRA at
        its weight and identity embedding (`engine.identity`; the specs share the identity
        scale, part of the key). The samples are denoised in pipeline calls of at most
        ``max_batch`` samples (all at once when None). Avatars come from the pipeline's
        `engine.adapters.AvatarPool` (resident avatars, per-sample slot indices, styles through
        peft as in `render`) when they fit it; otherwise (text-encoder avatars, too many, other
        ranks) from `engine.adapters.per_sample_adapters`: each distinct avatar and weight is
        loaded under its own adapter name for the call, with style LoRAs combined into each
        sample's adapter (`engine.batching.combined_lora`). ``last_batch_path`` says which.
        Specs without an avatar use the base model (plus the styles). Each spec's result
        equals its own `render` within float tolerance (batched kernels may sum in another
        order).

        The `PendingRender`'s ``results()`` has one list per spec, in order, as `render` would
        return it: its candidates scored against ``reference_embeddings[i]`` (best ``keep``
        kept) and labelled with ``labels[i]`` where given (None entries: nothing).
        ``on_progress`` / ``should_cancel`` work as in `render` over the pipeline calls.
        The pipeline's adapters (avatar slot, styles, active adapters and weights, identity
        scale) are as before the call afterwards, also when it fails or is canceled.
        """
        from engine.adapters import loaded_adapters, per_sample_adapters, preserved_adapter_state
        from engine.batching import batch_key

        started = time.perf_counter()
        timings = {"pipeline_s": 0.0, "face_pass_s": 0.0, "likeness_s": 0.0, "output_s": 0.0}
        specs = list(specs)
        if not specs:
            return PendingRender(self, [], timings, started)
        count = len(specs)
        references = self._per_spec(reference_embeddings, count, "reference_embeddings")
        label_list = self._per_spec(labels, count, "labels")
        key = batch_key(specs[0])
        for index, spec in enumerate(specs):
            if batch_key(spec) is None:
                raise SpecError(
                    f"specs.{index}",
                    "cannot be batched (only txt2img or txt2img+ControlNet specs, "
                    "no lighting, reference or face_refine)",
                )
            if batch_key(spec) != key:
                raise SpecError(
                    f"specs.{index}",
                    "is not batch-compatible with specs.0 (base model, size, steps, guidance, "
                    "sampler, controls, style LoRAs and identity scale must agree)",
                )
        first = specs[0]
        model = self._base_model(first)
        modes = self.mode_pipelines(model.key)
        if should_cancel is not None and should_cancel():
            raise RenderCanceled("canceled before the first step")
        avatars = [self._avatar(spec, avatar_source) for spec in specs]
        identities = [
            self._identity_embedding(spec, identity_source, f"specs.{j}.identity")
            for j, spec in enumerate(specs)
        ]
        prompts = [
            spec.resolved_prompt(avatar.trigger if avatar else None)
            for spec, avatar in zip(specs, avatars, strict=True)
        ]
        controlnets = [
            self._controlnet(i, control.kind, control.model, model)
            for i, control in enumerate(first.controls)
        ]
        control_images = [
            [
                to_rgb(control.image, f"specs.{j}.controls.{i}.image").resize(
                    (spec.width, spec.height)
                )
                for i, control in enumerate(spec.controls)
            ]
            for j, spec in enumerate(specs)
        ]
        styles = [
            (name, float(lora.weight), load)
            for i, lora in enumerate(first.style_loras)
            for name, load in [self._style_lora(i, lora)]
        ]
        # One adapter per distinct (avatar revision, weight); None: no avatar.
        spec_keys: list[tuple[str, float] | None] = []
        by_key: dict[tuple[str, float], AvatarLora] = {}
        for spec, avatar in zip(specs, avatars, strict=True):
            if avatar is None or spec.avatar is None:
                spec_keys.append(None)
                continue
            weight = float(min(spec.avatar.weight, MAX_AVATAR_WEIGHT))
            avatar_key = (f"{avatar.avatar_id}@{avatar.revision}", weight)
            by_key.setdefault(avatar_key, avatar)
            spec_keys.append(avatar_key)
        names = {
            avatar_key: adapter_name("batch", f"{avatar_key[0]}#{avatar_key[1]!r}")
            for avatar_key in by_key
        }
        # Every candidate of every spec is a sample: (spec index, seed).
        samples = [(j, seed) for j, spec in enumerate(specs) for seed in spec.candidate_seeds]
        chunk = self.max_batch or len(samples)
        chunks = [samples[i : i + chunk] for i in range(0, len(samples), chunk)]
        progress = _Progress(on_progress, should_cancel, first.steps * len(chunks))
        pipe = modes.get("txt2img", controlnets)
        base = modes.base
        images: list[Image.Image] = []
        with self._lock, contextlib.ExitStack() as adapters:
            fields = [f"specs.{j}.identity" for j in range(count)]
            identity_adapter = self._identity_inputs(model, base, identities, fields)
            if identity_adapter is not None:
                adapters.enter_context(_identity_scale(base, identity_adapter, _scale_of(first)))
            pipe.scheduler = make_scheduler(first.sampler, modes.default_scheduler)
            # A batch without LoRAs touches no adapter (no slot or pool is created for it).
            any_lora = bool(by_key or styles)
            if any_lora:
                self._ensure_avatar_slot(base)
            pool = self._avatar_pool(base, by_key) if any_lora else None
            if not any_lora:
                # Whatever LoRA an earlier render left active is off for the batch.
                adapters.enter_context(preserved_adapter_state(base))
                self.loras.activate(base, [])
            elif pool is not None:
                # Styles through peft as in a single render; each sample's avatar from the
                # pool (resident avatars load nothing, nothing is hooked or unloaded).
                adapters.enter_context(preserved_adapter_state(base))
                self.loras.activate(base, self._adapters(first, None))
                state_dicts = {k[0]: avatar.state_dict for k, avatar in by_key.items()}
            else:
                loras, spec_names, weights = self._batch_adapters(
                    base, styles, by_key, spec_keys, names
                )
                adapters.enter_context(loaded_adapters(base, loras))
            self.last_batch_path = (
                "base" if not any_lora else "pool" if pool is not None else "per_sample_adapters"
            )
            for part in chunks:
                rows = [j for j, _seed in part]
                per_sample: contextlib.AbstractContextManager[Any]
                if not any_lora:
                    per_sample = contextlib.nullcontext()
                elif pool is not None:
                    per_sample = pool.batch(
                        [None if spec_keys[j] is None else spec_keys[j] for j in rows],
                        state_dicts,
                    )
                else:
                    per_sample = per_sample_adapters(
                        base, [spec_names[j] for j in rows], weights=weights
                    )
                control_kwargs: dict[str, Any] = {}
                if controls := first.controls:
                    single = len(controls) == 1
                    control_kwargs = {
                        "image": [
                            control_images[j][0] if single else control_images[j] for j in rows
                        ],
                        "controlnet_conditioning_scale": (
                            float(controls[0].conditioning_scale)
                            if single
                            else [float(c.conditioning_scale) for c in controls]
                        ),
                        "control_guidance_start": [float(c.start) for c in controls],
                        "control_guidance_end": [float(c.end) for c in controls],
                    }
                negative = (
                    [specs[j].negative_prompt for j in rows] if first.negative_prompt else None
                )
                vectors = [
                    identity.vector if identity is not None else None
                    for identity in (identities[j] for j in rows)
                ]
                with per_sample, _identity_rows(pipe, identity_adapter):
                    phase = time.perf_counter()
                    images += _call(
                        pipe,
                        prompt=[prompts[j] for j in rows],
                        negative_prompt=negative,
                        num_inference_steps=first.steps,
                        guidance_scale=float(first.guidance),
                        width=first.width,
                        height=first.height,
                        num_images_per_prompt=1,
                        generator=[torch.Generator("cpu").manual_seed(seed) for _j, seed in part],
                        callback_on_step_end=progress.callback(first.steps),
                        **control_kwargs,
                        **_identity_kwargs(pipe, identity_adapter, vectors, first.guidance),
                    )
                    timings["pipeline_s"] += time.perf_counter() - phase
        progress.finish()
        finishing = []
        start = 0
        for spec, reference, label in zip(specs, references, label_list, strict=True):
            seeds = spec.candidate_seeds
            mine = images[start : start + len(seeds)]
            start += len(seeds)
            finishing.append(self._submit_finish(spec, mine, seeds, reference, label))
        return PendingRender(self, finishing, timings, started)

    def _ensure_avatar_slot(self, base: DiffusionPipeline) -> None:
        """Create the pipeline's hot-swap avatar slot before a batch loads its adapters.

        `engine.adapters.AvatarSlot` must exist before any other LoRA is loaded (it cannot be
        created once peft has wrapped the layers, even after those adapters are unloaded), so
        a batch on a pipeline without one creates it first, as the first avatar render would.
        The new slot is disabled: renders without LoRAs stay exactly the base model's.
        """
        from engine.loras import SlotLoraManager

        if not isinstance(self.loras, SlotLoraManager) or self.loras.slot(base) is not None:
            return
        from engine.adapters import avatar_slot, loaded_adapter_names

        if not loaded_adapter_names(base):
            avatar_slot(base, max_rank=self.loras.max_rank)

    def _avatar_pool(
        self, base: DiffusionPipeline, avatars: dict[tuple[str, float], AvatarLora]
    ) -> Any | None:
        """The pipeline's `engine.adapters.AvatarPool` when it can hold this batch's avatars
        (UNet LoRAs of a fitting rank, no more than its slots), else None."""
        from engine.loras import SlotLoraManager

        if not isinstance(self.loras, SlotLoraManager) or self.loras.pool_slots < 1:
            return None
        pool = self.loras.pool(base)
        distinct = {identity[0]: avatar for identity, avatar in avatars.items()}
        if pool is None or len(distinct) > pool.slots:
            return None
        fits = all(
            key in pool.resident or pool.accepts(avatar.state_dict)
            for key, avatar in distinct.items()
        )
        return pool if fits else None

    @staticmethod
    def _batch_adapters(
        base: DiffusionPipeline,
        styles: list[tuple[str, float, Callable[[], Any]]],
        avatars: dict[tuple[str, float], AvatarLora],
        sample_keys: list[tuple[str, float] | None],
        names: dict[tuple[str, float], str],
    ) -> tuple[dict[str, Any], list[str], dict[str, float] | None]:
        """(adapters to load by name, the adapter of each sample, per-adapter weights)."""
        from engine.adapters import BASE_SAMPLE, loaded_adapters
        from engine.batching import combined_lora

        if not styles:
            loras = {names[identity]: avatar.state_dict for identity, avatar in avatars.items()}
            sample_names = [BASE_SAMPLE if k is None else names[k] for k in sample_keys]
            return loras, sample_names, {names[identity]: identity[1] for identity in avatars}
        # peft's mixed batch applies one adapter per sample: fold the styles into each
        # sample's adapter (weights baked in, so every combined adapter runs at weight 1).
        parts: dict[str, Any] = {}
        style_parts = []
        for i, (_name, weight, load) in enumerate(styles):
            parts[f"batch_part_style_{i}"] = load
            style_parts.append((f"batch_part_style_{i}", float(weight)))
        recipes: dict[str, list[tuple[str, float]]] = {}
        for j, (identity, avatar) in enumerate(avatars.items()):
            parts[f"batch_part_avatar_{j}"] = avatar.state_dict
            recipes[names[identity]] = [(f"batch_part_avatar_{j}", identity[1]), *style_parts]
        sample_names = [BATCH_STYLES if k is None else names[k] for k in sample_keys]
        if BATCH_STYLES in sample_names:
            recipes[BATCH_STYLES] = style_parts
        with loaded_adapters(base, parts):
            loras = {name: combined_lora(base, recipe) for name, recipe in recipes.items()}
        return loras, sample_names, None

    @staticmethod
    def _per_spec(values: Sequence[Any] | None, count: int, field: str) -> list[Any]:
        if values is None:
            return [None] * count
        values = list(values)
        if len(values) != count:
            raise SpecError(field, f"must have one entry per spec ({count}), got {len(values)}")
        return values

    def _refine_faces(
        self,
        spec: RenderSpec,
        modes: ModePipelines,
        avatar: AvatarLora | None,
        prompt: str,
        images: list[Image.Image],
        seeds: Sequence[int],
        progress: _Progress,
        face_steps: int,
        identity_adapter: LoadedIdentityAdapter | None = None,
        identity_vector: np.ndarray | None = None,
    ) -> list[Image.Image]:
        """Inpaint each output's face crop with the avatar boosted (and the identity, when
        given, at the render's scale); paste it back feathered."""
        refine = spec.face_refine
        assert refine is not None
        detect = self._face_detector
        if detect is None:
            from engine.faces import face_box

            detect = face_box
        size = max(64, min(spec.width, spec.height) // 8 * 8)
        jobs = []
        for index, image in enumerate(images):
            box = detect(image)
            if box is None:
                continue
            left, top, side = _face_crop(image, box, refine.padding)
            crop = image.crop((left, top, left + side, top + side)).resize(
                (size, size), Image.Resampling.LANCZOS
            )
            jobs.append((index, left, top, side, crop, _face_mask(box, left, top, side, size)))
        if not jobs:
            progress.skip(face_steps)
            return images
        self.loras.activate(
            modes.base,
            self._adapters(
                spec, avatar, avatar_boost=refine.avatar_boost, style_factor=FACE_PASS_STYLE_FACTOR
            ),
        )
        pipe = modes.get("inpaint")
        pipe.scheduler = make_scheduler(spec.sampler, modes.default_scheduler)
        with _identity_rows(pipe, identity_adapter):
            redrawn = _call(
                pipe,
                prompt=[prompt] * len(jobs),
                negative_prompt=[spec.negative_prompt] * len(jobs)
                if spec.negative_prompt
                else None,
                image=[job[4] for job in jobs],
                mask_image=[job[5] for job in jobs],
                strength=float(refine.strength),
                num_inference_steps=spec.steps,
                guidance_scale=float(spec.guidance),
                width=size,
                height=size,
                generator=[torch.Generator("cpu").manual_seed(seeds[job[0]]) for job in jobs],
                callback_on_step_end=progress.callback(face_steps),
                **_identity_kwargs(
                    pipe, identity_adapter, [identity_vector] * len(jobs), spec.guidance
                ),
            )
        images = list(images)
        for (index, left, top, side, _crop, mask), face in zip(jobs, redrawn, strict=True):
            out = images[index].copy()
            out.paste(
                face.resize((side, side), Image.Resampling.LANCZOS),
                (left, top),
                mask.resize((side, side)),
            )
            images[index] = out
        return images

    def _submit_finish(
        self,
        spec: RenderSpec,
        images: list[Image.Image],
        seeds: Sequence[int],
        reference_embedding: np.ndarray | None,
        label: LabelOptions | None,
    ) -> _Finishing:
        finish = functools.partial(
            finish_candidates,
            list(images),
            list(seeds),
            keep=spec.num_kept,
            reference=reference_embedding,
            label=label,
            scorer=self._likeness_scorer,
        )
        return _Finishing(self.postprocess.submit(*finish.args, **finish.keywords), finish)


@dataclass(frozen=True)
class _Finishing:
    future: concurrent.futures.Future[Finished]
    again: Callable[[], Finished]  # the same work, in the calling thread


class PendingRender:
    """A render whose denoising is done and whose images the engine's `PostProcessor` is
    finishing (likeness ranking, labels, encoding). Take the images with `result` (one
    render) or `results` (one list per spec of a batch); both wait, and raise what the
    finishing raised. A post-processing process that died (e.g. killed for memory) costs
    time, not the images: they are finished again in the calling thread."""

    def __init__(
        self,
        engine: Engine,
        finishing: list[_Finishing],
        timings: dict[str, float],
        started: float,
    ) -> None:
        self._engine = engine
        self._finishing = finishing
        self.timings = timings
        self._started = started
        self._results: list[list[RenderedImage]] | None = None

    def done(self) -> bool:
        return all(item.future.done() for item in self._finishing)

    def results(self, timeout: float | None = None) -> list[list[RenderedImage]]:
        """Every spec's kept images; ``timeout`` (seconds) raises `PostProcessError` when the
        finishing takes longer (the pool is then replaced)."""
        if self._results is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            finished: list[Finished] = []
            for item in self._finishing:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    finished.append(self._engine.postprocess.result(item.future, left))
                except PostProcessDied:
                    logger.warning("a post-processing process died; finishing in this thread")
                    finished.append(item.again())
            for done in finished:
                self.timings["likeness_s"] += done.likeness_s
                self.timings["output_s"] += done.output_s
            self.timings["total_s"] = time.perf_counter() - self._started
            self._engine.last_timings = self.timings
            self._results = [done.images for done in finished]
        return self._results

    def result(self, timeout: float | None = None) -> list[RenderedImage]:
        """The kept images of a single render (the first spec's, for a batch)."""
        return self.results(timeout)[0]
