from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.__main__ import main
from engine.runtime import Engine
from engine.spec import RenderSpec

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_cli_render_matches_in_process_render(tiny_dir: Path, tiny_engine: Engine, tmp_path: Path):
    """Same spec in a fresh process gives the same bytes: seeds, not process state, decide.

    Both sides use one torch thread (see conftest): the thread count changes the bytes.
    """
    out = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "render", "--models-dir", str(tiny_dir)]
        + ["--prompt", "a portrait", "--seed", "5", "--device", "cpu", "--out", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    [expected] = tiny_engine.render(RenderSpec(prompt="a portrait", seed=5))
    assert out.read_bytes() == expected.png_bytes


def test_cli_batch_writes_numbered_files(tiny_dir: Path, tmp_path: Path):
    argv = ["render", "--models-dir", str(tiny_dir), "--prompt", "a", "--seed", "1"]
    argv += ["--num-images", "2", "--steps", "1", "--out", str(tmp_path / "x.png")]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-0.png", "x-1.png"]


def test_cli_reports_spec_errors(tiny_dir: Path, tmp_path: Path, capsys):
    argv = ["render", "--models-dir", str(tiny_dir), "--prompt", "a", "--seed", "1"]
    assert main([*argv, "--steps", "0", "--out", str(tmp_path / "x.png")]) == 1
    assert "steps" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_build_tiny(tmp_path: Path, capsys):
    assert main(["build-tiny", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert "built tiny models (seed 3)" in capsys.readouterr().out
    assert (tmp_path / "m" / "sd-tiny" / "model_index.json").is_file()


def test_cli_build_random_only_knows_random_profiles(tmp_path: Path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["build-random", "--profile", "tiny", str(tmp_path)])
    assert "sd15-random" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_render_accepts_a_sampler(tiny_dir: Path, tiny_engine: Engine, tmp_path: Path):
    out = tmp_path / "x.png"
    argv = ["render", "--models-dir", str(tiny_dir), "--prompt", "a", "--seed", "2"]
    assert main([*argv, "--steps", "2", "--sampler", "euler", "--out", str(out)]) == 0
    [expected] = tiny_engine.render(RenderSpec(prompt="a", seed=2, steps=2, sampler="euler"))
    assert out.read_bytes() == expected.png_bytes
