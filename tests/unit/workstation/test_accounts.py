"""Invitations, sign-in, API keys and end-user scoping."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from workstation.accounts.models import ApiClient, EndUser, Invitation, User

from ...conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _invite(email="new@example.test", role="designer") -> str:
    from io import StringIO

    out = StringIO()
    call_command("invite", email, "--role", role, stdout=out)
    url = out.getvalue().strip().splitlines()[-1]
    assert url.startswith("http") and "/studio/invite/" in url
    return url.rsplit("/", 1)[-1]


def test_invitation_is_single_use_and_sets_a_password(api):
    token = _invite()
    assert Invitation.objects.get().token_hash != token  # only the hash is stored
    look = api.get(f"/api/v1/auth/invitations/{token}")
    assert look.status_code == 200 and look.json()["role"] == "designer"

    accepted = api.post(
        f"/api/v1/auth/invitations/{token}",
        {"password": PASSWORD, "display_name": "New"},
        format="json",
    )
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["role"] == "designer"
    assert User.objects.get(email="new@example.test").check_password(PASSWORD)
    assert api.get("/api/v1/auth/me").json()["email"] == "new@example.test"

    again = api.post(f"/api/v1/auth/invitations/{token}", {"password": PASSWORD}, format="json")
    assert again.status_code == 400
    assert "token" in again.json()["error"]["fields"]


def test_expired_invitation_is_refused(api):
    token = _invite()
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.post(f"/api/v1/auth/invitations/{token}", {"password": PASSWORD}, format="json")
    assert response.status_code == 400
    assert not User.objects.filter(email="new@example.test").exists()


def test_weak_password_is_refused_naming_the_field(api):
    token = _invite()
    response = api.post(f"/api/v1/auth/invitations/{token}", {"password": "123"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]
    assert Invitation.objects.get().accepted_at is None


def test_invite_refuses_unknown_role():
    from django.core.management.base import CommandError

    with pytest.raises((CommandError, SystemExit)):
        call_command("invite", "x@example.test", "--role", "admin")


def test_login_me_logout(api, designer):
    assert api.get("/api/v1/auth/me").status_code == 401
    bad = api.post(
        "/api/v1/auth/login", {"email": designer.email, "password": "wrong"}, format="json"
    )
    assert bad.status_code == 400
    ok = api.post(
        "/api/v1/auth/login", {"email": designer.email.upper(), "password": PASSWORD}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["role"] == "designer"
    assert api.get("/api/v1/auth/me").json()["email"] == designer.email
    assert api.post("/api/v1/auth/logout").status_code == 204
    assert api.get("/api/v1/auth/me").status_code == 401


def test_session_writes_require_csrf(designer):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(designer)
    response = client.post(
        "/api/v1/auth/password",
        {"current_password": PASSWORD, "new_password": "another-Pass-42"},
        format="json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_password_change(signed_in, designer):
    client = signed_in(designer)
    wrong = client.post(
        "/api/v1/auth/password",
        {"current_password": "nope", "new_password": "another-Pass-42"},
        format="json",
    )
    assert wrong.status_code == 400 and "current_password" in wrong.json()["error"]["fields"]
    ok = client.post(
        "/api/v1/auth/password",
        {"current_password": PASSWORD, "new_password": "another-Pass-42"},
        format="json",
    )
    assert ok.status_code == 204
    designer.refresh_from_db()
    assert designer.check_password("another-Pass-42")


def test_api_key_printed_once_and_stored_hashed():
    from io import StringIO

    out = StringIO()
    call_command("create_api_client", "acme", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    client = ApiClient.objects.get(name="acme")
    assert key.startswith("pk_") and key not in (client.key_hash, client.key_prefix)


def test_bearer_key_resolves_client_and_end_user(consumer_key):
    from rest_framework.test import APIRequestFactory

    from workstation.api.authentication import ApiClientAuthentication

    key = consumer_key("acme")
    request = APIRequestFactory().get(
        "/", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_END_USER="user-42"
    )
    from rest_framework.request import Request

    principal, client = ApiClientAuthentication().authenticate(Request(request))
    assert client.name == "acme"
    assert principal.end_user_ref == "user-42"
    assert principal.existing_end_user() is None  # reads never create end users
    end_user = principal.end_user
    assert EndUser.objects.get(client=client, external_ref="user-42") == end_user


def test_malformed_end_user_header_is_400(api, consumer_key):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key()}", HTTP_X_END_USER="bad ref!")
    response = api.get("/api/v1/ops/test-render")
    assert response.status_code == 400
    assert "X-End-User" in response.json()["error"]["fields"]


def test_revoked_key_is_refused(api, consumer_key):
    from workstation.accounts.services import api_client_revoke

    key = consumer_key("acme")
    api_client_revoke(client=ApiClient.objects.get(name="acme"))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_END_USER="u1")
    assert api.get("/api/v1/ops/test-render").status_code == 401


def test_login_requires_csrf_token(designer):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    body = {"email": designer.email, "password": PASSWORD}
    assert client.post("/api/v1/auth/login", body, format="json").status_code == 403
    client.get("/api/v1/auth/csrf")
    token = client.cookies["csrftoken"].value
    ok = client.post("/api/v1/auth/login", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200
