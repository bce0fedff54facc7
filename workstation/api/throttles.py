"""Rate limits on the shared cache (Redis in production, a file cache when embedded)."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from .authentication import ConsumerPrincipal


class PrincipalRateThrottle(SimpleRateThrottle):
    """One bucket per API client (all its end users together) or per studio user."""

    scope = "principal"

    def get_cache_key(self, request, view):
        user = request.user
        if isinstance(user, ConsumerPrincipal):
            ident = f"client-{user.client.pk}"
        elif user and user.is_authenticated:
            ident = f"user-{user.pk}"
        else:
            return None  # anonymous callers fall to AnonRateThrottle
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginRateThrottle(SimpleRateThrottle):
    """Slows password guessing: per client address."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
