"""Owner scoping that endpoints cannot forget.

Every consumer-side model inherits `ConsumerOwned`; every consumer view inherits
`ConsumerScopedMixin` and names its model's manager in `scoped_queryset()`. The mixin's
`get_queryset()` always filters by the caller's (client, end user): a second client or a
second end user of the same client sees nothing (404), never another's objects. Models with an
`end_user` key whose manager is someone else's (the queue's `RenderJob`, the credit ledger)
are read through `consumer_owned(Model)`, which gives the same `owned_by`.
Studio objects owned by a studio user use `StudioOwnedMixin` likewise.

tests/unit/workstation/test_owner_scoping_walk.py walks every object endpoint of the schema
with second principals and checks that none of them reaches (or changes) an owner's object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
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


def consumer_owned(model: type[models.Model]) -> ConsumerOwnedQuerySet:
    """All of `model`'s rows as a `ConsumerOwnedQuerySet`, for a model with an `end_user` key
    whose own manager is not one (e.g. `RenderJob`, also owned by studio users)."""
    model._meta.get_field("end_user")  # FieldDoesNotExist: not a consumer-owned model
    return ConsumerOwnedQuerySet(model=model)


class ConsumerScopedMixin(_GenericView):
    """For DRF generic views over consumer data. Subclasses implement `scoped_queryset()`."""

    permission_classes = [IsConsumer]

    def scoped_queryset(self) -> ConsumerOwnedQuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        return self.scoped_queryset().owned_by(consumer_principal(self.request))


class StudioOwnedMixin(_GenericView):
    # For views over objects a studio user owns: each user sees only their own, except the
    # roles a view names in `roles_seeing_all` (e.g. reviewers and operators over assets).
    # Subclasses set `owner_field` and implement `scoped_queryset()`.
    #
    # A comment, not a docstring: drf-spectacular makes the first docstring in a view's MRO
    # (above DRF's classes) its OpenAPI description, so a mixin's docstring would describe
    # every endpoint that has none of its own. (ConsumerScopedMixin's docstring does that
    # today for the consent and avatar endpoints; changing it changes the schema and the
    # frontend's generated API types.)

    owner_field = "created_by"
    roles_seeing_all: tuple[str, ...] = ()

    def scoped_queryset(self) -> QuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        user = self.request.user
        queryset = self.scoped_queryset()
        if not isinstance(user, User):  # the views admit studio users only; others see nothing
            return queryset.none()
        if user.role in self.roles_seeing_all:
            return queryset
        return queryset.filter(**{self.owner_field: user})


__all__ = [
    "ConsumerOwned",
    "ConsumerOwnedQuerySet",
    "ConsumerScopedMixin",
    "StudioOwnedMixin",
    "consumer_owned",
]
