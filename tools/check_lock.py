"""Fail when the virtualenv does not hold exactly what requirements.lock names.

Run by the Makefile after every install. Local version labels are ignored (the lock says
``torch==2.13.0``; a CPU machine installs ``2.13.0+cpu``, a GPU machine the CUDA build).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(path: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as lock:
        for line in lock:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            name, _, version = line.partition("==")
            pins[_normalise(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def main(path: str) -> int:
    installed = {
        _normalise(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    wrong = []
    for name, version in sorted(locked_versions(path).items()):
        have = installed.get(name)
        if have is None or have.split("+", 1)[0] != version:
            wrong.append(f"{name}: locked {version}, installed {have or 'nothing'}")
    if wrong:
        print(f"The virtualenv differs from {path}:", *wrong, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
