"""The web process imports the engine's light modules; they must stay free of torch and Django."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

REPO_ROOT = Path(__file__).resolve().parents[3]
LIGHT_MODULES = [
    "engine",
    "engine.errors",
    "engine.registry",
    "engine.spec",
    "engine.identity",
    "engine.serving",
    "engine.__main__",
]


def _loaded_after_import(modules: list[str]) -> set[str]:
    """Top-level packages in sys.modules after importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_no_engine_module_imports_django():
    modules = [info.name for info in pkgutil.walk_packages(engine.__path__, "engine.")]
    assert "engine.runtime" in modules  # the walk really found the package
    loaded = _loaded_after_import(modules)
    assert "torch" in loaded  # the check can see heavy imports at all
    assert "django" not in loaded


def test_light_modules_do_not_import_torch_or_diffusers():
    loaded = _loaded_after_import(LIGHT_MODULES)
    assert "engine" in loaded
    heavy = loaded & {"torch", "diffusers", "transformers", "django"}
    assert not heavy
