"""The app boundaries hold in the source (import-linter checks the layers in `make lint`)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("workstation", "jobs", "credits", "avatars", "templates_studio", "generations")


def _function_local_imports(path: Path, app: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            names = []
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                names = [inner.module]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            for name in names:
                top = name.split(".")[0]
                if top in APPS and top != app:
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno} imports {name}")
    return found


def test_no_function_local_imports_between_apps():
    """A function-local import hides a dependency from the layering check; apps talk through
    the job registry, providers and notices instead."""
    found = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found += _function_local_imports(path, app)
    assert found == []


def test_the_former_rendering_app_is_gone():
    assert not (ROOT / "rendering").exists()
