"""The engine as hosted by this process: one registry and one Engine (pipelines stay loaded).

The registry is cheap (no torch import) and used by the web process for health; the Engine
is created lazily, only in processes that render (Celery workers).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from engine.serving import ServingProfile, build_engine, warm_up_engine

if TYPE_CHECKING:
    from engine.runtime import Engine

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def get_registry():
    from engine.registry import ModelRegistry

    return ModelRegistry.for_profile(
        settings.ENGINE_PROFILE,
        models_dir=Path(settings.ENGINE_MODELS_DIR),
        config_file=Path(settings.ENGINE_CONFIG_FILE) if settings.ENGINE_CONFIG_FILE else None,
    )


@lru_cache(maxsize=1)
def serving_profile() -> ServingProfile:
    """The worker's serving profile: ENGINE_SERVING_* settings from the environment (README
    table); ENGINE_DTYPE, when set, names the dtype for every model."""
    profile = ServingProfile.from_env_dict(os.environ)
    if settings.ENGINE_DTYPE:
        profile = dataclasses.replace(profile, dtype=settings.ENGINE_DTYPE)
    return profile


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The engine this process renders with, built by the same function as the benchmark
    (`engine.serving.build_engine`): the serving profile's dtype, channels-last, QKV fusion,
    compile and the avatar hot-swap slot. Warm-up renders run in `warm_up()` (workers, at
    start), not here, so a process that renders once pays only for loading."""
    if settings.ENGINE_TORCH_THREADS:
        import torch

        torch.set_num_threads(settings.ENGINE_TORCH_THREADS)
    return build_engine(
        get_registry(), device=settings.ENGINE_DEVICE, profile=serving_profile(), warm_up=False
    )


def warm_up() -> None:
    """Loads the default model and renders the profile's warm-up buckets (compile, autotune)."""
    engine = get_engine()
    engine.serving["warmup"] = warm_up_engine(engine, serving_profile(), log=logger.info)
