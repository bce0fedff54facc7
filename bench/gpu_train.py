"""Avatar training speed and memory (bench/gpu.sh section ``training``).

Trains an avatar LoRA (`engine.training.train_avatar_lora`) on the profile's pipeline, as the
worker does, once per ``--configs`` entry (``batch:mixed_precision``, e.g.
``1:auto,2:auto,4:auto,2:no``) and reports seconds, steps/s (all steps, and the steady rate after the first
``--warmup-steps``) and the peak device memory of each run (CUDA:
``torch.cuda.max_memory_allocated`` after a reset; CPU: the process's peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from engine.bench import _engine, _photos, serving_profile
from engine.runtime import resolve_device
from engine.training import TrainingConfig, train_avatar_lora


def _configs(text: str) -> list[tuple[int, str]]:
    configs = []
    for part in text.split(","):
        batch, _, precision = part.strip().partition(":")
        configs.append((int(batch), precision or "auto"))
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--configs", type=_configs, default=_configs("1:auto,2:auto"))
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    serving = serving_profile(
        dtype=args.dtype, channels_last=None, compile_unet=False, compile_mode=None
    )
    size = args.size or {"tiny": 64, "sd15-random": 512}.get(args.profile, 512)
    report: dict[str, Any] = {"profile": args.profile, "device": str(device), "size": size}
    with tempfile.TemporaryDirectory(prefix="gpu-train-") as tmp:
        started = time.perf_counter()
        engine, source = _engine(args.profile, device, serving, None, Path(tmp))
        pipeline = engine.pipeline()
        report["load_s"] = time.perf_counter() - started
        report["source"] = source
        report["dtype"] = str(next(pipeline.unet.parameters()).dtype).removeprefix("torch.")
        runs = []
        for batch, precision in args.configs:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            stamps: list[float] = []
            config = TrainingConfig(
                steps=args.steps,
                resolution=size,
                batch_size=batch,
                seed=0,
                mixed_precision=precision,  # type: ignore[arg-type]
            )
            begin = time.perf_counter()
            trained = train_avatar_lora(
                pipeline=pipeline,
                photos=_photos(4, size),
                config=config,
                on_progress=lambda *_args, stamps=stamps: stamps.append(time.perf_counter()),
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            end = time.perf_counter()
            warm = args.warmup_steps
            steady = None
            if len(stamps) - 1 > warm and stamps[-1] > stamps[warm]:
                steady = (len(stamps) - 1 - warm) / (stamps[-1] - stamps[warm])
            run: dict[str, Any] = {
                "batch_size": batch,
                "mixed_precision": trained.metadata.get("mixed_precision", precision),
                "requested_precision": precision,
                "steps": args.steps,
                "seconds": end - begin,
                "steps_per_s": args.steps / (end - begin),
                "steady_steps_per_s": steady,
                "images_per_s": args.steps * batch / (end - begin),
                "setup_s": (stamps[0] - begin) if stamps else None,
                "final_loss": trained.metadata.get("final_loss"),
            }
            if device.type == "cuda":
                run["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            else:
                run["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            runs.append(run)
            print(json.dumps(run), flush=True)
        report["runs"] = runs
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
