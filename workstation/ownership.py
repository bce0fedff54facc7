"""Consumer ownership for models: every consumer-side model inherits `ConsumerOwned`, and its
manager's `owned_by(principal)` is the one way to read a caller's rows (the API's scoping
mixins in workstation/api/scoping.py use it). No DRF here: models and services import this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.db import models
from django.db.models import QuerySet

if TYPE_CHECKING:
    from workstation.accounts.models import EndUser


class OwnerPrincipal(Protocol):
    """A consumer caller: an API client acting for one of its end users."""

    def existing_end_user(self) -> EndUser | None: ...


def owner_key(*, user_id: object = None, end_user_id: object = None) -> str:
    """The unit of queue fairness and idempotency: "eu:<end user id>" or "u:<user id>"."""
    if (user_id is None) == (end_user_id is None):
        raise ValueError("An owner is exactly one of a studio user or an end user.")
    return f"eu:{end_user_id}" if end_user_id is not None else f"u:{user_id}"


class ConsumerOwnedQuerySet(models.QuerySet):
    def owned_by(self, principal: OwnerPrincipal) -> QuerySet:
        end_user = principal.existing_end_user()
        if end_user is None:
            return self.none()
        return self.filter(end_user=end_user)


class ConsumerOwned(models.Model):
    end_user = models.ForeignKey(
        "accounts.EndUser", on_delete=models.CASCADE, related_name="+", db_index=True
    )

    objects = ConsumerOwnedQuerySet.as_manager()

    class Meta:
        abstract = True
