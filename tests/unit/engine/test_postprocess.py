"""Finishing images in a process pool: the same bytes as in the render thread, and a dead or
hung process costs time, never a job's images."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from engine import faces
from engine.postprocess import (
    LabelOptions,
    PostProcessError,
    PostProcessor,
    encode_png,
    finish_candidates,
)
from engine.spec import RenderSpec


@pytest.fixture(scope="module")
def pool():
    processor = PostProcessor(1)
    yield processor
    processor.shutdown()


def _pool_pids(processor: PostProcessor) -> list[int]:
    pool = processor._pool
    return [p.pid for p in (getattr(pool, "_processes", None) or {}).values()]


def embedding_of(image: Image.Image) -> np.ndarray:
    box = faces.face_box(image)
    assert box is not None
    pixels = faces._pixels(image)
    return faces._embedding(pixels, faces._landmarks(pixels, box))


def candidates() -> list[Image.Image]:
    face = Image.fromarray(astronaut()).resize((256, 256))
    return [
        Image.new("RGB", (256, 256), (90, 120, 150)),  # no face: ranked last
        face,
        face.rotate(8),
    ]


def test_the_pool_finishes_exactly_as_the_render_thread(pool):
    images = candidates()
    reference = embedding_of(images[1])
    label = LabelOptions(job_id="job-1", producer="tests")
    inline = finish_candidates(images, [1, 2, 3], keep=2, reference=reference, label=label)
    pooled = pool.result(
        pool.submit(images, [1, 2, 3], keep=2, reference=reference, label=label), timeout=120
    )
    assert [r.candidate for r in pooled.images] == [r.candidate for r in inline.images] == [1, 2]
    assert pooled.images == inline.images  # same likeness, labels and bytes
    assert pooled.images[0].likeness == pytest.approx(1.0, abs=1e-6)


def test_png_is_fast_but_lossless():
    image = candidates()[1]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), np.asarray(image))


def test_a_killed_pool_process_costs_time_not_the_images(tiny_registry, caplog):
    from engine.runtime import Engine

    engine = Engine(tiny_registry, device="cpu", postprocess_workers=1)
    spec = RenderSpec(prompt="a portrait", seed=5, steps=2, num_images=2)
    try:
        first = engine.render(spec)
        for pid in _pool_pids(engine.postprocess):
            os.kill(pid, signal.SIGKILL)
        # Whether the pool notices before or after the submit, the images come back.
        assert engine.render(spec) == first
        assert any("died" in record.getMessage() for record in caplog.records)
        assert engine.render(spec) == first  # and the pool was replaced
    finally:
        engine.postprocess.shutdown()


def test_a_hung_finish_fails_in_time_and_its_process_is_stopped():
    processor = PostProcessor(1)
    try:
        future = processor._executor().submit(time.sleep, 120)
        pids = []
        deadline = time.monotonic() + 60
        while not pids and time.monotonic() < deadline:
            pids = _pool_pids(processor)
        with pytest.raises(PostProcessError, match="longer than"):
            processor.result(future, timeout=0.5)
        for pid in pids:
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid)
    finally:
        processor.shutdown(wait=False)


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return False
    except ChildProcessError:
        pass  # not this process's child
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


def test_the_pool_processes_do_not_load_torch():
    code = (
        "import engine.postprocess, sys; print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_counts_are_checked():
    for bad in (-1, 65, True, "2"):
        with pytest.raises(ValueError):
            PostProcessor(bad)  # type: ignore[arg-type]


def test_pool_processes_end_when_their_parent_is_killed(tmp_path):
    """A worker killed with SIGKILL leaves no post-processing process behind."""
    script = (
        "import sys, time\n"
        "from engine.postprocess import PostProcessor\n"
        "pool = PostProcessor(1)\n"
        "[ready.result() for ready in pool.start()]\n"
        "print(*[p.pid for p in pool._pool._processes.values()], flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert children and all(_alive(pid) for pid in children)
    finally:
        parent.kill()
        parent.wait()
    for pid in children:
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"pool process {pid} outlived its parent"
