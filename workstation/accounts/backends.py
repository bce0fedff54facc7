"""The sign-in backend: Django's model backend behind the per-account lockout.

Every sign-in path (the API's /auth/login and Django's /admin/login/) goes through
`authenticate()`, so both count failures and both refuse a locked account, the right
password included. (The API checks the lock first to answer 429 `account_locked`; the admin
form shows its usual error.)
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from workstation.errors import TooManyAttempts

from . import lockout


def _email(credentials: dict[str, Any]) -> str | None:
    value = credentials.get("email") or credentials.get("username")
    return value if isinstance(value, str) and value else None


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        email = kwargs.get("email") or username
        if email:
            try:
                lockout.check_not_locked(email=email)
            except TooManyAttempts as exc:
                raise PermissionDenied(exc.message) from exc  # stops every backend
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed, dispatch_uid="accounts.lockout.failed")
def _count_failure(sender: object, credentials: dict[str, Any], **kwargs: Any) -> None:
    email = _email(credentials)
    if email:
        lockout.record_failure(email=email)


@receiver(user_logged_in, dispatch_uid="accounts.lockout.success")
def _clear_failures(sender: object, user: Any, **kwargs: Any) -> None:
    lockout.record_success(email=user.email)
