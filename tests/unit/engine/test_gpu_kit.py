"""The H200 kit (bench/): lock parsing, the report tables, a CPU dry run of one section."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_kit_packages_are_locked_and_torch_is_never_carried():
    make_kit = _load("make_kit")
    versions = make_kit.locked_versions(ROOT / "requirements.lock")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^GPU_KIT_WHEELS := (.+)$", makefile, re.MULTILINE)
    assert match, "the gpu-kit target names its wheels"
    wheels = match.group(1).split()
    assert {"diffusers", "peft", "transformers"} <= set(wheels)
    assert all(make_kit._normalise(name) in versions for name in wheels)
    assert "torch" not in wheels  # the device's own CUDA build is used


def test_gpu_sh_documents_the_run_invocation():
    header = (ROOT / "bench" / "gpu.sh").read_text(encoding="utf-8")[:1500]
    assert "command:   bash bench/gpu.sh" in header
    assert 'carry:     [".gpu-kit"]' in header
    assert "timeout_s:" in header and "make gpu-kit" in header


def test_report_tables_survive_failed_and_missing_sections():
    gpu_run = _load("gpu_run")
    report = {
        "mode": "gpu",
        "sections": {
            "install": {"status": "failed: no wheels", "seconds": 0.0},
            "serving": {"status": "timeout after 170 s", "seconds": 170.0, "result_error": "x"},
            "compile": {"status": "ok", "seconds": 90.0, "result": {"status": "warmed up"}},
        },
    }
    text = gpu_run.markdown(report)
    assert "| install | failed: no wheels |" in text and "torch.compile" in text


def test_cpu_smoke_runs_a_section_soft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    gpu_run = _load("gpu_run")
    monkeypatch.setenv("OUT", str(tmp_path))
    only = "env,identity_model,nonexistent"
    assert gpu_run.main(["--cpu-smoke", "--only", only, "--budget-s", "120"]) == 0
    report = json.loads((tmp_path / "gpu-report.json").read_text(encoding="utf-8"))
    assert report["mode"] == "cpu-smoke" and report["sections"]["env"]["status"] == "ok"
    assert report["env"]["import engine.runtime"] == "ok"
    # the command that writes sd15-random's identity adapter for serving (small encoder here)
    identity = report["sections"]["identity_model"]
    assert identity["status"] == "ok", identity.get("tail")
    assert "--only identity" in identity["command"]
    assert (tmp_path / "gpu-report.md").is_file() and (tmp_path / "gpu-log.txt").is_file()


def _serving_with_identity(mixed: float) -> dict:
    identity = {
        "status": "ok",
        "adapter": "sd15-random-identity",
        "kind": "image_encoder",
        "photos": 20,
        "build_seconds": 0.05,
        "render_seconds_per_image_without": 0.6,
        "render_seconds_per_image_with": 0.62,
        "batch": 16,
        "mixed_images_per_s": mixed,
        "one_identity_images_per_s": 8.0,
    }
    return {"size": 512, "steps": 20, "guidance": 7.5, "identity": identity}


def test_instant_identity_figures_against_the_targets():
    gpu_run = _load("gpu_run")
    instant = gpu_run.instant_identity(_serving_with_identity(mixed=7.8))
    assert instant["status"] == "ok"
    assert instant["instant_first_portrait_s"] == pytest.approx(0.67)
    assert instant["mixed_vs_one_identity"] == pytest.approx(7.8 / 8.0)
    assert instant["met"] == {
        "identity_ready_s": True,
        "instant_first_portrait_s": True,
        "mixed_vs_one_identity": True,
    }
    slow = gpu_run.instant_identity(_serving_with_identity(mixed=7.0))
    assert slow["met"]["mixed_vs_one_identity"] is False
    report = {"mode": "gpu", "sections": {}, "instant_identity": slow}
    text = gpu_run.markdown(report)
    assert "## Instant identity (sd15-random-identity, 512 px, 20 steps" in text
    assert "| first portrait (identity + 1 render) | 0.67 s | <= 5.0 s | yes |" in text
    assert "| batch of 16 identities vs 16 samples of one | 0.875x | >= 0.95x | **no** |" in text
    skipped = gpu_run.instant_identity({"identity": {"status": "skipped: no adapter"}})
    assert skipped["status"] == "skipped: no adapter"
    assert "Instant identity: skipped" in gpu_run.markdown(
        {"sections": {}, "instant_identity": skipped}
    )
    assert gpu_run.instant_identity({})["status"] == "not run"
