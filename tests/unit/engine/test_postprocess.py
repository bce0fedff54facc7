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
    PostProcessDied,
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
        killed = _pool_pids(engine.postprocess)
        assert killed
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        # Whether the pool notices before or after the submit, the images come back.
        assert engine.render(spec) == first
        assert any("gone" in r.getMessage() or "died" in r.getMessage() for r in caplog.records)
        assert engine.render(spec) == first
        replaced = _pool_pids(engine.postprocess)  # a new pool of live processes did it
        assert replaced and set(replaced).isdisjoint(killed)
        assert all(_alive(pid) for pid in replaced)
    finally:
        engine.postprocess.shutdown()


def test_a_hung_finish_fails_in_time_and_its_process_is_stopped():
    """The hung render fails; the work queued behind it fails as a dead process's does (its
    renders then finish in their own thread), and the next submit gets a new pool."""
    processor = PostProcessor(1)
    images = candidates()
    try:
        hung = processor._executor().submit(time.sleep, 120)
        behind = processor.submit(images, [1, 2, 3], keep=1)
        pids = []
        deadline = time.monotonic() + 60
        while not pids and time.monotonic() < deadline:
            pids = _pool_pids(processor)
        with pytest.raises(PostProcessError, match="longer than"):
            processor.result(hung, timeout=0.5)
        with pytest.raises(PostProcessDied):
            processor.result(behind, timeout=60)
        for pid in pids:
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid)
        again = processor.result(processor.submit(images, [1, 2, 3], keep=1), timeout=120)
        assert again.images == finish_candidates(images, [1, 2, 3], keep=1).images
        assert set(_pool_pids(processor)).isdisjoint(pids)
    finally:
        processor.shutdown(wait=False)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended). Never waits on it: reaping a pool's child
    here would leave the pool's own thread waiting for it forever."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone; reaped between open and read
        return False
    return "\nState:\tZ" not in status


def heavy_modules() -> list[str]:
    """Run in a pool process: which of the render stack's big modules it has loaded."""
    return sorted({"torch", "diffusers", "transformers"} & set(sys.modules))


def test_the_pool_processes_do_not_load_torch(pool):
    for ready in pool.start():
        ready.result(timeout=120)  # started, with the models and the label font loaded
    assert pool._executor().submit(heavy_modules).result(timeout=60) == []


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
