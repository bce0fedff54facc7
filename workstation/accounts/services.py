"""Writes for accounts: invitations, API clients and end users."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from workstation.errors import ConflictError, InvalidInput

from .models import ApiClient, EndUser, Invitation, Role, User


def hash_secret(secret: str) -> str:
    """Tokens and keys are 256-bit random values: a plain SHA-256 is a safe, fast lookup."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str

    @property
    def url(self) -> str:
        return f"{settings.SITE_URL}/studio/invite/{self.token}"


def invitation_create(*, email: str, role: str, created_by: User | None = None) -> IssuedInvitation:
    if role not in Role.values:
        raise InvalidInput({"role": [f"Must be one of: {', '.join(Role.values)}."]})
    email = email.strip().lower()
    if User.objects.filter(email=email).exists():
        raise ConflictError(f"An account for {email} already exists.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        email=email,
        role=role,
        token_hash=hash_secret(token),
        created_by=created_by,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    return IssuedInvitation(invitation=invitation, token=token)


@transaction.atomic
def invitation_accept(*, token: str, password: str, display_name: str = "") -> User:
    """Turns a usable invitation into an account. Single use: the row is locked and stamped."""
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=hash_secret(token)).first()
    )
    if invitation is None or not invitation.is_usable:
        raise InvalidInput({"token": ["This invitation is invalid, expired or already used."]})
    candidate = User(email=invitation.email, display_name=display_name, role=invitation.role)
    try:
        validate_password(password, user=candidate)
    except Exception as exc:  # django.core.exceptions.ValidationError
        raise InvalidInput({"password": list(getattr(exc, "messages", [str(exc)]))}) from exc
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                invitation.email, password, display_name=display_name, role=invitation.role
            )
    except IntegrityError as exc:
        raise ConflictError(f"An account for {invitation.email} already exists.") from exc
    invitation.accepted_at = timezone.now()
    invitation.accepted_user = user
    invitation.save(update_fields=["accepted_at", "accepted_user"])
    return user


@dataclass(frozen=True)
class IssuedApiKey:
    client: ApiClient
    key: str


def api_client_create(*, name: str, train_lora_by_default: bool = True) -> IssuedApiKey:
    name = name.strip()
    if not name:
        raise InvalidInput({"name": ["A name is required."]})
    if ApiClient.objects.filter(name=name).exists():
        raise ConflictError(f"An API client named {name!r} already exists.")
    prefix = secrets.token_hex(6)
    key = f"pk_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        name=name,
        key_prefix=prefix,
        key_hash=hash_secret(key),
        train_lora_by_default=train_lora_by_default,
    )
    return IssuedApiKey(client=client, key=key)


def api_client_revoke(*, client: ApiClient) -> None:
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])


def end_user_get_or_create(*, client: ApiClient, external_ref: str) -> EndUser:
    end_user, _ = EndUser.objects.get_or_create(client=client, external_ref=external_ref)
    return end_user
