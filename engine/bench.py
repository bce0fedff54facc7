"""``python -m engine bench``: throughput, training, adapter and memory numbers for a profile.

Profiles:

- ``tiny``: built into a temporary folder and loaded with ``from_pretrained`` (seconds).
- ``sd15-random`` / ``sdxl-random``: loaded with ``from_pretrained`` from
  ``--models-dir/<profile>`` when ``python -m engine build-random`` saved it there, else built
  in memory on the target device (writing and re-reading 4-10 GB would measure the disk).

The engine is built with `engine.serving.build_engine` from a `engine.serving.ServingProfile`
(dtype, channels_last, QKV fusion, torch.compile): the same function and profile a worker
serves with, so the numbers are the worker's.

Every timed measurement runs ``--repeats`` times after a warm-up and reports the minimum and
the median (``*_min`` / ``*_median``; the plain key is the median).

Sections of the default run (each reports ``status``: ``ok``, ``unavailable`` when a module it
needs is missing, or ``skipped: <reason>``):

- ``throughput``: images/s of `Engine.render` (PNG encoding included) per batch size, after one
  warm-up render of the same shape (which also triggers compilation with ``--compile``).
- ``unet``: FLOPs of one UNet forward (``torch.utils.flop_counter``, batch of 2 per image for
  classifier-free guidance) and the achieved TFLOP/s of timed UNet forwards at the largest batch
  size; on CUDA also the fraction of the GPU's dense bf16 peak (data sheet) and of a measured
  bf16 matrix-product rate on this GPU.
- ``training``: seconds per avatar training (`engine.training`, SD1.x only), steps printed.
- ``adapter_switch``: seconds to make another avatar active: from disk (read the safetensors
  file + load), from RAM (load a state dict), hot-swap into `engine.adapters.AvatarSlot`.
- ``mixed_batch``: N requests for N different avatars, one image each: one mixed-adapter batch
  (`engine.adapters.per_sample_adapters`) vs N single-image batches with a hot-swap in between.
- ``batch_render``: N render requests of N different users (avatars), one image each, through
  the engine: one `Engine.render_batch` call (avatars loaded per sample for the call, PNG
  encoding included) vs N sequential `Engine.render` calls (a hot-swap before each); also the
  largest pixel difference between the two (batched kernels may round differently).
- ``memory``: peak RSS of the process (CPU) and ``torch.cuda.max_memory_allocated`` (CUDA).

``--job`` times what a user waits for instead, end to end:

- ``avatar_job``: a whole avatar: photo preparation (`engine.faces.prepare_training_photos`
  on variations of scikit-image's astronaut photo: detection, alignment, embeddings), LoRA
  training (`engine.training`) and saving (`engine.training.save_lora`), with each phase's
  share of the total.
- ``generation_job``: a whole generation with that avatar: ``--candidates`` candidates, ranked
  by likeness to the avatar's reference embedding, the best ``--keep`` labelled
  (`engine.labels`) and encoded: the pipeline time and the post-processing share (likeness +
  labels + encoding) of the total, from `Engine.last_timings`; then ``stream``: a run of such
  jobs back to back, finished in the render thread vs. in the post-processing pool while the
  next job denoises (`bench_job_stream`), as images/s of each and their ratio.

Face preparation / likeness need dlib and ``face_recognition_models``, labels a CJK font and
``invisible-watermark``; a missing one is reported as ``unavailable`` and that phase skipped
(training then uses synthetic photos).
"""

from __future__ import annotations

import io
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from engine.postprocess import LabelOptions, PostProcessor
from engine.registry import RANDOM_PROFILES, ModelRegistry
from engine.runtime import Engine, resolve_device, resolve_dtype
from engine.serving import ServingProfile, build_engine
from engine.spec import AvatarRef, RenderSpec

PROMPT = "a portrait photo of a person"
DEFAULT_SIZE = {"tiny": 64, "sd15-random": 512, "sdxl-random": 1024}
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
}
SECTIONS = (
    "throughput",
    "unet",
    "training",
    "adapter_switch",
    "mixed_batch",
    "batch_render",
    "memory",
)
JOB_SECTIONS = ("avatar_job", "generation_job", "memory")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def stats(times: Sequence[float]) -> dict[str, float | int]:
    """Minimum and median of repeated timings (seconds), and how many there were."""
    return {"min": min(times), "median": statistics.median(times), "runs": len(times)}


def _repeat(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(max(1, repeats)):
        seconds, result = _timed(fn, device)
        times.append(seconds)
    return times, result


def bf16_peak(device: torch.device) -> tuple[str | None, float | None]:
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def measured_bf16_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """This GPU's bf16 matrix-product rate on random data (the practical ceiling)."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3 / repeats
    del a, b
    return 2 * n**3 / seconds / 1e12


def _optional(module: str) -> Any | None:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def _engine(
    profile: str,
    device: torch.device,
    serving: ServingProfile,
    models_dir: Path | None,
    workdir: Path,
) -> tuple[Engine, str]:
    if profile == "tiny":
        from engine.tiny import build_tiny

        directory = build_tiny(workdir / "models")
        registry = ModelRegistry.for_profile("tiny", models_dir=directory)
        engine = build_engine(registry, device=str(device), profile=serving)
        return engine, "from_pretrained (tiny)"
    if profile not in RANDOM_PROFILES:
        raise SystemExit(f"unknown bench profile {profile!r}")
    models_dir = models_dir or workdir / "models"
    registry = ModelRegistry.for_profile(profile, models_dir=models_dir)
    if registry.status()[profile].ready:
        engine = build_engine(registry, device=str(device), profile=serving)
        return engine, f"from_pretrained ({models_dir / profile})"
    from engine.random_models import build_random_pipeline

    dtype = resolve_dtype(serving.dtype_for(device) or "auto", device)
    engine = build_engine(
        registry,
        device=str(device),
        profile=serving,
        loader=lambda _model: build_random_pipeline(profile, device=device, dtype=dtype),
    )
    return engine, "built in memory (random weights)"


def _unet_inputs(
    pipeline: Any, batch: int, size: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    unet = pipeline.unet
    scale = pipeline.vae_scale_factor
    config = unet.config
    sample = torch.randn(
        batch, config.in_channels, size // scale, size // scale, device=device, dtype=dtype
    )
    cross = getattr(pipeline, "text_encoder_2", None)
    dim = config.cross_attention_dim
    hidden = torch.randn(batch, 77, dim, device=device, dtype=dtype)
    kwargs: dict[str, Any] = {}
    if config.addition_embed_type == "text_time" and cross is not None:
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, device=device, dtype=dtype),
            "time_ids": torch.tensor(
                [[size, size, 0, 0, size, size]] * batch, device=device, dtype=dtype
            ),
        }
    from engine.identity import zero_image_embeds

    if image_embeds := zero_image_embeds(unet, batch, device=device, dtype=dtype):
        # An identity adapter is loaded: the UNet needs (zero) identity embeddings.
        kwargs.setdefault("added_cond_kwargs", {})["image_embeds"] = image_embeds
    timestep = torch.tensor(500, device=device)
    return sample, timestep, hidden, kwargs


def bench_unet(
    pipeline: Any,
    *,
    batch_images: int,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipeline.unet
    params = sum(p.numel() for p in unet.parameters())
    with torch.inference_mode():
        sample, timestep, hidden, kwargs = _unet_inputs(pipeline, 2, size, device, dtype)
        counter = FlopCounterMode(display=False)
        with counter:
            # ``forward`` runs the module eagerly even when it is compiled in place.
            unet.forward(sample, timestep, encoder_hidden_states=hidden, **kwargs)
        flops_per_image = counter.get_total_flops()  # one step, CFG batch of 2
        batch = 2 * batch_images
        sample, timestep, hidden, kwargs = _unet_inputs(pipeline, batch, size, device, dtype)
        unet(sample, timestep, encoder_hidden_states=hidden, **kwargs)  # warm-up
        times, _ = _repeat(
            lambda: unet(sample, timestep, encoder_hidden_states=hidden, **kwargs),
            device,
            repeats,
        )
    seconds = statistics.median(times)
    achieved = flops_per_image * batch_images / seconds / 1e12
    gpu, peak = bf16_peak(device)
    measured = measured_bf16_tflops(device) if dtype == torch.bfloat16 else None
    bf16 = dtype == torch.bfloat16
    return {
        "status": "ok",
        "params": params,
        "latent": [size // pipeline.vae_scale_factor] * 2,
        "flops_per_step_per_image": flops_per_image,
        "batch_rows": batch,
        "seconds_per_forward": seconds,
        "seconds_per_forward_min": min(times),
        "achieved_tflops": achieved,
        "gpu": gpu,
        "bf16_peak_tflops": peak,
        "fraction_of_bf16_peak": achieved / peak if peak and bf16 else None,
        "measured_bf16_matmul_tflops": measured,
        "fraction_of_measured_bf16": achieved / measured if measured else None,
    }


def _photos(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)) for _ in range(count)
    ]


def bench_training(pipeline: Any, *, steps: int, size: int) -> tuple[dict[str, Any], Any]:
    training = _optional("engine.training")
    if training is None:
        return {"status": "unavailable (engine.training missing)"}, None
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return {"status": "skipped: engine.training supports SD1.x pipelines only"}, None
    config = training.TrainingConfig(steps=steps, resolution=size, seed=0)
    start = time.perf_counter()
    trained = training.train_avatar_lora(pipeline=pipeline, photos=_photos(4, size), config=config)
    seconds = time.perf_counter() - start
    return {
        "status": "ok",
        "steps": steps,
        "resolution": size,
        "rank": config.rank,
        "seconds": seconds,
        "seconds_per_step": seconds / steps,
        "lora_bytes": trained.nbytes,
    }, trained


def _lora_variants(pipeline: Any, trained: Any, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` distinct avatar LoRAs: the trained one, scaled copies, or random ones."""
    if trained is not None:
        return [
            {k: v * (1.0 + 0.1 * i) if "up" in k else v for k, v in trained.state_dict.items()}
            for i in range(count)
        ]
    from engine.loras import random_lora_state_dict

    return [random_lora_state_dict(pipeline.unet, seed=i) for i in range(count)]


def bench_adapters(
    pipeline: Any,
    loras: Sequence[dict[str, torch.Tensor]],
    workdir: Path,
    device: torch.device,
    repeats: int = 3,
) -> dict[str, Any]:
    import safetensors.torch

    adapters = _optional("engine.adapters")
    path = workdir / "avatar.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in loras[0].items()}, str(path))
    result: dict[str, Any] = {"status": "ok", "lora_file_bytes": path.stat().st_size}

    if adapters is None:

        def load(name: str, source: Any) -> None:
            pipeline.load_lora_weights(dict(source), adapter_name=name)

        def unload(name: str) -> None:
            pipeline.delete_adapters([name])
    else:
        slot = adapters.avatar_slot(pipeline)  # must exist before other LoRAs are loaded

        def load(name: str, source: Any) -> None:
            adapters.load_adapter(pipeline, name, source)

        def unload(name: str) -> None:
            adapters.unload_adapters(pipeline, [name])

    def load_from_disk(name: str) -> None:
        load(name, safetensors.torch.load_file(str(path)))

    disk, ram = [], []
    for i in range(repeats):
        seconds, _ = _timed(partial(load_from_disk, f"bench_disk_{i}"), device)
        disk.append(seconds)
        unload(f"bench_disk_{i}")
        seconds, _ = _timed(partial(load, f"bench_ram_{i}", loras[0]), device)
        ram.append(seconds)
        unload(f"bench_ram_{i}")
    result["from_disk_s"] = statistics.median(disk)
    result["from_disk_s_min"] = min(disk)
    result["from_ram_s"] = statistics.median(ram)
    result["from_ram_s_min"] = min(ram)
    if adapters is None:
        result["hotswap_s"] = None
        result["hotswap_status"] = "unavailable (engine.adapters missing)"
        return result
    swaps = []
    slot.activate("bench-warm", loras[-1])
    for i in range(repeats):
        lora = loras[i % len(loras)]
        seconds, _ = _timed(
            partial(slot.activate, f"bench-{i}", lora, weight=0.8 + 0.1 * i), device
        )
        swaps.append(seconds)
    slot.deactivate()
    result["hotswap_s"] = statistics.median(swaps)
    result["hotswap_s_min"] = min(swaps)
    result["hotswap_status"] = "ok"
    return result


def bench_mixed(
    pipeline: Any,
    loras: Sequence[dict[str, torch.Tensor]],
    *,
    steps: int,
    size: int,
    guidance: float,
    device: torch.device,
    repeats: int = 1,
) -> dict[str, Any]:
    adapters = _optional("engine.adapters")
    if adapters is None:
        return {"status": "unavailable (engine.adapters missing)"}
    count = len(loras)
    if count < 2:
        return {"status": "skipped: needs a largest batch size of at least 2"}
    names = {f"bench-mix-{i}": lora for i, lora in enumerate(loras)}

    def call(num: int, seeds: Sequence[int]) -> Any:
        return pipeline(
            prompt=PROMPT,
            num_inference_steps=steps,
            guidance_scale=guidance,
            width=size,
            height=size,
            num_images_per_prompt=num,
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            output_type="pil",
        )

    slot = adapters.avatar_slot(pipeline)
    with (
        adapters.loaded_adapters(pipeline, names) as loaded,
        adapters.per_sample_adapters(pipeline, loaded),
    ):
        call(count, range(count))  # warm-up
        mixed_times, _ = _repeat(lambda: call(count, range(count)), device, repeats)

    def grouped_call() -> None:
        for i, lora in enumerate(loras):
            slot.activate(f"bench-group-{i}", lora)
            call(1, [i])

    grouped_call()  # warm-up (single-image shape)
    grouped_times, _ = _repeat(grouped_call, device, repeats)

    # The resident pool (what `Engine.render_batch` uses): one batch of `count` different
    # avatars, against one batch of `count` samples of a single hot-swapped avatar.
    slot.activate("bench-one", loras[0])
    call(count, range(count))  # warm-up
    one_times, _ = _repeat(lambda: call(count, range(count)), device, repeats)
    slot.deactivate()
    pool = adapters.AvatarPool(pipeline, slots=count, max_rank=slot.max_rank)
    try:
        keys = {f"bench-pool-{i}": lora for i, lora in enumerate(loras)}
        with pool.batch([(key, 1.0) for key in keys], keys):
            call(count, range(count))  # warm-up (and the one copy of each avatar)
            pool_times, _ = _repeat(lambda: call(count, range(count)), device, repeats)
    finally:
        pool.close()
    mixed, grouped = statistics.median(mixed_times), statistics.median(grouped_times)
    one, pooled = statistics.median(one_times), statistics.median(pool_times)
    return {
        "status": "ok",
        "adapters": count,
        "pool_seconds": pooled,
        "pool_seconds_min": min(pool_times),
        "single_avatar_seconds": one,
        "single_avatar_seconds_min": min(one_times),
        "pool_images_per_s": count / pooled,
        "single_avatar_images_per_s": count / one,
        "pool_vs_single_avatar": one / pooled,
        "mixed_seconds": mixed,
        "mixed_seconds_min": min(mixed_times),
        "grouped_seconds": grouped,
        "grouped_seconds_min": min(grouped_times),
        "mixed_images_per_s": count / mixed,
        "grouped_images_per_s": count / grouped,
        "speedup": grouped / mixed,
    }


def bench_batch_render(
    engine: Engine,
    loras: Sequence[dict[str, torch.Tensor]],
    *,
    steps: int,
    size: int,
    guidance: float,
    sampler: str | None,
    device: torch.device,
    repeats: int = 1,
) -> dict[str, Any]:
    if not hasattr(engine, "render_batch"):
        return {"status": "unavailable (Engine.render_batch missing)"}
    count = len(loras)
    if count < 2:
        return {"status": "skipped: needs a largest batch size of at least 2"}
    from engine.loras import AvatarLora

    avatars = {
        f"bench-user-{i}": AvatarLora(f"bench-user-{i}", lora, trigger="sks person", revision="1")
        for i, lora in enumerate(loras)
    }
    specs = [
        RenderSpec(
            prompt="{subject}, business portrait",
            seed=100 + i,
            avatar=AvatarRef(avatar_id),
            steps=steps,
            guidance=guidance,
            width=size,
            height=size,
            sampler=sampler,
        )
        for i, avatar_id in enumerate(avatars)
    ]

    def batched() -> list[Any]:
        return engine.render_batch(specs, avatar_source=avatars.__getitem__)

    def sequential() -> list[Any]:
        return [engine.render(spec, avatar_source=avatars.__getitem__) for spec in specs]

    batched()  # warm-up of both paths (and compilation at this shape)
    sequential()
    batch_times, sequential_times = [], []
    for _ in range(max(1, repeats)):
        seconds, batch = _timed(batched, device)
        batch_times.append(seconds)
        seconds, singles = _timed(sequential, device)
        sequential_times.append(seconds)
    batch_s, sequential_s = statistics.median(batch_times), statistics.median(sequential_times)

    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    diff = max(
        int(np.abs(pixels(b[0].png_bytes) - pixels(s[0].png_bytes)).max())
        for b, s in zip(batch, singles, strict=True)
    )
    return {
        "status": "ok",
        "requests": count,
        "avatars": count,
        "batch_seconds": batch_s,
        "batch_seconds_min": min(batch_times),
        "sequential_seconds": sequential_s,
        "sequential_seconds_min": min(sequential_times),
        "batch_images_per_s": count / batch_s,
        "sequential_images_per_s": count / sequential_s,
        "speedup": sequential_s / batch_s,
        "max_pixel_diff": diff,
    }


def bench_identity(
    engine: Engine,
    *,
    steps: int,
    size: int,
    guidance: float,
    sampler: str | None,
    device: torch.device,
    repeats: int = 1,
    photos: int = 20,
    batch: int = 4,
) -> dict[str, Any]:
    """Instant identity (`engine.identity`): building an identity from ``photos`` crops, a
    render with and without an identity, and a batch of ``batch`` different identities against
    ``batch`` samples of one identity (same shapes: the difference is the per-sample
    embeddings)."""
    from engine.identity import IdentityEmbedding
    from engine.spec import IdentityRef

    adapter = engine.identity_adapter()
    if adapter is None:
        return {"status": "skipped: no identity adapter loaded for the default base"}
    crops = _photos(photos, 224)
    engine.build_identity(crops[:2])  # warm-up
    build_times, built = _repeat(partial(engine.build_identity, crops), device, max(1, repeats))
    key, kind, vector = built
    rng = np.random.default_rng(0)
    identities = {
        f"bench-id-{i}": IdentityEmbedding(
            f"bench-id-{i}", key, kind, (vector + rng.normal(0, 0.1, vector.shape)).astype("f4")
        )
        for i in range(batch)
    }

    def spec(seed: int, identity: str | None) -> RenderSpec:
        return RenderSpec(
            prompt=PROMPT,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=size,
            height=size,
            sampler=sampler,
            identity=IdentityRef(identity) if identity else None,
        )

    def render(identity: str | None) -> Any:
        return engine.render(spec(1, identity), identity_source=identities.__getitem__)

    def render_batch(ids: Sequence[str]) -> Any:
        specs = [spec(10 + i, identity) for i, identity in enumerate(ids)]
        return engine.render_batch(specs, identity_source=identities.__getitem__)

    names = list(identities)
    plans: dict[str, Callable[[], Any]] = {
        "render_without_identity": partial(render, None),
        "render_with_identity": partial(render, names[0]),
        "batch_one_identity": partial(render_batch, [names[0]] * batch),
        "batch_mixed_identities": partial(render_batch, names),
    }
    seconds: dict[str, float] = {}
    for name, plan in plans.items():
        plan()  # warm-up (and compilation at this shape)
        times, _ = _repeat(plan, device, max(1, repeats))
        seconds[name] = statistics.median(times)
    return {
        "status": "ok",
        "adapter": key,
        "kind": kind,
        "photos": photos,
        "build_seconds": statistics.median(build_times),
        "render_seconds_per_image_without": seconds["render_without_identity"],
        "render_seconds_per_image_with": seconds["render_with_identity"],
        "identity_overhead": seconds["render_with_identity"] / seconds["render_without_identity"],
        "batch": batch,
        "mixed_images_per_s": batch / seconds["batch_mixed_identities"],
        "one_identity_images_per_s": batch / seconds["batch_one_identity"],
    }


def memory(device: torch.device) -> dict[str, Any]:
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        rss_kb //= 1024
    result: dict[str, Any] = {"status": "ok", "peak_rss_mb": rss_kb / 1024}
    if device.type == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


# --------------------------------------------------------------------------- whole jobs


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def job_photos(count: int) -> tuple[list[bytes], str]:
    """``count`` photos of one person as JPEG bytes (crops, mirror, tone changes of
    scikit-image's astronaut, the one real face photo available offline), and their source;
    synthetic faceless images when scikit-image is missing."""
    try:
        from skimage.data import astronaut
    except ImportError:
        return [_jpeg(image) for image in _photos(count, 512)], "synthetic (no scikit-image)"
    # 1024 px so her face (~180 px) passes the 128 px minimum of the preparation.
    base = Image.fromarray(astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)
    variations: list[Callable[[Image.Image], Image.Image]] = [
        lambda im: im,
        ImageOps.mirror,
        lambda im: ImageEnhance.Brightness(im).enhance(1.12),
        lambda im: ImageEnhance.Contrast(im).enhance(0.88),
        lambda im: im.crop((40, 0, 1024, 984)).resize((1024, 1024)),
        lambda im: ImageEnhance.Color(ImageOps.mirror(im)).enhance(0.8),
    ]
    return [_jpeg(variations[i % len(variations)](base)) for i in range(count)], "astronaut"


def _probe_faces() -> str:
    """``ok`` when face preparation and likeness can run here, else why not."""
    try:
        from engine import faces

        faces.likeness(Image.new("RGB", (64, 64)), np.zeros(128, dtype=np.float32))
    except Exception as exc:  # ImportError (dlib), FaceModelsMissingError, ...
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "ok"


def _probe_labels() -> str:
    try:
        from engine.labels import apply_labels

        apply_labels(Image.new("RGB", (256, 256)), job_id="probe", producer="bench")
    except Exception as exc:  # LabelFontError, ImportError (imwatermark, cv2), ...
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "ok"


def _phase_stats(rows: Sequence[dict[str, float]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        out[key] = stats([row[key] for row in rows])
    return out


def bench_avatar_job(
    engine: Engine,
    *,
    photos: int,
    steps: int,
    size: int,
    workdir: Path,
    repeats: int,
) -> tuple[dict[str, Any], Any, np.ndarray | None]:
    """A whole avatar: preparation + training + save. Returns (report, LoRA, reference)."""
    from engine.training import TrainingConfig, lora_to_bytes, save_lora, train_avatar_lora

    pipeline = engine.pipeline()
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return {"status": "skipped: avatar training supports SD1.x pipelines only"}, None, None
    photo_bytes, source = job_photos(photos)
    faces_status = _probe_faces()
    config = TrainingConfig(steps=steps, resolution=size, seed=0, batch_size=min(2, photos))
    rows: list[dict[str, float]] = []
    trained: Any = None
    reference: np.ndarray | None = None
    accepted = 0
    for run in range(max(1, repeats)):
        row: dict[str, float] = {}
        started = time.perf_counter()
        training_photos: list[Image.Image]
        training_photos = []
        if faces_status == "ok":
            from engine.faces import FacesError, prepare_training_photos

            try:
                # Crops at 512 px at least, as a worker prepares them (the blur gate needs
                # pixels); training resizes them to its own resolution.
                prepared = prepare_training_photos(
                    photo_bytes[0], photo_bytes, resolution=max(size, 512)
                )
            except FacesError as exc:
                faces_status = f"failed: {exc}"
            else:
                training_photos = [photo.image for photo in prepared.accepted]
                reference = prepared.reference_embedding
                accepted = len(training_photos)
        if not training_photos:  # no face stack, or no face found
            training_photos = _photos(photos, size)
        row["prepare_s"] = time.perf_counter() - started
        phase = time.perf_counter()
        trained = train_avatar_lora(pipeline=pipeline, photos=training_photos, config=config)
        _sync(engine.device)
        row["train_s"] = time.perf_counter() - phase
        phase = time.perf_counter()
        save_lora(trained, workdir / f"avatar-{run}")
        lora_to_bytes(trained)  # what the worker uploads
        row["save_s"] = time.perf_counter() - phase
        row["total_s"] = time.perf_counter() - started
        rows.append(row)
    report: dict[str, Any] = {
        "status": "ok",
        "photos": photos,
        "photo_source": source,
        "preparation": faces_status,
        "accepted": accepted,
        "steps": steps,
        "resolution": size,
        "batch_size": config.batch_size,
        **_phase_stats(rows, ("prepare_s", "train_s", "save_s", "total_s")),
    }
    total = statistics.median(r["total_s"] for r in rows)
    report["shares"] = {
        key: statistics.median(r[key] for r in rows) / total
        for key in ("prepare_s", "train_s", "save_s")
    }
    report["training_steps_per_s"] = steps / report["train_s"]["median"]
    report["overhead_share"] = 1.0 - report["shares"]["train_s"]
    return report, trained, reference


def bench_generation_job(
    engine: Engine,
    trained: Any,
    reference: np.ndarray | None,
    *,
    candidates: int,
    keep: int,
    steps: int,
    size: int,
    guidance: float,
    sampler: str | None,
    repeats: int,
) -> dict[str, Any]:
    """A whole generation: candidates with the avatar, likeness ranking, labels, encoding."""
    from engine.loras import AvatarLora, random_lora_state_dict

    pipeline = engine.pipeline()
    likeness_status = _probe_faces()
    if likeness_status == "ok" and reference is None:
        reference = np.random.default_rng(0).normal(0.0, 0.05, 128).astype(np.float32)
    if likeness_status != "ok":
        reference = None
    labels_status = _probe_labels()
    label = (
        LabelOptions(job_id="bench-job-00000001", producer="engine-bench")
        if labels_status == "ok"
        else None
    )
    state = trained.state_dict if trained is not None else random_lora_state_dict(pipeline.unet)
    avatar = AvatarLora("bench-job-avatar", state, trigger="sks person", revision="1")
    spec = RenderSpec(
        prompt="{subject}, business portrait, studio light",
        negative_prompt="blurry",
        seed=7,
        num_images=candidates,
        keep=min(keep, candidates),
        steps=steps,
        guidance=guidance,
        width=size,
        height=size,
        sampler=sampler,
        avatar=AvatarRef("bench-job-avatar", weight=0.9),
    )

    job_kwargs: dict[str, Any] = {
        "spec": spec,
        "avatar_source": lambda _id: avatar,
        "reference_embedding": reference,
        "label": label,
    }

    def job() -> list[Any]:
        return engine.render(**job_kwargs)

    job()  # warm-up (and compilation at this shape)
    rows = []
    results: list[Any] = []
    for _ in range(max(1, repeats)):
        _sync(engine.device)
        results = job()
        rows.append(dict(engine.last_timings))
    post = [(r["likeness_s"] + r["output_s"]) / r["total_s"] for r in rows]
    report: dict[str, Any] = {
        "status": "ok",
        "candidates": candidates,
        "kept": len(results),
        "steps": steps,
        "size": size,
        "likeness": likeness_status,
        "labels": labels_status,
        "formats": sorted({r.format for r in results}),
        **_phase_stats(rows, ("pipeline_s", "likeness_s", "output_s", "total_s")),
        "postprocess_share": statistics.median(post),
        "postprocess_share_min": min(post),
    }
    report["images_per_s"] = candidates / report["total_s"]["median"]
    report["stream"] = bench_job_stream(
        engine, job_kwargs, jobs=max(4, repeats), workers=max(1, engine.postprocess.workers)
    )
    return report


def bench_job_stream(
    engine: Engine, job_kwargs: dict[str, Any], *, jobs: int, workers: int
) -> dict[str, Any]:
    """``jobs`` generation jobs back to back, as a worker runs them: finished in the render
    thread one after the other (``inline``, the behaviour before the post-processing pool),
    then with ``workers`` post-processing processes, each job's finishing overlapping the next
    job's denoising (``pipelined``, `jobs.pipelining` with depth 1). Same engine, same run."""
    saved = engine.postprocess
    spec = job_kwargs["spec"]
    options = {k: v for k, v in job_kwargs.items() if k != "spec"}
    report: dict[str, Any] = {"jobs": jobs, "postprocess_workers": workers}
    try:
        engine.postprocess = PostProcessor(0)
        engine.render(spec, **options)  # warm
        started = time.perf_counter()
        for _ in range(jobs):
            engine.render(spec, **options)
        _sync(engine.device)
        inline_s = time.perf_counter() - started

        engine.postprocess = PostProcessor(workers)
        for ready in engine.postprocess.start():
            ready.result()
        engine.render(spec, **options)  # warm the pool's processes
        started = time.perf_counter()
        previous = None
        for _ in range(jobs):
            pending = engine.start_render(spec, **options)
            if previous is not None:
                previous.result()
            previous = pending
        assert previous is not None
        previous.result()
        _sync(engine.device)
        pipelined_s = time.perf_counter() - started
        engine.postprocess.shutdown()
    finally:
        engine.postprocess = saved
    images = jobs * spec.num_kept
    report.update(
        inline_s=inline_s,
        pipelined_s=pipelined_s,
        inline_images_per_s=images / inline_s,
        pipelined_images_per_s=images / pipelined_s,
        speedup=inline_s / pipelined_s,
    )
    return report


# --------------------------------------------------------------------------- running


def run_bench(
    profile: str,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4),
    steps: int = 4,
    size: int | None = None,
    guidance: float = 5.0,
    sampler: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    models_dir: Path | None = None,
    compile_unet: bool = False,
    compile_mode: str | None = None,
    channels_last: bool | None = None,
    fuse_qkv: bool = False,
    train_steps: int | None = None,
    train_size: int | None = None,
    repeats: int = 1,
    threads: int | None = None,
    job: bool = False,
    candidates: int = 4,
    keep: int = 2,
    photos: int = 4,
    log: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Run every section (or, with ``job``, the whole-job sections) and return the report
    (see the module docstring).

    ``threads``: torch CPU threads for the run (default: 1 for ``tiny``, whose kernels are too
    small to gain from threads and lose badly to OpenMP spinning on a shared machine; torch's
    default otherwise). The caller's setting is restored afterwards.
    """
    threads_before = torch.get_num_threads()
    if threads is None and profile == "tiny":
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_bench(
            profile,
            batch_sizes=batch_sizes,
            steps=steps,
            size=size,
            guidance=guidance,
            sampler=sampler,
            device=device,
            dtype=dtype,
            models_dir=models_dir,
            compile_unet=compile_unet,
            compile_mode=compile_mode,
            channels_last=channels_last,
            fuse_qkv=fuse_qkv,
            train_steps=train_steps,
            train_size=train_size,
            repeats=repeats,
            job=job,
            candidates=candidates,
            keep=keep,
            photos=photos,
            log=log,
        )
    finally:
        torch.set_num_threads(threads_before)


def serving_profile(
    *,
    dtype: str | None,
    channels_last: bool | None,
    compile_unet: bool,
    compile_mode: str | None,
    fuse_qkv: bool = False,
) -> ServingProfile:
    """The bench's serving profile: the worker's defaults, with the bench's overrides. The
    bench warms up each shape itself, so the profile's own warm-up is off."""
    return ServingProfile(
        dtype=dtype or "auto",
        channels_last=channels_last,
        fuse_qkv=fuse_qkv,
        compile=compile_unet,
        compile_mode=compile_mode,
        warmup_batch_sizes=(),
    )


def _run_bench(
    profile: str,
    *,
    batch_sizes: Sequence[int],
    steps: int,
    size: int | None,
    guidance: float,
    sampler: str | None,
    device: str,
    dtype: str | None,
    models_dir: Path | None,
    compile_unet: bool,
    compile_mode: str | None,
    channels_last: bool | None,
    fuse_qkv: bool,
    train_steps: int | None,
    train_size: int | None,
    repeats: int,
    job: bool,
    candidates: int,
    keep: int,
    photos: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    started = time.perf_counter()
    torch_device = resolve_device(device)
    serving = serving_profile(
        dtype=dtype,
        channels_last=channels_last,
        compile_unet=compile_unet,
        compile_mode=compile_mode,
        fuse_qkv=fuse_qkv,
    )
    torch_dtype = resolve_dtype(serving.dtype_for(torch_device) or "auto", torch_device)
    size = size or DEFAULT_SIZE.get(profile, 512)
    if train_steps is None:
        train_steps = 10 if profile == "tiny" or torch_device.type == "cuda" else 1
    report: dict[str, Any] = {
        "mode": "job" if job else "sections",
        "profile": profile,
        "device": str(torch_device),
        "dtype": str(torch_dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "size": size,
        "steps": steps,
        "guidance": guidance,
        "repeats": repeats,
        "batch_sizes": list(batch_sizes),
    }
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        workdir = Path(tmp)
        seconds, (engine, source) = _timed(
            lambda: _engine(profile, torch_device, serving, models_dir, workdir), torch_device
        )
        pipeline = engine.pipeline()
        report["load"] = {"seconds": seconds, "source": source}
        log(f"loaded {profile} in {seconds:.1f}s ({source})")
        report["serving_profile"] = engine.serving.get("profile")
        report["speed_options"] = engine.serving.get("models", {}).get(
            engine.registry.default_base, {}
        )
        modes = engine.mode_pipelines()
        from engine.pipelines import make_scheduler

        report["scheduler"] = type(make_scheduler(sampler, modes.default_scheduler)).__name__
        if job:
            report["avatar_job"], trained, reference = bench_avatar_job(
                engine,
                photos=photos,
                steps=train_steps,
                size=train_size or size,
                workdir=workdir,
                repeats=repeats,
            )
            log(f"avatar job: {report['avatar_job'].get('total_s', report['avatar_job'])}")
            report["generation_job"] = bench_generation_job(
                engine,
                trained,
                reference,
                candidates=candidates,
                keep=keep,
                steps=steps,
                size=size,
                guidance=guidance,
                sampler=sampler,
                repeats=repeats,
            )
            log(f"generation job: {report['generation_job'].get('total_s')}")
            report["memory"] = memory(torch_device)
            report["total_seconds"] = time.perf_counter() - started
            return report

        rows = []
        for batch in batch_sizes:
            spec = RenderSpec(
                prompt=PROMPT,
                seed=0,
                num_images=batch,
                steps=steps,
                guidance=guidance,
                width=size,
                height=size,
                sampler=sampler,
            )
            engine.render(spec)  # warm-up (and compilation) at this shape
            times, _ = _repeat(partial(engine.render, spec), torch_device, repeats)
            seconds = statistics.median(times)
            rows.append(
                {
                    "batch_size": batch,
                    "seconds": seconds,
                    "seconds_min": min(times),
                    "seconds_median": seconds,
                    "images_per_s": batch / seconds,
                    "images_per_s_best": batch / min(times),
                    "seconds_per_image": seconds / batch,
                }
            )
            log(f"batch {batch}: {seconds:.3f}s, {batch / seconds:.2f} images/s")
        report["throughput"] = {"status": "ok", "rows": rows}

        report["unet"] = bench_unet(
            pipeline,
            batch_images=max(batch_sizes),
            size=size,
            device=torch_device,
            dtype=torch_dtype,
            repeats=max(1, repeats),
        )
        log(f"unet: {report['unet']['achieved_tflops']:.3f} TFLOP/s")

        report["training"], trained = bench_training(pipeline, steps=train_steps, size=size)
        log(f"training: {report['training'].get('seconds', report['training']['status'])}")
        loras = _lora_variants(pipeline, trained, max(2, max(batch_sizes)))
        report["adapter_switch"] = bench_adapters(
            pipeline, loras, workdir, torch_device, repeats=max(3, repeats)
        )
        log("adapter switch measured")
        report["mixed_batch"] = bench_mixed(
            pipeline,
            loras[: max(batch_sizes)],
            steps=steps,
            size=size,
            guidance=guidance,
            device=torch_device,
            repeats=repeats,
        )
        report["batch_render"] = bench_batch_render(
            engine,
            loras[: max(batch_sizes)],
            steps=steps,
            size=size,
            guidance=guidance,
            sampler=sampler,
            device=torch_device,
            repeats=repeats,
        )
        log("batch render measured")
        report["identity"] = bench_identity(
            engine,
            steps=steps,
            size=size,
            guidance=guidance,
            sampler=sampler,
            device=torch_device,
            repeats=repeats,
            batch=max(2, max(batch_sizes)),
        )
        log(f"identity: {report['identity']['status']}")
        report["memory"] = memory(torch_device)
    report["total_seconds"] = time.perf_counter() - started
    return report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return (
            f"{value:.{digits}g}"
            if abs(value) < 1e-3 or abs(value) >= 1e4
            else f"{value:.{digits}f}"
        )
    return str(value)


def _header(report: dict[str, Any]) -> list[str]:
    return [
        f"profile {report['profile']} on {report['device']} ({report['dtype']}, "
        f"{report['torch_threads']} threads), {report['size']}x{report['size']} px, "
        f"{report['steps']} steps, guidance {report['guidance']}, scheduler {report['scheduler']}"
        f", {report.get('repeats', 1)} repeat(s): min / median",
        f"load: {_fmt(report['load']['seconds'])} s, {report['load']['source']}; "
        f"speed options: {report['speed_options']}",
        "",
    ]


def _min_median(entry: dict[str, Any]) -> str:
    return f"{_fmt(entry['min'])} / {_fmt(entry['median'])} s"


def format_job_table(report: dict[str, Any]) -> str:
    lines = _header(report)
    avatar = report["avatar_job"]
    if avatar["status"] == "ok":
        shares = avatar["shares"]
        lines += [
            f"avatar job ({avatar['photos']} photos from {avatar['photo_source']}, "
            f"{avatar['accepted']} accepted, preparation {avatar['preparation']}; "
            f"{avatar['steps']} steps at {avatar['resolution']} px, batch {avatar['batch_size']}):",
            f"  total    {_min_median(avatar['total_s'])}",
            f"  prepare  {_min_median(avatar['prepare_s'])}  ({shares['prepare_s']:.1%})",
            f"  train    {_min_median(avatar['train_s'])}  ({shares['train_s']:.1%}, "
            f"{_fmt(avatar['training_steps_per_s'])} steps/s)",
            f"  save     {_min_median(avatar['save_s'])}  ({shares['save_s']:.1%})",
        ]
    else:
        lines.append(f"avatar job: {avatar['status']}")
    gen = report["generation_job"]
    if gen["status"] == "ok":
        lines += [
            f"generation job ({gen['candidates']} candidates, {gen['kept']} kept, likeness "
            f"{gen['likeness']}, labels {gen['labels']}):",
            f"  total     {_min_median(gen['total_s'])}  ({_fmt(gen['images_per_s'])} "
            "candidates/s)",
            f"  pipeline  {_min_median(gen['pipeline_s'])}",
            f"  likeness  {_min_median(gen['likeness_s'])}",
            f"  labels+encode {_min_median(gen['output_s'])}",
            f"  post-processing share {gen['postprocess_share']:.1%} (median)",
        ]
        stream = gen["stream"]
        lines.append(
            f"  {stream['jobs']} jobs back to back: {_fmt(stream['inline_images_per_s'])} "
            f"images/s finished in the render thread, {_fmt(stream['pipelined_images_per_s'])} "
            f"with {stream['postprocess_workers']} post-processing process(es) overlapping "
            f"the next job ({_fmt(stream['speedup'])}x)"
        )
    else:
        lines.append(f"generation job: {gen['status']}")
    mem = report["memory"]
    lines.append(
        f"peak RSS {mem['peak_rss_mb']:.0f} MB"
        + (
            f", CUDA max allocated {mem['cuda_max_allocated_mb']:.0f} MB"
            if "cuda_max_allocated_mb" in mem
            else ""
        )
    )
    lines.append(f"total {report['total_seconds']:.1f} s")
    return "\n".join(lines)


def format_table(report: dict[str, Any]) -> str:
    if report.get("mode") == "job":
        return format_job_table(report)
    lines = _header(report)
    lines.append("batch  s (min)  s (median)  images/s  s/image")
    for row in report["throughput"]["rows"]:
        lines.append(
            f"{row['batch_size']:>5}  {_fmt(row['seconds_min']):>7}  {_fmt(row['seconds']):>10}  "
            f"{_fmt(row['images_per_s']):>8}  {_fmt(row['seconds_per_image']):>7}"
        )
    unet = report["unet"]
    lines += [
        "",
        f"UNet: {unet['params'] / 1e6:.1f}M params, {unet['flops_per_step_per_image'] / 1e9:.2f} "
        f"GFLOP per step per image (CFG), {_fmt(unet['seconds_per_forward'])} s per forward of "
        f"{unet['batch_rows']} rows, {_fmt(unet['achieved_tflops'])} TFLOP/s"
        + (
            f" = {unet['fraction_of_bf16_peak']:.1%} of {unet['gpu']} bf16 peak"
            if unet.get("fraction_of_bf16_peak")
            else ""
        )
        + (
            f", {unet['fraction_of_measured_bf16']:.1%} of a measured bf16 matmul"
            if unet.get("fraction_of_measured_bf16")
            else ""
        ),
    ]
    training = report["training"]
    if training["status"] == "ok":
        lines.append(
            f"training: {training['steps']} steps at {training['resolution']} px in "
            f"{_fmt(training['seconds'])} s ({_fmt(training['seconds_per_step'])} s/step)"
        )
    else:
        lines.append(f"training: {training['status']}")
    switch = report["adapter_switch"]
    lines.append(
        f"adapter switch: from disk {_fmt(switch.get('from_disk_s'))} s, from RAM "
        f"{_fmt(switch.get('from_ram_s'))} s, hot-swap {_fmt(switch.get('hotswap_s'))} s"
    )
    mixed = report["mixed_batch"]
    if mixed["status"] == "ok":
        lines.append(
            f"mixed batch of {mixed['adapters']} avatars: {_fmt(mixed['mixed_images_per_s'])} "
            f"images/s vs grouped {_fmt(mixed['grouped_images_per_s'])} images/s "
            f"({_fmt(mixed['speedup'])}x); avatar pool {_fmt(mixed['pool_images_per_s'])} "
            f"images/s vs one avatar {_fmt(mixed['single_avatar_images_per_s'])} images/s "
            f"({_fmt(mixed['pool_vs_single_avatar'])}x)"
        )
    else:
        lines.append(f"mixed batch: {mixed['status']}")
    batched = report.get("batch_render", {"status": "not run"})
    if batched["status"] == "ok":
        lines.append(
            f"render_batch of {batched['requests']} users: "
            f"{_fmt(batched['batch_images_per_s'])} images/s vs sequential render "
            f"{_fmt(batched['sequential_images_per_s'])} images/s ({_fmt(batched['speedup'])}x, "
            f"max pixel diff {batched['max_pixel_diff']})"
        )
    else:
        lines.append(f"render_batch: {batched['status']}")
    identity = report.get("identity", {"status": "not run"})
    if identity["status"] == "ok":
        lines.append(
            f"identity ({identity['adapter']}): build from {identity['photos']} crops "
            f"{_fmt(identity['build_seconds'])}s; render "
            f"{_fmt(identity['render_seconds_per_image_with'])}s/img with vs "
            f"{_fmt(identity['render_seconds_per_image_without'])}s/img without; batch of "
            f"{identity['batch']} identities {_fmt(identity['mixed_images_per_s'])} images/s "
            f"vs one identity {_fmt(identity['one_identity_images_per_s'])} images/s"
        )
    else:
        lines.append(f"identity: {identity['status']}")
    mem = report["memory"]
    lines.append(
        f"peak RSS {mem['peak_rss_mb']:.0f} MB"
        + (
            f", CUDA max allocated {mem['cuda_max_allocated_mb']:.0f} MB"
            if "cuda_max_allocated_mb" in mem
            else ""
        )
    )
    lines.append(f"total {report['total_seconds']:.1f} s")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
