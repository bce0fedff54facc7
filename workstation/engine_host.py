"""The engine as hosted by this process: one registry and one Engine (pipelines stay loaded).

The registry is cheap (no torch import) and used by the web process for health; the Engine
is created lazily, only in processes that render (Celery workers).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings


@lru_cache(maxsize=1)
def get_registry():
    from engine.registry import ModelRegistry

    return ModelRegistry.for_profile(
        settings.ENGINE_PROFILE,
        models_dir=Path(settings.ENGINE_MODELS_DIR),
        config_file=Path(settings.ENGINE_CONFIG_FILE) if settings.ENGINE_CONFIG_FILE else None,
    )


@lru_cache(maxsize=1)
def get_engine():
    from engine.runtime import Engine

    if settings.ENGINE_TORCH_THREADS:
        import torch

        torch.set_num_threads(settings.ENGINE_TORCH_THREADS)
    return Engine(get_registry(), device=settings.ENGINE_DEVICE, dtype=settings.ENGINE_DTYPE)
