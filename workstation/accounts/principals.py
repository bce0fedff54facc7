"""The consumer caller as services see it: an API client acting for one of its end users.

No DRF here: services and models take a `ConsumerPrincipal`; the API's authentication
(workstation/api/authentication.py) builds it from the request's headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workstation.errors import InvalidInput

from .models import ApiClient, EndUser
from .services import end_user_get_or_create

END_USER_HEADER = "X-End-User"


@dataclass
class ConsumerPrincipal:
    """The authenticated caller of a consumer endpoint. Not a Django user."""

    client: ApiClient
    end_user_ref: str | None
    _end_user: EndUser | None = field(default=None, repr=False)

    is_authenticated = True
    is_anonymous = False
    is_active = True
    role = None

    @property
    def pk(self) -> str:
        return f"client:{self.client.pk}"

    def has_role(self, *roles: str) -> bool:
        return False

    @property
    def end_user(self) -> EndUser:
        """The EndUser row, created on first use (the client chose the reference)."""
        if self.end_user_ref is None:
            raise InvalidInput({END_USER_HEADER: [f"The {END_USER_HEADER} header is required."]})
        if self._end_user is None:
            self._end_user = end_user_get_or_create(
                client=self.client, external_ref=self.end_user_ref
            )
        return self._end_user

    def existing_end_user(self) -> EndUser | None:
        """The EndUser row if it exists; never creates one (for reads)."""
        if self.end_user_ref is None:
            return None
        if self._end_user is None:
            self._end_user = EndUser.objects.filter(
                client=self.client, external_ref=self.end_user_ref
            ).first()
        return self._end_user
