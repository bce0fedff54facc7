"""The one-shot H200 run behind bench/gpu.sh: sections, each soft-failing, one report.

Each section runs as its own process with a time cap inside one overall budget
(``GPU_BENCH_BUDGET_S``, default 450 s), so a failed, crashed or slow section is recorded
and the next one still runs. Sections, most important first:

- ``env``: GPU, driver, python, torch and package versions as the engine sees them.
- ``install``: the kit's wheels into $TMPDIR/site (``pip --no-index --no-deps --target``), the
  dlib model files and the label font unpacked (none of this with ``--cpu-smoke``).
- ``device_tests``: tests/unit/engine/test_device_discipline.py on ``meta`` and ``cuda``.
- ``identity_model``: ``python -m engine build-random --profile sd15-random --only identity``:
  the full-size random identity adapter (ip-adapter_sd15's size, ViT-H/14 image encoder),
  drawn on the GPU in bf16 and saved for serving to load (``--cpu-smoke``: with a 2-layer
  encoder, a dry run of the command; the smoke's serving uses the tiny models' adapter).
- ``serving``: ``python -m engine bench`` for sd15-random, 512 px, 20 steps, CFG 7.5, batch
  1/4/8/16, 2 repeats: images/s, UNet FLOPs and the share of the bf16 peak, training, adapter
  switch, mixed-avatar vs single-avatar batches, render_batch, and the instant identity
  (``identity``: an identity built from 20 crops, one render with / without it, a batch of 16
  different identities vs 16 samples of one); from it ``instant_identity`` in the report:
  ``instant_first_portrait_s`` (identity build + one 512 px render) against the issue #15
  targets. The identity figures add about 40 s on the H200 (an estimate: ~15 s for
  ``identity_model``, start-up and 1.3 GB written; ~25 s in ``serving``: loading the adapter,
  3 builds from 20 crops, 6 renders at batch 1 and 6 at batch 16); serving's cap is 200 s.
- ``training``: bench/gpu_train.py: steps/s and peak memory of avatar training at 512 px,
  batch 1/2/4 with the default autocast (``auto``: bf16 on CUDA) and batch 2 without.
- ``job``: ``python -m engine bench --job``: a whole avatar and a whole generation.
- ``compile``: bench/gpu_compile.py: torch.compile through the serving profile, compile
  time, recompiles across avatar/weight changes (expected 0), compiled images/s.

Writes ``$OUT/gpu-report.json`` (everything), ``$OUT/gpu-report.md`` (tables) and
``$OUT/gpu-log.txt`` (every section's output). ``--cpu-smoke`` runs the same sections on
this machine's CPU with the tiny models and small sizes (a dry run of the kit).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / ".gpu-kit"
TMP = Path(tempfile.gettempdir())
SITE = TMP / "site"  # where the kit's wheels are installed on the device

ENV_CODE = r"""
import json, platform, sys, importlib.metadata as md
out = {"python": platform.python_version()}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
        out["gpu_mem_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
except Exception as exc:
    out["torch_error"] = repr(exc)
for name in ("diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface-hub",
             "tokenizers", "numpy", "pillow", "regex", "dlib-bin", "invisible-watermark",
             "pywavelets", "opencv-python-headless", "scikit-image", "pytest"):
    try:
        out[name] = md.version(name)
    except Exception:
        out[name] = None
for module in ("diffusers", "transformers", "peft", "engine.runtime", "engine.faces",
               "engine.labels"):
    try:
        __import__(module)
        out["import " + module] = "ok"
    except Exception as exc:
        out["import " + module] = f"{type(exc).__name__}: {exc}"
open(sys.argv[1], "w").write(json.dumps(out, indent=2))
print(json.dumps(out))
"""


class Runner:
    def __init__(self, out: Path, budget_s: float, env: dict[str, str], python: str) -> None:
        self.out = out
        self.deadline = time.monotonic() + budget_s
        self.env = env
        self.python = python
        self.log = (out / "gpu-log.txt").open("a", encoding="utf-8")
        self.report: dict[str, Any] = {"sections": {}, "started": time.time()}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.report["written"] = time.time()
        (self.out / "gpu-report.json").write_text(
            json.dumps(self.report, indent=2, default=str) + "\n", encoding="utf-8"
        )

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def run(self, name: str, command: list[str], cap_s: float, **env: str) -> dict[str, Any]:
        """Run ``command`` as section ``name`` with at most ``cap_s`` (and the budget left)."""
        timeout = min(cap_s, self.left() - 5)
        shown = ["<code>" if len(part) > 200 else part for part in command]
        entry: dict[str, Any] = {"command": " ".join(shown), "cap_s": cap_s}
        if timeout < 15:
            entry.update(status="skipped: budget spent", seconds=0.0)
            self.report["sections"][name] = entry
            self.note(f"== {name}: skipped (budget spent)")
            self.write()
            return entry
        self.note(f"== {name} (at most {timeout:.0f} s): {entry['command']}")
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                cwd=ROOT,
                env={**self.env, **env},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            output, code = result.stdout + result.stderr, result.returncode
            entry["status"] = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired as exc:
            output = _text(exc.stdout) + _text(exc.stderr)
            entry["status"] = f"timeout after {timeout:.0f} s"
        entry["seconds"] = round(time.monotonic() - started, 1)
        self.log.write(output + "\n")
        self.log.flush()
        if entry["status"] != "ok":
            entry["tail"] = output[-3000:]
        self.note(f"-- {name}: {entry['status']} in {entry['seconds']} s")
        self.report["sections"][name] = entry
        self.write()
        return entry

    def attach(self, name: str, path: Path) -> None:
        """Put the JSON a section wrote into its report entry (also after a timeout)."""
        try:
            self.report["sections"][name]["result"] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            self.report["sections"][name]["result_error"] = repr(exc)
        self.write()

    def guard(self, name: str, fn: Callable[[], None]) -> None:
        """Run an in-process step; an exception is recorded, not raised."""
        try:
            fn()
        except Exception as exc:  # soft failure by design
            entry = self.report["sections"].setdefault(name, {})
            entry["status"] = f"failed: {type(exc).__name__}: {exc}"
            self.note(f"-- {name}: {entry['status']}")
            self.write()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def install(runner: Runner) -> None:
    """Kit wheels into SITE, dlib models into SITE/face_recognition_models, font into /tmp."""
    wheels = sorted(str(p) for p in (KIT / "wheels").glob("*.whl"))
    entry: dict[str, Any] = {"wheels": [Path(w).name for w in wheels]}
    runner.report["sections"]["install"] = entry
    if not wheels:
        entry["status"] = "failed: no wheels in .gpu-kit/wheels (run make gpu-kit, carry .gpu-kit)"
        runner.note(f"-- install: {entry['status']}")
        runner.write()
        return
    result = runner.run(
        "install",
        [
            runner.python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(SITE),
            *wheels,
        ],
        120,
    )
    result["wheels"] = entry["wheels"]
    models = SITE / "face_recognition_models" / "models"
    packed = sorted((KIT / "faces").glob("*.xz"))
    if packed:
        models.mkdir(parents=True, exist_ok=True)
        (models.parent / "__init__.py").write_text("", encoding="utf-8")
        for path in packed:
            (models / path.stem).write_bytes(lzma.decompress(path.read_bytes()))
        result["face_models"] = [p.stem for p in packed]
    fonts = sorted((KIT / "fonts").glob("*.xz"))
    if fonts:
        target = TMP / "gpu-kit-fonts" / fonts[0].stem
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lzma.decompress(fonts[0].read_bytes()))
        runner.env["ENGINE_LABEL_FONT"] = str(target)
        result["font"] = target.name
    runner.write()


def _r(value: Any, digits: int = 3) -> Any:
    """Numbers rounded for the tables (None and text as they are)."""
    if isinstance(value, float):
        return round(value, digits) if abs(value) >= 10**-digits else f"{value:.2g}"
    return value


# Issue #15's H200 targets for instant identities.
INSTANT_TARGETS = {
    "identity_ready_s": 2.0,  # at most
    "instant_first_portrait_s": 5.0,  # at most
    "mixed_vs_one_identity": 0.95,  # at least
}


def instant_identity(serving: dict[str, Any]) -> dict[str, Any]:
    """The instant-identity figures of the serving run's ``identity`` section against
    `INSTANT_TARGETS`: identity ready (built from the crops: CLIP preprocessing and encoding;
    face detection and alignment of the uploads are not in it), the first portrait (that
    build plus one render with the identity at the serving settings, PNG included), and a
    batch of different identities against as many samples of one."""
    identity = serving.get("identity") or {}
    if identity.get("status") != "ok":
        return {"status": identity.get("status", "not run"), "targets": INSTANT_TARGETS}
    build = float(identity["build_seconds"])
    render = float(identity["render_seconds_per_image_with"])
    figures = {
        "identity_ready_s": build,
        "instant_first_portrait_s": build + render,
        "mixed_vs_one_identity": identity["mixed_images_per_s"]
        / identity["one_identity_images_per_s"],
    }
    met = {
        name: value >= INSTANT_TARGETS[name]
        if name == "mixed_vs_one_identity"
        else value <= INSTANT_TARGETS[name]
        for name, value in figures.items()
    }
    return {
        "status": "ok",
        "adapter": identity.get("adapter"),
        "photos": identity.get("photos"),
        "size": serving.get("size"),
        "steps": serving.get("steps"),
        "guidance": serving.get("guidance"),
        "batch": identity.get("batch"),
        "first_render_s": render,
        "render_without_identity_s": identity.get("render_seconds_per_image_without"),
        "mixed_images_per_s": identity.get("mixed_images_per_s"),
        "one_identity_images_per_s": identity.get("one_identity_images_per_s"),
        **figures,
        "targets": INSTANT_TARGETS,
        "met": met,
    }


def _instant_lines(instant: dict[str, Any]) -> list[str]:
    if instant.get("status") != "ok":
        return ["", f"## Instant identity: {instant.get('status')}"]

    def row(label: str, name: str, unit: str, bound: str) -> str:
        verdict = "yes" if instant["met"][name] else "**no**"
        return (
            f"| {label} | {_r(instant[name])}{unit} | {bound} {INSTANT_TARGETS[name]}{unit} | "
            f"{verdict} |"
        )

    return [
        "",
        f"## Instant identity ({instant['adapter']}, {instant['size']} px, {instant['steps']} "
        f"steps, CFG {instant['guidance']})",
        "",
        "| figure | value | target | met |",
        "| --- | --- | --- | --- |",
        row(f"identity ready ({instant['photos']} crops)", "identity_ready_s", " s", "<="),
        row("first portrait (identity + 1 render)", "instant_first_portrait_s", " s", "<="),
        row(
            f"batch of {instant['batch']} identities vs {instant['batch']} samples of one",
            "mixed_vs_one_identity",
            "x",
            ">=",
        ),
        "",
        f"one render with the identity {_r(instant['first_render_s'])} s, without "
        f"{_r(instant['render_without_identity_s'])} s; {instant['batch']} identities "
        f"{_r(instant['mixed_images_per_s'], 2)} images/s vs one identity "
        f"{_r(instant['one_identity_images_per_s'], 2)} images/s. Identity ready = CLIP "
        "encoding of aligned crops (face detection/alignment of the uploads not included).",
    ]


def markdown(report: dict[str, Any]) -> str:
    sections = report["sections"]
    lines = [
        f"# GPU run: {report.get('mode')} ({report.get('env', {}).get('gpu', 'no GPU')})",
        "",
        "| section | status | seconds |",
        "| --- | --- | --- |",
    ]
    for name, entry in sections.items():
        lines.append(f"| {name} | {entry.get('status')} | {entry.get('seconds', '-')} |")
    env = report.get("env") or {}
    if env:
        keys = ("python", "torch", "cuda", "diffusers", "transformers", "peft", "dlib-bin")
        lines += ["", "versions: " + ", ".join(f"{k} {env.get(k)}" for k in keys)]
    serving = sections.get("serving", {}).get("result") or {}
    if serving.get("throughput"):
        lines += [
            "",
            f"## Serving ({serving.get('profile')}, {serving.get('size')} px, "
            f"{serving.get('steps')} steps, CFG {serving.get('guidance')}, {serving.get('dtype')})",
            "",
            "| batch | s (min) | s (median) | images/s | s/image |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in serving["throughput"]["rows"]:
            lines.append(
                f"| {row['batch_size']} | {row['seconds_min']:.3f} | {row['seconds']:.3f} | "
                f"{row['images_per_s']:.2f} | {row['seconds_per_image']:.3f} |"
            )
        unet = serving.get("unet") or {}
        if unet.get("status") == "ok":
            peak = unet.get("fraction_of_bf16_peak")
            measured = unet.get("fraction_of_measured_bf16")
            lines += [
                "",
                f"UNet: {unet['flops_per_step_per_image'] / 1e12:.2f} TFLOP per image-step (CFG), "
                f"{unet['achieved_tflops']:.1f} TFLOP/s at {unet['batch_rows']} rows"
                + (f", {peak:.1%} of the data-sheet bf16 peak" if peak else "")
                + (
                    f", {measured:.1%} of a measured bf16 matmul "
                    f"({unet['measured_bf16_matmul_tflops']:.0f} TFLOP/s)"
                    if measured
                    else ""
                ),
            ]
        switch = serving.get("adapter_switch") or {}
        mixed = serving.get("mixed_batch") or {}
        batch = serving.get("batch_render") or {}
        memory = serving.get("memory") or {}
        lines += [
            "",
            f"adapter switch: hot-swap {_r(switch.get('hotswap_s'), 4)} s (min "
            f"{_r(switch.get('hotswap_s_min'), 4)}), from RAM {_r(switch.get('from_ram_s'), 4)} "
            f"s, from disk {_r(switch.get('from_disk_s'), 4)} s",
            f"mixed batch of {mixed.get('adapters')} avatars: "
            f"{_r(mixed.get('mixed_images_per_s'), 2)} images/s vs single-avatar batches "
            f"{_r(mixed.get('grouped_images_per_s'), 2)} images/s (x{_r(mixed.get('speedup'), 2)})",
            f"avatar pool, {mixed.get('adapters')} different avatars in one batch: "
            f"{_r(mixed.get('pool_images_per_s'), 2)} images/s vs one avatar "
            f"{_r(mixed.get('single_avatar_images_per_s'), 2)} images/s "
            f"(x{_r(mixed.get('pool_vs_single_avatar'), 2)}; target >= 0.9)",
            f"render_batch of {batch.get('requests')} users: "
            f"{_r(batch.get('batch_images_per_s'), 2)} images/s vs sequential "
            f"{_r(batch.get('sequential_images_per_s'), 2)} (x{_r(batch.get('speedup'), 2)}, "
            f"max pixel diff {batch.get('max_pixel_diff')})",
            f"memory: peak RSS {_r(memory.get('peak_rss_mb'), 0)} MB, CUDA max allocated "
            f"{_r(memory.get('cuda_max_allocated_mb'), 0)} MB",
        ]
    instant = report.get("instant_identity")
    if instant:
        lines += _instant_lines(instant)
    training = sections.get("training", {}).get("result") or {}
    if training.get("runs"):
        lines += [
            "",
            f"## Training ({training.get('profile')}, {training.get('size')} px, "
            f"{training.get('dtype')} base)",
            "",
            "| batch | precision | steps/s | steady steps/s | images/s | peak memory |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for run in training["runs"]:
            memory = run.get("peak_mem_gib")
            mem = f"{memory:.2f} GiB" if memory else f"{run.get('peak_rss_mib', 0):.0f} MiB RSS"
            steady = run.get("steady_steps_per_s")
            lines.append(
                f"| {run['batch_size']} | {run['mixed_precision']} | {run['steps_per_s']:.2f} | "
                f"{steady if steady is None else round(steady, 2)} | "
                f"{run['images_per_s']:.2f} | {mem} |"
            )
    job = sections.get("job", {}).get("result") or {}
    if job.get("generation_job"):
        gen, avatar = job["generation_job"], job.get("avatar_job", {})
        lines += ["", "## Whole jobs", ""]
        if avatar.get("status") == "ok":
            lines.append(
                f"avatar: {avatar['total_s']['median']:.2f} s median (prepare "
                f"{avatar['shares']['prepare_s']:.0%}, train {avatar['shares']['train_s']:.0%}, "
                f"save {avatar['shares']['save_s']:.0%}; preparation {avatar['preparation']})"
            )
        if gen.get("status") == "ok":
            lines.append(
                f"generation ({gen['candidates']} candidates, keep {gen['kept']}): "
                f"{gen['total_s']['median']:.2f} s median, pipeline "
                f"{gen['pipeline_s']['median']:.2f} s, likeness {gen['likeness_s']['median']:.3f} "
                f"s, labels+encode {gen['output_s']['median']:.3f} s, post-processing share "
                f"{gen['postprocess_share']:.1%} (likeness {gen['likeness']}, labels "
                f"{gen['labels']})"
            )
            stream = gen.get("stream") or {}
            if stream:
                lines.append(
                    f"{stream['jobs']} generations back to back: "
                    f"{stream['inline_images_per_s']:.2f} images/s finished in the render "
                    f"thread, {stream['pipelined_images_per_s']:.2f} with "
                    f"{stream['postprocess_workers']} post-processing process(es) "
                    f"({stream['speedup']:.2f}x)"
                )
    compiled = sections.get("compile", {}).get("result") or {}
    if compiled:
        lines += [
            "",
            f"## torch.compile ({compiled.get('mode')}, {compiled.get('backend')}): "
            f"{compiled.get('status')}",
            f"build + warm-up {_r(compiled.get('build_and_warmup_s'), 1)} s, recompiles after "
            f"warm-up across {len(compiled.get('render_s') or [])} avatars/weights: "
            f"{compiled.get('recompiles_after_warmup')}, batch {compiled.get('batch')}: "
            f"{_r(compiled.get('images_per_s'), 2)} images/s",
        ]
    tests = sections.get("device_tests", {})
    if tests:
        lines += ["", f"device tests: {tests.get('status')} {tests.get('summary', '')}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on this CPU")
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--only", help="comma-separated sections to run (default: all)")
    args = parser.parse_args(argv)

    smoke = args.cpu_smoke
    default_out = ROOT / "var" / "gpu-smoke" if smoke else ROOT / "gpu-out"
    out = Path(os.environ.get("OUT") or default_out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("gpu-report.json", "gpu-report.md", "gpu-log.txt"):
        (out / name).unlink(missing_ok=True)
    budget = args.budget_s or float(os.environ.get("GPU_BENCH_BUDGET_S", 300 if smoke else 450))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    python = sys.executable
    if not smoke:
        env["PYTHONPATH"] = os.pathsep.join([str(SITE), str(ROOT), env.get("PYTHONPATH", "")])
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        env.setdefault("OMP_NUM_THREADS", "1")
    runner = Runner(out, budget, env, python)
    runner.report["mode"] = "cpu-smoke" if smoke else "gpu"
    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    device = "cpu" if smoke else "cuda"
    profile = "tiny" if smoke else "sd15-random"
    size = "64" if smoke else "512"
    steps = "2" if smoke else "20"
    tmp = TMP / ("gpu-smoke" if smoke else "gpu-run")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    bench = [python, "-m", "engine", "bench", "--profile", profile, "--device", device]

    if not smoke and wanted("install"):
        runner.guard("install", lambda: install(runner))
    if wanted("env"):
        path = tmp / "env.json"
        runner.run("env", [python, "-c", ENV_CODE, str(path)], 60)
        runner.attach("env", path)
        runner.report["env"] = runner.report["sections"]["env"].get("result") or {}
    if wanted("device_tests"):
        devices = "meta" if smoke else "meta,cuda"
        junit = tmp / "device-tests.xml"
        entry = runner.run(
            "device_tests",
            [
                python,
                "-m",
                "pytest",
                "-c",
                "bench/pytest-gpu.ini",
                "--rootdir",
                str(ROOT),
                "--confcutdir",
                "tests/unit/engine",
                "-q",
                f"--junitxml={junit}",
                "tests/unit/engine/test_device_discipline.py",
            ],
            120,
            ENGINE_TEST_DEVICES=devices,
        )
        runner.guard("device_tests", lambda: _junit(entry, junit))
        runner.write()
    models = tmp / "models"
    if wanted("identity_model") or wanted("serving"):
        # serving's instant-identity figures need the sd15-random identity adapter on disk
        # (load_ip_adapter reads files); the bench builds the base itself, in memory.
        command = [python, "-m", "engine", "build-random", "--profile", "sd15-random"]
        command += ["--only", "identity", str(models)]
        if smoke:
            command += ["--identity-encoder", "small"]
        else:
            command += ["--device", "cuda", "--dtype", "bfloat16"]
        runner.run("identity_model", command, 60)
    if wanted("serving"):
        path = tmp / "serving.json"
        sizes = "1,2" if smoke else "1,4,8,16"
        runner.run(
            "serving",
            [
                *bench,
                "--models-dir",
                str(models),
                "--batch-sizes",
                sizes,
                "--steps",
                steps,
                "--size",
                size,
                "--guidance",
                "7.5",
                "--repeats",
                "2",
                "--train-steps",
                "2" if smoke else "10",
                "--json",
                str(path),
            ],
            200,
        )
        runner.attach("serving", path)
        runner.guard("instant_identity", lambda: _instant(runner))
    if wanted("training"):
        path = tmp / "training.json"
        runner.run(
            "training",
            [
                python,
                "bench/gpu_train.py",
                "--profile",
                profile,
                "--device",
                device,
                "--size",
                size,
                "--steps",
                "3" if smoke else "30",
                "--configs",
                "1:auto,2:auto" if smoke else "1:auto,2:auto,4:auto,2:no",
                "--json",
                str(path),
            ],
            90,
        )
        runner.attach("training", path)
    if wanted("job"):
        path = tmp / "job.json"
        runner.run(
            "job",
            [
                *bench,
                "--job",
                "--steps",
                steps,
                "--size",
                size,
                "--guidance",
                "7.5",
                "--train-steps",
                "2" if smoke else "30",
                "--candidates",
                "4",
                "--keep",
                "2",
                "--photos",
                "4",
                "--repeats",
                "2",
                "--json",
                str(path),
            ],
            100,
        )
        runner.attach("job", path)
    if wanted("compile"):
        path = tmp / "compile.json"
        runner.run(
            "compile",
            [
                python,
                "bench/gpu_compile.py",
                "--profile",
                profile,
                "--device",
                device,
                "--batch",
                "2" if smoke else "4",
                "--steps",
                steps,
                "--size",
                size,
                "--avatars",
                "5",
                "--backend",
                "eager" if smoke else "inductor",
                "--json",
                str(path),
            ],
            200,
        )
        runner.attach("compile", path)
    runner.report["total_s"] = round(time.time() - runner.report["started"], 1)
    runner.write()
    (out / "gpu-report.md").write_text(markdown(runner.report), encoding="utf-8")
    runner.note(markdown(runner.report))
    return 0


def _instant(runner: Runner) -> None:
    serving = runner.report["sections"].get("serving", {}).get("result") or {}
    runner.report["instant_identity"] = instant_identity(serving)
    runner.write()


def _junit(entry: dict[str, Any], path: Path) -> None:
    import xml.etree.ElementTree as ET  # noqa: S405  (our own pytest's output)

    root = ET.parse(path).getroot()  # noqa: S314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return
    keys = ("tests", "failures", "errors", "skipped")
    entry["counts"] = {key: int(suite.get(key, 0)) for key in keys}
    entry["summary"] = ", ".join(f"{key} {entry['counts'][key]}" for key in keys)
    failed = []
    for case in suite.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed.append(f"{case.get('name')}: {problem.get('message', '')[:300]}")
    entry["failed"] = failed


if __name__ == "__main__":
    sys.exit(main())
