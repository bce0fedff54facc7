"""torch.compile through the serving profile (bench/gpu.sh section ``compile``).

Builds the engine with `engine.serving.build_engine` and ``ServingProfile(compile=True)`` (the
worker's path), warms up one batch bucket (LoRA off and on: the compile time), then renders
``--avatars`` different avatars at different weights and counts dynamo frame compilations
after the warm-up (expected: 0, see `engine.adapters.AvatarSlot._pin_scales`), and times the
compiled renders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

from engine.bench import _engine
from engine.loras import AvatarLora, random_lora_state_dict
from engine.runtime import resolve_device
from engine.serving import ServingProfile
from engine.spec import AvatarRef, RenderSpec

WEIGHTS = (0.6, 0.8, 0.95, 1.1, 1.25, 0.7, 1.0, 1.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--avatars", type=int, default=5)
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: default)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    size = args.size or {"tiny": 64, "sd15-random": 512}.get(args.profile, 512)
    profile = ServingProfile(
        compile=True,
        compile_mode=args.mode,
        compile_backend=args.backend,
        warmup_batch_sizes=(args.batch,),
        warmup_size=size,
        warmup_steps=2,
        warmup_guidance=args.guidance,
    )
    report: dict[str, Any] = {
        "profile": args.profile,
        "device": str(device),
        "batch": args.batch,
        "steps": args.steps,
        "size": size,
        "mode": args.mode or "default",
        "backend": args.backend,
        "status": "started",
    }

    def write() -> None:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")

    write()  # a timeout still leaves what was measured
    with tempfile.TemporaryDirectory(prefix="gpu-compile-") as tmp:
        started = time.perf_counter()
        engine, source = _engine(args.profile, device, profile, None, Path(tmp))
        report["source"] = source
        report["build_and_warmup_s"] = time.perf_counter() - started
        report["warmup"] = engine.serving.get("warmup")
        report["frames_after_warmup"] = counters["frames"]["total"]
        report["status"] = "warmed up"
        write()
        pipeline = engine.pipeline()
        unet = pipeline.unet
        avatars = {
            f"user{i}": AvatarLora(
                f"user{i}", random_lora_state_dict(unet, seed=100 + i, scale=0.2), "sks", "1"
            )
            for i in range(args.avatars)
        }
        times = []
        frames = counters["frames"]["total"]
        for i, avatar_id in enumerate(avatars):
            spec = RenderSpec(
                prompt="{subject}, business portrait",
                seed=i,
                num_images=args.batch,
                steps=args.steps,
                guidance=args.guidance,
                width=size,
                height=size,
                avatar=AvatarRef(avatar_id, weight=WEIGHTS[i % len(WEIGHTS)]),
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            begin = time.perf_counter()
            engine.render(spec, avatar_source=avatars.__getitem__)
            times.append(time.perf_counter() - begin)
            report["recompiles_after_warmup"] = counters["frames"]["total"] - frames
            report["render_s"] = times
            write()
        report["render_s_min"] = min(times)
        report["render_s_median"] = statistics.median(times)
        report["images_per_s"] = args.batch / statistics.median(times)
        report["pipeline_s_last"] = engine.last_timings.get("pipeline_s")
        report["status"] = "ok"
    write()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
