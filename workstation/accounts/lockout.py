"""Per-account sign-in lockout with backoff, independent of the caller's address.

After LOGIN_LOCK_AFTER_FAILURES failed sign-ins for one email, the account is locked for
LOGIN_LOCK_BASE_S seconds, doubling with each further failure up to LOGIN_LOCK_MAX_S. While
locked, every attempt is refused with `TooManyAttempts` (429 `account_locked`), the right
password too, so rotating addresses (or proxies) cannot speed up guessing. A successful
sign-in clears the count. State lives in the shared cache (Redis in production), keyed by a
hash of the email, never the email itself.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache

from workstation.errors import TooManyAttempts


def _key(email: str) -> str:
    return "login-fail:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def check_not_locked(*, email: str) -> None:
    state = cache.get(_key(email))
    if state and state.get("locked_until", 0) > time.time():
        raise TooManyAttempts(retry_after_s=max(1, int(state["locked_until"] - time.time())))


def record_failure(*, email: str) -> None:
    key = _key(email)
    state = cache.get(key) or {"failures": 0, "locked_until": 0.0}
    state["failures"] += 1
    over = state["failures"] - settings.LOGIN_LOCK_AFTER_FAILURES
    if over >= 0:
        lock_s = min(settings.LOGIN_LOCK_BASE_S * (2**over), settings.LOGIN_LOCK_MAX_S)
        state["locked_until"] = time.time() + lock_s
    # Forget an account's failures a while after the longest lock.
    cache.set(key, state, timeout=settings.LOGIN_LOCK_MAX_S * 2)


def record_success(*, email: str) -> None:
    cache.delete(_key(email))
