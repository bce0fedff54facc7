"""Reads for accounts."""

from __future__ import annotations

import hmac

from .models import ApiClient, Invitation
from .services import hash_secret


def api_client_for_key(*, key: str) -> ApiClient | None:
    """The active client owning `key`, compared in constant time; None if unknown or revoked."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "pk":
        return None
    client = ApiClient.objects.filter(key_prefix=parts[1], revoked_at__isnull=True).first()
    if client is None or not hmac.compare_digest(client.key_hash, hash_secret(key)):
        return None
    return client


def invitation_for_token(*, token: str) -> Invitation | None:
    invitation = Invitation.objects.filter(token_hash=hash_secret(token)).first()
    if invitation is None or not invitation.is_usable:
        return None
    return invitation
