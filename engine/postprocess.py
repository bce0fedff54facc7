"""Finishing rendered candidates: likeness ranking, AIGC labels and PNG/JPEG encoding, in a
process pool beside the render thread.

At 512 px these cost 0.3-0.45 core-seconds per image (PNG, labels with the invisible watermark,
dlib likeness), which on a GPU worker is several times the image's denoising time. Done on the
render thread, the GPU would wait for them; done in threads, dlib would still run one call at
a time (it holds the GIL and `engine.faces` serialises its models). A `PostProcessor` with
``workers >= 1`` runs them in that many spawned processes, each with its own dlib models, and
`engine.runtime.Engine.start_render` returns once the denoising is done, so the worker denoises
the next job while this one is finished. ``workers == 0`` finishes in the calling thread (tests,
scripts, the embedded demo's `Engine` default).

This module imports no torch, so a pool process loads PIL, numpy, dlib and the label libraries
only.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from engine.errors import EngineError
from engine.likeness import rank_candidates

logger = logging.getLogger(__name__)

# zlib level 1: about 4x faster than Pillow's default 6 on 512 px renders, files ~10 % larger
# (docs/benchmarks.md, "Post-processing off the render thread").
PNG_COMPRESS_LEVEL = 1

# (image, reference embedding) -> similarity in [0, 1] or None without a face
LikenessScorer = Callable[[Image.Image, np.ndarray], "float | None"]


class PostProcessError(EngineError):
    """Finishing a render's images failed outside the images themselves (too slow, or its
    process died)."""


class PostProcessDied(PostProcessError):
    """A post-processing process died (e.g. killed for memory) before finishing a render."""


@dataclass(frozen=True)
class RenderedImage:
    """One output image; ``seed`` alone reproduces it (as candidate 0, ``num_images=1``).

    ``png_bytes`` holds PNG bytes, or JPEG when labels were applied with ``format="JPEG"``
    (see ``format``). ``likeness`` is the face similarity to the reference embedding (None
    without one, or when no face was found); ``candidate`` is the index among the candidates.
    """

    png_bytes: bytes
    seed: int
    width: int
    height: int
    likeness: float | None = None
    candidate: int = 0
    format: str = "PNG"
    # SHA-256 of the pixels before any label: equal for equal renders whatever the job id the
    # labels carry (a "more like me" step that changed nothing is found by it).
    content_sha256: str = ""


@dataclass(frozen=True)
class LabelOptions:
    """Apply `engine.labels.apply_labels` to every output (visible, watermark, XMP labels)."""

    job_id: str
    producer: str
    text: str | None = None  # None: engine.labels.DEFAULT_TEXT ("AI生成")
    format: Literal["PNG", "JPEG"] = "PNG"


@dataclass(frozen=True)
class Finished:
    """The kept images of one render, best first, and the seconds each phase took."""

    images: list[RenderedImage]
    likeness_s: float
    output_s: float


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata chunks, so equal pixels always give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def content_sha256(image: Image.Image) -> str:
    return hashlib.sha256(
        f"{image.mode}:{image.width}x{image.height}:".encode() + image.tobytes()
    ).hexdigest()


def finish_candidates(
    images: Sequence[Image.Image],
    seeds: Sequence[int],
    *,
    keep: int,
    reference: np.ndarray | None = None,
    label: LabelOptions | None = None,
    scorer: LikenessScorer | None = None,
) -> Finished:
    """Score and rank the candidates against ``reference`` (when given), keep the best
    ``keep``, and label or encode them. ``scorer`` defaults to `engine.faces.likeness`."""
    phase = time.perf_counter()
    scores: list[float | None] = [None] * len(images)
    if reference is not None:
        if scorer is None:
            from engine.faces import likeness

            scorer = likeness
        scores = [scorer(image, reference) for image in images]
        order = rank_candidates(scores, keep)
    else:
        order = list(range(keep))
    likeness_s = time.perf_counter() - phase
    phase = time.perf_counter()
    results = []
    for index in order:
        image = images[index]
        fmt = "PNG"
        if label is None:
            data = encode_png(image)
        else:
            from engine.labels import DEFAULT_TEXT, apply_labels

            fmt = label.format
            data = apply_labels(
                image,
                job_id=label.job_id,
                producer=label.producer,
                text=label.text or DEFAULT_TEXT,
                format=fmt,
            )
        results.append(
            RenderedImage(
                data,
                seeds[index],
                image.width,
                image.height,
                scores[index],
                index,
                fmt,
                content_sha256(image),
            )
        )
    return Finished(results, likeness_s, time.perf_counter() - phase)


def _exit_with_parent() -> None:
    """End this pool process when the process that started it dies (e.g. a worker killed
    with SIGKILL): the pool's queues would otherwise keep an orphan waiting forever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _warm_process() -> None:
    """Pool initializer: follow the parent's death, and load the face models and the label
    font before the first job."""
    _exit_with_parent()
    try:
        from engine import faces, labels

        faces.warm_up()
        labels.warm_up()
    except Exception:  # a missing optional model shows at first use, with its own error
        logger.debug("post-processing warm-up skipped", exc_info=True)


def _finished_here(*args: Any, **kwargs: Any) -> concurrent.futures.Future[Finished]:
    """`finish_candidates` in this thread, as a completed future."""
    future: concurrent.futures.Future[Finished] = concurrent.futures.Future()
    try:
        future.set_result(finish_candidates(*args, **kwargs))
    except Exception as exc:
        future.set_exception(exc)
    return future


class PostProcessor:
    """Runs `finish_candidates` in ``workers`` spawned processes (0: in the caller's thread).

    `submit` returns a future; a pool whose process died is replaced at the next `submit`,
    and the renders it held fail with `PostProcessError`. Thread-safe.
    """

    def __init__(self, workers: int = 0) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
            raise ValueError(f"post-processing workers must be 0-64, got {workers!r}")
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the parent holds torch's thread pools and CUDA state.
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_warm_process,
                )
            return self._pool

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """Drop ``pool`` if it is still the current one (another thread may have replaced
        it already); its queued work fails as a dead process's would."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False)

    def executor(self) -> concurrent.futures.Executor | None:
        """The pool's process executor for other CPU work that holds the GIL (photo
        screening), or None without worker processes."""
        return self._executor() if self.workers else None

    def start(self) -> list[concurrent.futures.Future[int]]:
        """Start the pool's processes now, without waiting (a worker at start, so no user's
        job waits for them); the futures complete once each process is ready."""
        if not self.workers:
            return []
        pool = self._executor()
        return [pool.submit(int) for _ in range(self.workers)]

    def submit(
        self,
        images: Sequence[Image.Image],
        seeds: Sequence[int],
        *,
        keep: int,
        reference: np.ndarray | None = None,
        label: LabelOptions | None = None,
        scorer: LikenessScorer | None = None,
    ) -> concurrent.futures.Future[Finished]:
        """Finish one render's candidates; ``scorer`` (tests) runs in the caller's thread."""
        args: tuple[Any, ...] = (list(images), list(seeds))
        kwargs: dict[str, Any] = {"keep": keep, "reference": reference, "label": label}
        if self.workers == 0 or scorer is not None:
            return _finished_here(*args, scorer=scorer, **kwargs)
        for _attempt in range(2):
            pool = self._executor()
            try:
                return pool.submit(finish_candidates, *args, **kwargs)
            except (BrokenExecutor, RuntimeError):
                # A dead process broke the pool, or another thread stopped it (a timeout)
                # between our taking it and submitting: start a new one, once.
                logger.warning("the post-processing pool is gone; starting a new one")
                self._discard(pool)
        return _finished_here(*args, **kwargs)  # no pool would start

    def result(
        self, future: concurrent.futures.Future[Finished], timeout: float | None = None
    ) -> Finished:
        """The future's `Finished`. A dead pool process, or no result within ``timeout``
        seconds (the pool's processes are then stopped and replaced), raise
        `PostProcessError`."""
        try:
            return future.result(timeout)
        except (BrokenExecutor, concurrent.futures.CancelledError) as exc:
            raise PostProcessDied(
                "a post-processing process stopped before finishing the images"
            ) from exc
        except concurrent.futures.TimeoutError as exc:
            self._terminate()
            raise PostProcessError(f"post-processing took longer than {timeout:g} s") from exc

    def _terminate(self) -> None:
        """Stop the pool's processes (a hung one would hold every later render). Work queued
        behind it fails as `PostProcessDied`, which its renders answer by finishing in their
        own thread."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        # Kill first: the pool's manager thread then sees a broken pool and cleans it up
        # (failing its queued work); shutting it down while it still waits on a live process
        # can leave that thread, and interpreter exit, hanging.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False)

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=wait)
                self._pool = None
