"""Post-processing off the render thread, measured with real post-processing and a modelled GPU.

On a GPU worker the render thread mostly waits for the GPU while it denoises, and the finishing
of each job (likeness ranking with dlib, AIGC labels with the invisible watermark, PNG) is CPU
work of 0.3-0.45 core-seconds per 512 px image. The tiny CPU model cannot show this: its own
denoising is 95-99 % of a job at every size (docs/benchmarks.md). So here the denoising of a
job is modelled as the render thread waiting ``--denoise`` seconds (what a GPU step costs the
worker's CPU: nothing), and the finishing is the real one, on ``--candidates`` real 512 px face
images, ranked against a real face embedding, the best ``--keep`` labelled.

Each setting runs ``--jobs`` jobs back to back twice in one run: finished on the render thread
(the worker before this change) and pipelined as `jobs.pipelining` does with depth 1 (the next
job denoises while the last one is finished by ``--workers`` `engine.postprocess` processes).

    .venv/bin/python bench/pipeline_overlap.py --json /tmp/overlap.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402
from skimage.data import astronaut  # noqa: E402

from engine import faces  # noqa: E402
from engine.postprocess import LabelOptions, PostProcessor  # noqa: E402


def _inputs(candidates: int, size: int) -> tuple[list[Image.Image], Any]:
    face = Image.fromarray(astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    images = [face.rotate(3 * i) for i in range(candidates)]
    box = faces.face_box(face)
    assert box is not None, "the astronaut has a face"
    pixels = faces._pixels(face)
    return images, faces._embedding(pixels, faces._landmarks(pixels, box))


def run(
    *, denoise: float, jobs: int, candidates: int, keep: int, workers: int, size: int
) -> dict[str, Any]:
    images, reference = _inputs(candidates, size)
    seeds = list(range(candidates))
    label = LabelOptions(job_id="overlap-bench-0001", producer="bench")
    kwargs = {"keep": keep, "reference": reference, "label": label}

    inline = PostProcessor(0)
    inline.result(inline.submit(images, seeds, **kwargs))  # warm: models, font
    started = time.perf_counter()
    for _ in range(jobs):
        time.sleep(denoise)  # the render thread waits for the GPU
        inline.result(inline.submit(images, seeds, **kwargs))
    inline_s = time.perf_counter() - started

    pool = PostProcessor(workers)
    for ready in pool.start():
        ready.result()
    pool.result(pool.submit(images, seeds, **kwargs))
    started = time.perf_counter()
    previous = None
    for _ in range(jobs):
        time.sleep(denoise)
        current = pool.submit(images, seeds, **kwargs)
        if previous is not None:
            pool.result(previous)  # depth 1: wait for the last job before claiming the next
        previous = current
    assert previous is not None
    pool.result(previous)
    pipelined_s = time.perf_counter() - started
    pool.shutdown()

    finish_alone = []
    for _ in range(3):
        t = time.perf_counter()
        inline.result(inline.submit(images, seeds, **kwargs))
        finish_alone.append(time.perf_counter() - t)
    kept = jobs * keep
    return {
        "denoise_s": denoise,
        "workers": workers,
        "jobs": jobs,
        "finish_s": statistics.median(finish_alone),
        "inline_images_per_s": kept / inline_s,
        "pipelined_images_per_s": kept / pipelined_s,
        "speedup": inline_s / pipelined_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--denoise", type=float, nargs="+", default=[0.4, 1.0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(
        "| denoise per job (modelled) | post-processing processes | finishing one job | "
        "images/s on the render thread | images/s pipelined | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for denoise in args.denoise:
        for workers in args.workers:
            row = run(
                denoise=denoise,
                jobs=args.jobs,
                candidates=args.candidates,
                keep=args.keep,
                workers=workers,
                size=args.size,
            )
            rows.append(row)
            print(
                f"| {denoise:.2f} s | {workers} | {row['finish_s']:.2f} s | "
                f"{row['inline_images_per_s']:.2f} | {row['pipelined_images_per_s']:.2f} | "
                f"{row['speedup']:.2f}x |",
                flush=True,
            )
    if args.json:
        report = {
            "cpus": os.cpu_count(),
            "args": vars(args) | {"json": str(args.json)},
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
