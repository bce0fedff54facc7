from __future__ import annotations

import json
from pathlib import Path

from engine.__main__ import main

SECTIONS = (
    "throughput",
    "unet",
    "training",
    "adapter_switch",
    "mixed_batch",
    "batch_render",
    "identity",
    "memory",
)


def test_bench_tiny_writes_every_section(tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--profile", "tiny", "--json", str(out), "--batch-sizes", "1,2"]
    assert main([*argv, "--steps", "2", "--train-steps", "2", "--device", "cpu"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    for key in ("profile", "device", "dtype", "size", "steps", "guidance", "scheduler", "load"):
        assert key in report, key
    assert (report["profile"], report["size"], report["steps"]) == ("tiny", 64, 2)
    for section in SECTIONS:
        assert report[section]["status"].startswith(("ok", "unavailable", "skipped")), section
    rows = report["throughput"]["rows"]
    assert [row["batch_size"] for row in rows] == [1, 2]
    assert all(row["images_per_s"] > 0 for row in rows)
    unet = report["unet"]
    assert unet["flops_per_step_per_image"] > 0 and unet["achieved_tflops"] > 0
    assert unet["fraction_of_bf16_peak"] is None  # CPU
    assert report["memory"]["peak_rss_mb"] > 0
    # engine.training and engine.adapters exist: those sections ran for real
    assert report["training"]["status"] == "ok" and report["training"]["steps"] == 2
    switch = report["adapter_switch"]
    assert all(switch[k] > 0 for k in ("from_disk_s", "from_ram_s", "hotswap_s"))
    mixed = report["mixed_batch"]
    assert mixed["status"] == "ok" and mixed["adapters"] == 2
    assert mixed["pool_images_per_s"] > 0 and mixed["single_avatar_images_per_s"] > 0
    batched = report["batch_render"]
    assert batched["status"] == "ok" and batched["requests"] == 2
    assert batched["batch_images_per_s"] > 0 and batched["sequential_images_per_s"] > 0
    assert batched["max_pixel_diff"] <= 1  # the batch equals the single renders up to rounding
    identity = report["identity"]  # the tiny profile's identity adapter
    assert identity["status"] == "ok" and identity["adapter"] == "tiny-identity"
    assert identity["photos"] == 20 and 0 < identity["build_seconds"] < 1
    assert identity["mixed_images_per_s"] > 0 and identity["one_identity_images_per_s"] > 0
    table = capsys.readouterr().out
    assert "identity (tiny-identity)" in table
    assert (
        "images/s" in table
        and "hot-swap" in table
        and "render_batch" in table
        and f"wrote {out}" in table
    )


def test_bench_rejects_bad_batch_sizes(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["bench", "--batch-sizes", "1,x"])
    assert "batch" in capsys.readouterr().err


def test_bench_job_smoke(tmp_path: Path, capsys):
    """``--job`` at tiny size: a whole avatar and a whole generation, each phase timed."""
    out = tmp_path / "job.json"
    argv = ["bench", "--profile", "tiny", "--job", "--json", str(out), "--device", "cpu"]
    assert main([*argv, "--steps", "2", "--train-steps", "2", "--repeats", "2"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["mode"] == "job"
    avatar = report["avatar_job"]
    assert avatar["status"] == "ok" and avatar["steps"] == 2
    for phase in ("prepare_s", "train_s", "save_s", "total_s"):
        assert avatar[phase]["runs"] == 2
        assert 0 <= avatar[phase]["min"] <= avatar[phase]["median"]
    assert abs(sum(avatar["shares"].values()) - 1.0) < 0.05
    assert avatar["preparation"] == "ok" and avatar["accepted"] >= 1  # dlib is installed here
    gen = report["generation_job"]
    assert gen["status"] == "ok" and (gen["candidates"], gen["kept"]) == (4, 2)
    assert gen["likeness"] == "ok" and gen["labels"] == "ok" and gen["formats"] == ["PNG"]
    assert 0 < gen["postprocess_share"] < 1
    assert gen["pipeline_s"]["median"] > 0 and gen["total_s"]["median"] >= gen["pipeline_s"]["min"]
    stream = gen["stream"]
    assert stream["jobs"] == 4 and stream["postprocess_workers"] >= 1
    assert stream["inline_images_per_s"] > 0 and stream["pipelined_images_per_s"] > 0
    table = capsys.readouterr().out
    assert "post-processing share" in table and "avatar job" in table and f"wrote {out}" in table
    assert "back to back" in table
