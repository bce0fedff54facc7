"""Command line: ``python -m engine build-tiny DIR``, ``build-random``, ``render``, ``bench``.

torch and diffusers are imported only once a subcommand needs them, so ``--help`` and invalid
input fail fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import EngineError
from engine.registry import RANDOM_PROFILES, ModelRegistry
from engine.spec import SAMPLERS, RenderSpec


def _build_tiny(args: argparse.Namespace) -> int:
    from engine.tiny import build_tiny

    directory = build_tiny(args.directory, seed=args.seed)
    print((directory / "profile.json").read_text(encoding="utf-8"), end="")
    print(f"built tiny models (seed {args.seed}) in {directory}")
    return 0


def _build_random(args: argparse.Namespace) -> int:
    import time

    import torch

    from engine.random_models import save_random

    started = time.perf_counter()
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    parts = ("base", "identity") if args.only is None else (args.only,)
    written = save_random(
        args.profile,
        args.directory,
        seed=args.seed,
        dtype=dtype[args.dtype],
        parts=parts,
        identity_encoder=args.identity_encoder,
        device=args.device,
    )
    print(
        f"built {args.profile} (seed {args.seed}, {args.dtype}) in "
        f"{', '.join(str(path) for path in written)} in {time.perf_counter() - started:.1f}s"
    )
    return 0


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


def _bench(args: argparse.Namespace) -> int:
    from engine.bench import format_table, run_bench, write_report

    report = run_bench(
        args.profile,
        batch_sizes=args.batch_sizes,
        steps=args.steps,
        size=args.size,
        guidance=args.guidance,
        sampler=args.sampler,
        device=args.device,
        dtype=args.dtype,
        models_dir=args.models_dir,
        compile_unet=args.compile,
        compile_mode=args.compile_mode,
        channels_last=False if args.no_channels_last else None,
        fuse_qkv=args.fuse_qkv,
        train_steps=args.train_steps,
        train_size=args.train_size,
        repeats=args.repeats,
        threads=args.threads,
        job=args.job,
        candidates=args.candidates,
        keep=args.keep,
        photos=args.photos,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(report))
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _output_paths(out: Path, count: int) -> list[Path]:
    """``out`` itself for one image; ``name-0.png``, ``name-1.png``... for a batch."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _render(args: argparse.Namespace) -> int:
    fields = ["prompt", "negative_prompt", "base_model", "seed", "steps", "guidance"]
    fields += ["width", "height", "num_images", "sampler"]
    spec = RenderSpec.from_dict(
        {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    )
    registry = ModelRegistry.for_profile(
        args.profile, models_dir=args.models_dir, config_file=args.config
    )
    from engine.runtime import Engine

    engine = Engine(registry, device=args.device, dtype=args.dtype)
    images = engine.render(spec)
    for image, path in zip(images, _output_paths(args.out, len(images)), strict=True):
        path.write_bytes(image.png_bytes)
        print(f"wrote {path} (seed {image.seed}, {image.width}x{image.height})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-tiny", help="build the tiny random-weight test models")
    build.add_argument("directory", type=Path)
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=_build_tiny)

    random = commands.add_parser(
        "build-random",
        help="build a full-size architecture with random weights and save it (save_pretrained)",
    )
    random.add_argument("--profile", choices=sorted(RANDOM_PROFILES), required=True)
    random.add_argument("directory", type=Path)
    random.add_argument("--seed", type=int, default=0)
    random.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    random.add_argument(
        "--only",
        choices=["base", "identity"],
        help="write only the pipeline or only the identity adapter (sd15-random); default both",
    )
    random.add_argument(
        "--identity-encoder",
        choices=["vit-h-14", "small"],
        default="vit-h-14",
        help="the identity adapter's CLIP image encoder: ip-adapter_sd15's ViT-H/14 (default) "
        "or a 2-layer one with the same output size, for CPU tests",
    )
    random.add_argument(
        "--device",
        default="cpu",
        help="where the random weights are drawn (cuda is faster for the big models; its "
        "random values differ from the CPU's)",
    )
    random.set_defaults(handler=_build_random)

    bench = commands.add_parser("bench", help="benchmark a profile; prints a table, writes JSON")
    bench.add_argument("--profile", choices=["tiny", *sorted(RANDOM_PROFILES)], default="tiny")
    bench.add_argument("--json", type=Path, help="write the full report here")
    bench.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 2, 4])
    bench.add_argument("--steps", type=int, default=4)
    bench.add_argument("--size", type=int, help="image side in px (default: the model's own)")
    bench.add_argument("--guidance", type=float, default=5.0)
    bench.add_argument("--sampler", choices=SAMPLERS)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--dtype", help="default: bfloat16 on CUDA, float32 elsewhere")
    bench.add_argument("--models-dir", type=Path, help="where build-random saved the profile")
    bench.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    bench.add_argument(
        "--compile-mode",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode (default: torch's default)",
    )
    bench.add_argument(
        "--no-channels-last", action="store_true", help="(channels_last is on on CUDA only)"
    )
    bench.add_argument(
        "--fuse-qkv", action="store_true", help="fuse attention QKV (the VAE's: LoRA-safe)"
    )
    bench.add_argument(
        "--job",
        action="store_true",
        help="time whole jobs: an avatar (preparation, training, save) and a generation "
        "(candidates, likeness ranking, labels, encoding)",
    )
    bench.add_argument("--candidates", type=int, default=4, help="--job: candidates rendered")
    bench.add_argument("--keep", type=int, default=2, help="--job: candidates kept")
    bench.add_argument("--photos", type=int, default=4, help="--job: avatar photos")
    bench.add_argument(
        "--train-steps",
        type=int,
        help="avatar training steps (default 10; 1 for full-size models on CPU)",
    )
    bench.add_argument(
        "--train-size",
        type=int,
        help="--job: avatar training resolution in px (default: --size)",
    )
    bench.add_argument("--repeats", type=int, default=1, help="timed runs per measurement")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: 1 for tiny)")
    bench.set_defaults(handler=_bench)

    render = commands.add_parser("render", help="render a text-to-image spec to PNG files")
    render.add_argument("--models-dir", type=Path, required=True)
    render.add_argument("--profile", default="tiny")
    render.add_argument("--config", type=Path, help="JSON model config (see engine.registry)")
    render.add_argument("--model", dest="base_model", help="base model key (default: profile's)")
    render.add_argument("--prompt", required=True)
    render.add_argument("--negative-prompt")
    render.add_argument("--seed", type=int, required=True)
    render.add_argument("--steps", type=int)
    render.add_argument("--guidance", type=float)
    render.add_argument("--width", type=int)
    render.add_argument("--height", type=int)
    render.add_argument("--num-images", type=int)
    render.add_argument("--sampler", choices=SAMPLERS)
    render.add_argument("--device", default="auto")
    render.add_argument("--dtype", help="override the model dtype (float32, float16, bfloat16)")
    render.add_argument("--out", type=Path, required=True)
    render.set_defaults(handler=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
