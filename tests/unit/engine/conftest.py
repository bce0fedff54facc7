"""Shared fixtures: the tiny models are built once per test session (about 0.3 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.registry import ModelRegistry


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def tiny_registry(tiny_dir: Path) -> ModelRegistry:
    return ModelRegistry.for_profile("tiny", models_dir=tiny_dir)


@pytest.fixture(scope="session")
def tiny_engine(tiny_registry: ModelRegistry):
    from engine.runtime import Engine

    return Engine(tiny_registry, device="cpu")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny renders gain nothing from threads, and on a shared 2-core machine OpenMP threads
    spinning against other processes made them 20x slower. Subprocesses get OMP_NUM_THREADS=1
    to match: the thread count changes float reduction order, hence PNG bytes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_pipeline(tiny_registry: ModelRegistry):
    """A freshly loaded tiny pipeline (CPU, float32) that a test may load LoRAs into."""
    import torch

    from engine.runtime import disable_progress_bars, load_pipeline

    disable_progress_bars()
    model = tiny_registry.get(tiny_registry.default_base)
    return load_pipeline(model, device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="session")
def synthetic_photos():
    """Four 64 px RGB training 'photos': flat colours and gradients (no faces needed)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    horizontal = np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1)
    vertical = np.stack([np.tile(ramp[:, None], (1, 64)), np.zeros((64, 64), np.uint8)] * 2, -1)
    return [
        Image.new("RGB", (64, 64), (200, 40, 40)),
        Image.new("RGB", (64, 64), (30, 160, 90)),
        Image.fromarray(horizontal),
        Image.fromarray(vertical[..., :3]),
    ]
