"""The audit trail of access to personal data (who, what, when, why; never the data)."""

from __future__ import annotations

from uuid import UUID

from workstation.accounts.models import EndUser
from workstation.accounts.principals import ConsumerPrincipal

from .models import AuditEvent


def actor_of(principal) -> str:
    if isinstance(principal, ConsumerPrincipal):
        return f"client:{principal.client.pk}"
    if principal is not None and getattr(principal, "pk", None) is not None:
        return f"user:{principal.pk}"
    return "system"


def audit(
    *,
    actor: str,
    action: str,
    object_type: str,
    purpose: str,
    object_id: str | UUID | int = "",
    end_user: EndUser | None = None,
) -> None:
    AuditEvent.objects.create(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        purpose=purpose,
        end_user=end_user,
    )
