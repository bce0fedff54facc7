"""Owner scoping that endpoints cannot forget.

Every consumer-side model inherits `ConsumerOwned`; every consumer view inherits
`ConsumerScopedMixin` and names its model's manager in `scoped_queryset()`. The mixin's
`get_queryset()` always filters by the caller's (client, end user): a second client or a
second end user of the same client sees nothing (404), never another's objects.
Studio objects owned by a studio user use `StudioOwnedMixin` likewise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from workstation.accounts.models import User
from workstation.ownership import ConsumerOwned, ConsumerOwnedQuerySet

from .authentication import consumer_principal
from .permissions import IsConsumer

if TYPE_CHECKING:
    # The mixins go in front of a DRF generic view; importing the views here at run time
    # would load DRF's view machinery while the models that use `ConsumerOwned` load.
    from rest_framework.generics import GenericAPIView as _GenericView
else:
    _GenericView = object


class ConsumerScopedMixin(_GenericView):
    """For DRF generic views over consumer data. Subclasses implement `scoped_queryset()`."""

    permission_classes = [IsConsumer]

    def scoped_queryset(self) -> ConsumerOwnedQuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        return self.scoped_queryset().owned_by(consumer_principal(self.request))


class StudioOwnedMixin(_GenericView):
    """For views over objects a studio user owns: each user sees only their own, except the
    roles a view names in `roles_seeing_all` (e.g. operators over templates).

    Subclasses set `owner_field` and implement `scoped_queryset()`.
    """

    owner_field = "created_by"
    roles_seeing_all: tuple[str, ...] = ()

    def scoped_queryset(self) -> QuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        user = self.request.user
        queryset = self.scoped_queryset()
        if isinstance(user, User) and user.role in self.roles_seeing_all:
            return queryset
        return queryset.filter(**{self.owner_field: user})


__all__ = ["ConsumerOwned", "ConsumerOwnedQuerySet", "ConsumerScopedMixin", "StudioOwnedMixin"]
