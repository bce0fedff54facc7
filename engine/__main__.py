"""Command line: ``python -m engine build-tiny DIR`` and ``python -m engine render ...``.

torch and diffusers are imported only once a subcommand needs them, so ``--help`` and invalid
input fail fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import EngineError
from engine.registry import ModelRegistry
from engine.spec import RenderSpec


def _build_tiny(args: argparse.Namespace) -> int:
    from engine.tiny import build_tiny

    directory = build_tiny(args.directory, seed=args.seed)
    print((directory / "profile.json").read_text(encoding="utf-8"), end="")
    print(f"built tiny models (seed {args.seed}) in {directory}")
    return 0


def _output_paths(out: Path, count: int) -> list[Path]:
    """``out`` itself for one image; ``name-0.png``, ``name-1.png``... for a batch."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _render(args: argparse.Namespace) -> int:
    fields = ("prompt", "negative_prompt", "base_model", "seed", "steps", "guidance")
    fields += ("width", "height", "num_images")
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
