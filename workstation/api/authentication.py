"""Authentication for the two kinds of caller.

- Consumer API clients: `Authorization: Bearer <key>` plus `X-End-User: <opaque ref>`.
  The request's user becomes a `ConsumerPrincipal` naming the client and (when the header is
  present and valid) the end user; consumer views require both.
- Studio users: Django sessions (the browser app), with CSRF enforced.
"""

from __future__ import annotations

import re
from typing import cast

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from workstation.accounts.principals import END_USER_HEADER, ConsumerPrincipal
from workstation.accounts.selectors import api_client_for_key

__all__ = ["END_USER_HEADER", "ApiClientAuthentication", "ConsumerPrincipal", "consumer_principal"]
_END_USER_REF = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def consumer_principal(request: Request) -> ConsumerPrincipal:
    """The caller of a consumer endpoint (behind `IsConsumer`).

    DRF's stubs type `request.user` as the Django user model; on consumer endpoints
    `ApiClientAuthentication` sets it to a `ConsumerPrincipal` instead.
    """
    return cast(ConsumerPrincipal, request.user)


class ApiClientAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        key = key.strip()
        if not key:
            raise exceptions.AuthenticationFailed("Empty bearer key.")
        client = api_client_for_key(key=key)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        ref = request.headers.get(END_USER_HEADER)
        if ref is not None and not _END_USER_REF.match(ref):
            raise exceptions.ValidationError(
                {END_USER_HEADER: ["Use 1-128 characters: letters, digits and . _ : @ -"]}
            )
        return ConsumerPrincipal(client=client, end_user_ref=ref), client

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class StudioSessionAuthentication(authentication.SessionAuthentication):
    """Session auth for the studio app (CSRF enforced for unsafe methods)."""
