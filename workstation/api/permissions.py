"""Role and caller-kind permissions. Object scoping lives in `workstation.api.scoping`."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from workstation.accounts.models import Role
from workstation.errors import InvalidInput

from .authentication import END_USER_HEADER, ConsumerPrincipal

MISSING_END_USER = (
    "This endpoint acts for one of your end users: send the X-End-User header with your "
    "opaque reference for them (1-128 letters, digits and . _ : @ -)."
)


def _is_studio_user(user) -> bool:
    return bool(user and user.is_authenticated and not isinstance(user, ConsumerPrincipal))


class IsStudioUser(BasePermission):
    message = "This endpoint is for signed-in studio users."

    def has_permission(self, request, view) -> bool:
        return _is_studio_user(request.user) and request.user.is_active


class HasRole(BasePermission):
    """`HasRole.of(Role.OPERATOR)` allows only active studio users with one of the roles."""

    roles: tuple[str, ...] = ()
    message = "Your role does not allow this action."

    @classmethod
    def of(cls, *roles: str) -> type[HasRole]:
        return type(f"HasRole_{'_'.join(roles)}", (cls,), {"roles": roles})

    def has_permission(self, request, view) -> bool:
        return _is_studio_user(request.user) and request.user.has_role(*self.roles)


IsOperator = HasRole.of(Role.OPERATOR)
IsDesigner = HasRole.of(Role.DESIGNER)
IsReviewer = HasRole.of(Role.REVIEWER)


class IsConsumer(BasePermission):
    """A consumer API client acting for a named end user (the X-End-User header). An API
    client's key without the header is a 400 naming the header (the caller is known; only
    the request is incomplete)."""

    message = "This endpoint needs an API client key and an X-End-User header."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not isinstance(user, ConsumerPrincipal):
            return False
        if user.end_user_ref is None:
            raise InvalidInput({END_USER_HEADER: [MISSING_END_USER]})
        return True


class IsApiClient(BasePermission):
    """An API client's key, with or without X-End-User (webhooks, consent text, catalog)."""

    message = "This endpoint needs an API client key."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ConsumerPrincipal)
