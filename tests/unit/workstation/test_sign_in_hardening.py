"""Sign-in hardening: throttles that a forged X-Forwarded-For cannot reset, a per-account
lockout with backoff, and a throttled admin login."""

import pytest

from tests.conftest import PASSWORD
from workstation.accounts import lockout

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"


def _attempt(api, email, password, n):
    return api.post(
        LOGIN,
        {"email": email, "password": password},
        format="json",
        HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
    )


def test_rotating_forwarded_for_does_not_reset_the_login_throttle(api, settings):
    settings.LOGIN_LOCK_AFTER_FAILURES = 1000  # isolate the address throttle (10/min)
    codes = [_attempt(api, "nobody@example.test", "wrong", n).status_code for n in range(11)]
    assert codes[:10] == [400] * 10
    assert codes[10] == 429


def test_forwarded_for_is_honoured_only_behind_the_configured_proxies(api, settings):
    settings.LOGIN_LOCK_AFTER_FAILURES = 1000
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        # Behind one trusted proxy, each distinct client address has its own bucket.
        codes = [_attempt(api, "nobody@example.test", "wrong", n).status_code for n in range(12)]
        assert 429 not in codes
    finally:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
        api_settings.reload()


def test_account_locks_after_failures_refuses_the_right_password_then_unlocks(
    api, designer, settings, monkeypatch
):
    settings.LOGIN_LOCK_AFTER_FAILURES = 3
    settings.LOGIN_LOCK_BASE_S = 30
    now = [1_000_000.0]
    monkeypatch.setattr(lockout.time, "time", lambda: now[0])
    for n in range(3):
        assert _attempt(api, designer.email, "wrong", n).status_code == 400
    locked = _attempt(api, designer.email, PASSWORD, 99)
    assert locked.status_code == 429
    error = locked.json()["error"]
    assert error["code"] == "account_locked" and "30 seconds" in error["message"]

    now[0] += 31  # the backoff has passed
    assert _attempt(api, designer.email, PASSWORD, 100).status_code == 200
    # A success clears the count: the next failure does not lock at once.
    api.post("/api/v1/auth/logout")
    assert _attempt(api, designer.email, "wrong", 101).status_code == 400
    assert _attempt(api, designer.email, PASSWORD, 102).status_code == 200


def test_lock_doubles_with_each_further_failure(designer, settings, monkeypatch):
    settings.LOGIN_LOCK_AFTER_FAILURES = 2
    settings.LOGIN_LOCK_BASE_S = 10
    settings.LOGIN_LOCK_MAX_S = 25
    now = [0.0]
    monkeypatch.setattr(lockout.time, "time", lambda: now[0])
    waits = []
    for _ in range(4):
        lockout.record_failure(email=designer.email)
        try:
            lockout.check_not_locked(email=designer.email)
            waits.append(0)
        except Exception as exc:  # TooManyAttempts
            waits.append(exc.retry_after_s)
    assert waits == [0, 10, 20, 25]


def test_admin_login_is_throttled_and_honours_the_lockout(client, operator, settings):
    settings.LOGIN_LOCK_AFTER_FAILURES = 2
    for n in range(2):
        client.post(
            "/admin/login/",
            {"username": operator.email, "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )
    # Locked: the right password does not sign in through the admin either.
    response = client.post("/admin/login/", {"username": operator.email, "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in client.session

    settings.LOGIN_LOCK_AFTER_FAILURES = 1000
    codes = [
        client.post(
            "/admin/login/",
            {"username": "x@example.test", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(12)
    ]
    assert 429 in codes


def test_invitation_lookups_are_throttled_whatever_the_forwarded_for(api):
    codes = [
        api.get(
            f"/api/v1/auth/invitations/bogus-{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}"
        ).status_code
        for n in range(11)
    ]
    assert codes[10] == 429
