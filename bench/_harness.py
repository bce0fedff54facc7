"""What the benchmark scripts that start real processes share: the repository root, the tiny
model's folder, and the environment for a scratch database, broker and cache."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def models_dir(var_dir: Path) -> Path:
    """ENGINE_MODELS_DIR, else var/models; the tiny model is built (~30 s) if neither has it."""
    candidate = Path(os.environ.get("ENGINE_MODELS_DIR", str(ROOT / "var" / "models")))
    if (candidate / "profile.json").exists():
        return candidate
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from engine.tiny import build_tiny

    built = var_dir / "models"
    print(f"no model under {candidate}: building the tiny one in {built}", flush=True)
    build_tiny(built)
    return built


def bench_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the processes a benchmark starts: a production-like one (DEBUG off, a
    fresh secret key) on the scratch DATABASE_URL, CELERY_BROKER_URL and CACHE_URL the caller
    must set (the run exits with a message when one is missing), plus ``extra``."""
    missing = [k for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL") if k not in os.environ]
    if missing:
        sys.exit(f"set {', '.join(missing)} (a scratch database and Redis dbs: see the usage line)")
    return {
        **os.environ,
        "VAR_DIR": str(var_dir),
        "MEDIA_ROOT": str(var_dir / "media"),
        "ENGINE_MODELS_DIR": str(models_dir(var_dir)),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PYTHONUNBUFFERED": "1",
        "ENGINE_TORCH_THREADS": os.environ.get("ENGINE_TORCH_THREADS", "1"),
        **extra,
    }
