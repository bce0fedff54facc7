"""How a worker serves renders: one `ServingProfile` and one `build_engine` for every caller.

The worker and the benchmark (``python -m engine bench``, bench/gpu.sh) build their `Engine`
the same way, so what the benchmark measures is what the worker runs::

    profile = ServingProfile.from_env_dict(os.environ)       # or ServingProfile(compile=True)
    engine = build_engine(registry, device="auto", profile=profile)

`build_engine` creates the Engine with the profile's dtype and batch cap, prepares every base
pipeline it loads (the registry's identity adapter is loaded with the pipeline, then the avatar
hot-swap slot, then `engine.pipelines.apply_speed_options`: QKV fusion, channels_last,
``torch.compile``), loads the default base model and warms up the configured batch buckets, so
the first user request pays no load and no compilation.

This module imports no torch at import time: a settings module can build a profile cheaply.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.registry import ModelRegistry
    from engine.runtime import Engine

DTYPES = ("auto", "registry", "float32", "float16", "bfloat16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
ENV_PREFIX = "ENGINE_SERVING_"
WARMUP_PROMPT = "a portrait photo of a person"
WARMUP_AVATAR_ID = "__serving_warmup__"
WARMUP_IDENTITY_SCALE = 0.6  # engine.spec.IdentityRef's default scale
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_AUTO = {"", "auto", "none", "null"}


def _device_type(device: Any) -> str:
    return str(getattr(device, "type", device)).split(":")[0]


@dataclass(frozen=True)
class ServingProfile:
    """Speed and warm-up settings of a rendering worker; validated on construction.

    Attributes:
        dtype: weights and activations: ``auto`` (bfloat16 on CUDA, float32 elsewhere),
            ``registry`` (each model's own registry dtype), or ``float32`` / ``float16`` /
            ``bfloat16`` for every model.
        channels_last: store UNet and VAE convolution weights channels-last (faster cuDNN
            convolutions on CUDA). ``None``: on CUDA only.
        fuse_qkv: fuse attention Q/K/V projections (diffusers' ``fuse_qkv_projections``).
            With ``avatars`` on, only the VAE is fused: a fused UNet attention bypasses the
            ``to_q``/``to_k``/``to_v`` layers where avatar and style LoRAs live. With
            ``avatars`` off the UNet is fused too, and LoRA and identity renders are refused
            (the fused attention replaces the identity adapter's too).
        compile: ``torch.compile`` the UNet. Each new shape (batch bucket, resolution, LoRA
            on/off, identity scale) compiles once; warm up the buckets you serve. Identity
            embeddings are inputs of a fixed shape per bucket: new identities never recompile;
            the adapter scale is a constant of the graph (the warm-up covers 0, no identity,
            and the default 0.6; each other scale compiles once).
        compile_mode: torch.compile's ``mode`` (``default``, ``reduce-overhead``,
            ``max-autotune``, ``max-autotune-no-cudagraphs``); ``None`` is ``default``.
            max-autotune modes compile for minutes per shape on a full-size UNet.
        compile_backend: torch.compile's ``backend`` (``inductor``; ``eager`` /
            ``aot_eager`` trace without generating code: for tests). A callable backend may
            be given in code.
        warmup_batch_sizes: images per render to warm up, e.g. ``(1, 4, 8)``: one render of
            each at ``warmup_size`` (and, with ``avatars``, one with a zero avatar LoRA in the
            hot-swap slot), so compilation and cuDNN autotuning happen before the first
            request. Empty: no warm-up render (the default base is still loaded).
        warmup_size: image side in px of the warm-up renders; ``None``: the model's native
            size (UNet ``sample_size`` x VAE scale, e.g. 512 for SD1.5, 64 for tiny).
        warmup_steps: denoising steps per warm-up render (compile does not depend on it).
        warmup_guidance: guidance scale of the warm-up renders; above 1 uses the
            classifier-free-guidance batch shape (2 rows per image) that real renders use.
        max_batch: most candidates denoised in one pipeline call (`Engine` ``max_batch``);
            ``None``: all candidates of a render at once.
        avatars: create each pipeline's avatar hot-swap slot before compiling, so swapping
            avatars and changing their weight never recompiles (`engine.adapters.AvatarSlot`).
        avatar_max_rank: the largest avatar LoRA rank that hot-swaps into the slot (higher
            ranks still load, by a full reload that recompiles).
        avatar_pool_slots: avatars resident at once for batches of different users' avatars
            (`engine.adapters.AvatarPool`, created before compiling; each slot holds a
            rank-``avatar_max_rank`` LoRA, about 6 MB in bf16 for SD1.5). A batch with more
            distinct avatars, or avatars that do not fit, loads them per call instead. 0: no
            pool.
        postprocess_workers: processes that finish rendered images (likeness ranking,
            labels, PNG) beside the render thread (`engine.postprocess`), so the next job's
            denoising overlaps this one's finishing. About 0.3-0.45 core-seconds per 512 px
            image: give a GPU worker about its images/s x 0.4 of them. 0: the render thread
            finishes (no extra processes).
    """

    dtype: str = "auto"
    channels_last: bool | None = None
    fuse_qkv: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str | Callable[..., Any] = "inductor"
    warmup_batch_sizes: tuple[int, ...] = (1,)
    warmup_size: int | None = None
    warmup_steps: int = 2
    warmup_guidance: float = 5.0
    max_batch: int | None = None
    avatars: bool = True
    avatar_max_rank: int = 16
    avatar_pool_slots: int = 16
    postprocess_workers: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"serving dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("fuse_qkv", "compile", "avatars"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"serving {name} must be true or false")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ConfigError("serving channels_last must be true, false or None (auto)")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"serving compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}"
            )
        backend = self.compile_backend
        if not callable(backend) and not (isinstance(backend, str) and backend):
            raise ConfigError("serving compile_backend must be a backend name or a callable")
        sizes = self.warmup_batch_sizes
        if isinstance(sizes, str | bytes) or not isinstance(sizes, tuple | list):
            raise ConfigError("serving warmup_batch_sizes must be a list of integers")
        if not all(_is_int(size, 1, 256) for size in sizes):
            raise ConfigError(f"serving warmup_batch_sizes must be integers 1-256, got {sizes}")
        object.__setattr__(self, "warmup_batch_sizes", tuple(dict.fromkeys(sizes)))
        if self.warmup_size is not None and (
            not _is_int(self.warmup_size, 64, 2048) or self.warmup_size % 8
        ):
            raise ConfigError(
                f"serving warmup_size must be a multiple of 8 in 64-2048, got {self.warmup_size}"
            )
        if not _is_int(self.warmup_steps, 1, 100):
            raise ConfigError(f"serving warmup_steps must be 1-100, got {self.warmup_steps}")
        guidance = self.warmup_guidance
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or guidance < 0:
            raise ConfigError(f"serving warmup_guidance must be >= 0, got {guidance!r}")
        if self.max_batch is not None and not _is_int(self.max_batch, 1, 256):
            raise ConfigError(f"serving max_batch must be 1-256 or None, got {self.max_batch}")
        if not _is_int(self.avatar_max_rank, 1, 256):
            raise ConfigError(f"serving avatar_max_rank must be 1-256, got {self.avatar_max_rank}")
        if not _is_int(self.avatar_pool_slots, 0, 256):
            raise ConfigError(
                f"serving avatar_pool_slots must be 0-256, got {self.avatar_pool_slots}"
            )
        if not _is_int(self.postprocess_workers, 0, 64):
            raise ConfigError(
                f"serving postprocess_workers must be 0-64, got {self.postprocess_workers}"
            )

    # -- per device ---------------------------------------------------------------------

    def dtype_for(self, device: Any) -> str | None:
        """The dtype name this profile runs on ``device`` (None: the registry's per model)."""
        if self.dtype == "registry":
            return None
        if self.dtype == "auto":
            return "bfloat16" if _device_type(device) == "cuda" else "float32"
        return self.dtype

    def channels_last_for(self, device: Any) -> bool:
        if self.channels_last is None:
            return _device_type(device) == "cuda"
        return self.channels_last

    def fuse_qkv_for(self) -> Literal["off", "vae", "all"]:
        """``apply_speed_options``' ``fuse_qkv``: off, vae (LoRA-safe) or all."""
        if not self.fuse_qkv:
            return "off"
        return "vae" if self.avatars else "all"

    def resolved(self, device: Any) -> dict[str, Any]:
        """The profile as it applies on ``device`` (auto values decided), for reports."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        backend = values["compile_backend"]
        values["compile_backend"] = backend if isinstance(backend, str) else repr(backend)
        values["warmup_batch_sizes"] = list(self.warmup_batch_sizes)
        values.update(
            device=str(device),
            dtype=self.dtype_for(device) or "registry",
            channels_last=self.channels_last_for(device),
            fuse_qkv=self.fuse_qkv_for(),
        )
        return values

    # -- from settings --------------------------------------------------------------------

    @classmethod
    def from_env_dict(
        cls, mapping: Mapping[str, Any], *, prefix: str = ENV_PREFIX
    ) -> ServingProfile:
        """A profile from environment-style settings: ``{prefix}{FIELD}`` (upper case, e.g.
        ``ENGINE_SERVING_COMPILE=1``, ``ENGINE_SERVING_WARMUP_BATCH_SIZES=1,4,8``).

        Values may be strings (environment) or already typed (Django settings). Booleans
        accept 1/0, true/false, yes/no, on/off; ``channels_last`` and the optional numbers
        also accept ``auto``/``none``/empty for their default. A key that starts with
        ``prefix`` but names no field raises `ConfigError` (a typo would otherwise be
        silently ignored); other keys are ignored, so ``os.environ`` can be passed whole.
        With ``prefix=""`` the keys are the plain field names, any case.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in mapping.items():
            if not isinstance(key, str) or not key.upper().startswith(prefix.upper()):
                continue
            name = key[len(prefix) :].lower()
            if name not in fields:
                if prefix:
                    raise ConfigError(f"unknown serving setting {key!r}; known: {sorted(fields)}")
                continue
            values[name] = _parse(name, raw)
        return cls(**values)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"serving {name} must be a boolean (1/0, true/false), got {raw!r}")


def _int(name: str, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"serving {name} must be an integer, got {raw!r}") from None


def _parse(name: str, raw: Any) -> Any:
    """One setting from a string (or an already typed value)."""
    text = raw.strip() if isinstance(raw, str) else None
    if name in ("fuse_qkv", "compile", "avatars"):
        return _bool(name, raw)
    if name == "channels_last":
        return None if text is not None and text.lower() in _AUTO else _bool(name, raw)
    if name in ("warmup_size", "max_batch"):
        if raw is None or (text is not None and text.lower() in _AUTO):
            return None
        return _int(name, raw)
    if name in ("warmup_steps", "avatar_max_rank", "avatar_pool_slots", "postprocess_workers"):
        return _int(name, raw)
    if name == "warmup_guidance":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"serving {name} must be a number, got {raw!r}") from None
    if name == "warmup_batch_sizes":
        if text is not None:
            return tuple(_int(name, part) for part in text.split(",") if part.strip())
        return tuple(raw)
    if name == "compile_mode":
        return None if raw is None or (text is not None and text.lower() in _AUTO) else text
    return text if text is not None else raw  # dtype, compile_backend


# --------------------------------------------------------------------------- build_engine


def build_engine(
    registry: ModelRegistry,
    *,
    device: str = "auto",
    profile: ServingProfile | None = None,
    warm_up: bool = True,
    log: Callable[[str], None] | None = None,
    **engine_kwargs: Any,
) -> Engine:
    """The `Engine` a worker (or the benchmark) serves with, ready for its first request.

    Every base pipeline the engine loads (now or later, any model key) is prepared in the
    engine's load hook: the registry's identity adapter for it is already loaded
    (`Engine` ``identity_adapters="eager"``; ``off`` when the profile fuses the UNet's
    attention); with ``profile.avatars`` its avatar hot-swap slot is created first
    (`engine.loras.SlotLoraManager.ensure_slot`: it must exist before compiling, so avatar
    swaps never recompile), then `engine.pipelines.apply_speed_options` applies QKV fusion,
    channels_last and torch.compile as the profile says. The default base model is loaded
    now; with ``warm_up`` each of ``profile.warmup_batch_sizes`` is rendered once (see
    `warm_up_engine`) and the post-processing processes are started. ``engine.serving`` records the resolved profile, what was applied per
    model, and the warm-up timings.

    ``engine_kwargs`` go to `Engine` (``avatar_source``, ``face_detector``,
    ``likeness_scorer``, ``loader``, ``lora_manager``).
    """
    from engine.loras import SlotLoraManager
    from engine.pipelines import apply_speed_options
    from engine.runtime import Engine, resolve_device

    profile = profile or ServingProfile()
    torch_device = resolve_device(device)
    report: dict[str, Any] = {"profile": profile.resolved(torch_device), "models": {}}
    engine: Engine | None = None

    def prepare(pipeline: Any, model: Any) -> None:
        started = time.perf_counter()
        assert engine is not None
        if profile.avatars and isinstance(engine.loras, SlotLoraManager):
            engine.loras.ensure_slot(pipeline)
            if engine.loras.pool_slots:
                engine.loras.pool(pipeline)  # before compiling: its hooks are in the graph
        applied = apply_speed_options(
            pipeline,
            channels_last=profile.channels_last_for(torch_device),
            compile_unet=profile.compile,
            compile_mode=profile.compile_mode,
            compile_backend=profile.compile_backend,
            fuse_qkv=profile.fuse_qkv_for(),  # fusion happens before the compile
        )
        applied["prepare_seconds"] = time.perf_counter() - started
        identity = engine.identity_adapter_of(pipeline)
        applied["identity_adapter"] = identity.key if identity is not None else None
        report["models"][model.key] = applied

    kwargs = {
        "max_batch": profile.max_batch,
        "postprocess_workers": profile.postprocess_workers,
        # A fused UNet attention would replace the identity adapter's layers.
        "identity_adapters": "off" if profile.fuse_qkv_for() == "all" else "eager",
        **engine_kwargs,
    }
    if profile.avatars and "lora_manager" not in kwargs:
        kwargs["lora_manager"] = SlotLoraManager(
            max_rank=profile.avatar_max_rank, pool_slots=profile.avatar_pool_slots
        )
    engine = Engine(
        registry,
        device=str(torch_device),
        dtype=profile.dtype_for(torch_device),
        on_load=prepare,
        **kwargs,
    )
    engine.serving = report
    started = time.perf_counter()
    engine.pipeline()
    report["load_seconds"] = time.perf_counter() - started
    if log:
        log(f"serving: loaded {registry.default_base} in {report['load_seconds']:.1f}s")
    if warm_up:
        report["warmup"] = warm_up_engine(engine, profile, log=log)
    return engine


def warm_up_engine(
    engine: Engine, profile: ServingProfile, *, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Render each of ``profile.warmup_batch_sizes`` once on the default base model.

    With ``profile.avatars`` each bucket is rendered twice: without a LoRA and with a zero
    avatar LoRA hot-swapped into the slot (LoRA on and off are different compiled graphs);
    the slot is emptied afterwards, so the first real avatar loads as usual and renders stay
    equal to the base model until then. Buckets above 1 are also rendered as a batch through
    the avatar pool (`Engine.render_batch`), the graph of mixed-avatar batches. With an
    identity adapter loaded, each of these renders is repeated with a zero identity at the
    default scale (identity off and on are different graphs: the adapter's scale is a
    constant; the identity embeddings are inputs, so new identities never recompile).
    Returns one timing row per render (``avatar``: False, True or "pool"; ``identity``).
    """
    import numpy as np

    from engine.identity import IdentityEmbedding
    from engine.loras import AvatarLora, random_lora_state_dict
    from engine.spec import AvatarRef, IdentityRef, RenderSpec

    engine.postprocess.start()  # its processes load their models during the renders below
    pipeline = engine.pipeline()
    unet = getattr(pipeline.unet, "_orig_mod", pipeline.unet)
    size = profile.warmup_size or int(unet.config.sample_size) * int(pipeline.vae_scale_factor)
    zero = AvatarLora(
        WARMUP_AVATAR_ID,
        random_lora_state_dict(unet, rank=4, seed=0, scale=0.0),
        trigger="person",
        revision="warmup",
    )
    variants: list[AvatarRef | None] = [None]
    if profile.avatars:
        variants.append(AvatarRef(WARMUP_AVATAR_ID))
    adapter = engine.identity_adapter()
    identities: list[IdentityRef | None] = [None]
    warm_identity = None
    if adapter is not None:
        identities.append(IdentityRef(WARMUP_AVATAR_ID, scale=WARMUP_IDENTITY_SCALE))
        warm_identity = IdentityEmbedding(
            WARMUP_AVATAR_ID, adapter.key, adapter.kind, np.zeros(adapter.dim, np.float32)
        )

    def avatar_source(_avatar_id: str) -> AvatarLora:
        return zero

    def identity_source(_avatar_id: str) -> IdentityEmbedding:
        assert warm_identity is not None
        return warm_identity

    rows: list[dict[str, Any]] = []

    def timed(row: dict[str, Any], render: Callable[[], Any]) -> None:
        started = time.perf_counter()
        render()
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        if log:
            log(
                f"serving: warm-up batch {row['batch_size']} avatar={row['avatar']} "
                f"identity={row['identity']} {row['seconds']:.1f}s"
            )

    for batch in profile.warmup_batch_sizes:
        for avatar in variants:
            for identity in identities:
                spec = RenderSpec(
                    prompt="{subject}, " + WARMUP_PROMPT if avatar else WARMUP_PROMPT,
                    seed=0,
                    num_images=batch,
                    steps=profile.warmup_steps,
                    guidance=float(profile.warmup_guidance),
                    width=size,
                    height=size,
                    avatar=avatar,
                    identity=identity,
                )
                timed(
                    {"batch_size": batch, "avatar": avatar is not None, "identity": bool(identity)},
                    functools.partial(
                        engine.render,
                        spec,
                        avatar_source=avatar_source,
                        identity_source=identity_source,
                    ),
                )
        pool = getattr(engine.loras, "pool", None)
        if batch > 1 and pool is not None and pool(pipeline, create=False) is not None:
            # A batch of different users' avatars runs the pool's per-sample graph.
            for identity in identities:
                spec = RenderSpec(
                    prompt="{subject}, " + WARMUP_PROMPT,
                    seed=0,
                    steps=profile.warmup_steps,
                    guidance=float(profile.warmup_guidance),
                    width=size,
                    height=size,
                    avatar=AvatarRef(WARMUP_AVATAR_ID),
                    identity=identity,
                )
                timed(
                    {"batch_size": batch, "avatar": "pool", "identity": bool(identity)},
                    functools.partial(
                        engine.render_batch,
                        [spec] * batch,
                        avatar_source=avatar_source,
                        identity_source=identity_source,
                    ),
                )
    slot = getattr(engine.loras, "slot", lambda _p: None)(pipeline)
    if slot is not None:
        slot.evict()
        slot.deactivate()
    pool = getattr(engine.loras, "pool", None)
    warm_pool = pool(pipeline, create=False) if pool is not None else None
    if warm_pool is not None:
        warm_pool.evict(f"{WARMUP_AVATAR_ID}@warmup")
    return rows
