"""Notices shown by /api/v1/health that are not readiness gates but must never be silent.

Filled in by the apps that own them at start-up (avatars: which content-safety check screens
uploads and outputs), so the health view imports no product app.
"""

from __future__ import annotations

from collections.abc import Callable

_NOTICES: dict[str, Callable[[], str]] = {}


def register_notice(name: str, describe: Callable[[], str]) -> None:
    _NOTICES[name] = describe


def current_notices() -> dict[str, str]:
    return {name: describe() for name, describe in _NOTICES.items()}
