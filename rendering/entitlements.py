"""Credits: grants from the client's server, charges for work, automatic refunds.

Spending locks the end user's row first, so parallel requests are serialized and the balance
can never go negative. Training an avatar costs one avatar credit; each avatar includes
AVATAR_GENERATION_ALLOWANCE generations, beyond which a generation costs a generation credit.
A technical failure, a deadline abort or the user's cancel before start is refunded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.dispatch import receiver

from workstation.accounts.models import EndUser
from workstation.errors import InsufficientCredits

from .models import CreditEntry, CreditType, JobKind, JobStatus, RenderJob
from .signals import render_job_finished

if TYPE_CHECKING:
    from avatars.models import Avatar

logger = logging.getLogger(__name__)


def balance(*, end_user: EndUser, credit_type: str) -> int:
    return (
        CreditEntry.objects.filter(end_user=end_user, credit_type=credit_type).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )


def balances(*, end_user: EndUser | None) -> dict[str, int]:
    if end_user is None:
        return {t: 0 for t in CreditType.values}
    return {t: balance(end_user=end_user, credit_type=t) for t in CreditType.values}


def grant(
    *, end_user: EndUser, credit_type: str, amount: int, idempotency_key: str, note: str = ""
) -> tuple[CreditEntry, bool]:
    """Idempotent: the same key returns the first grant and creates nothing."""
    existing = CreditEntry.objects.filter(
        end_user=end_user, idempotency_key=idempotency_key, reason=CreditEntry.Reason.GRANT
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return CreditEntry.objects.create(
                end_user=end_user,
                credit_type=credit_type,
                amount=amount,
                note=note,
                reason=CreditEntry.Reason.GRANT,
                idempotency_key=idempotency_key,
            ), True
    except IntegrityError:  # a parallel request with the same key won the race
        return CreditEntry.objects.get(end_user=end_user, idempotency_key=idempotency_key), False


def charge(
    *,
    end_user: EndUser,
    credit_type: str,
    amount: int = 1,
    note: str,
    job: RenderJob | None = None,
    avatar: Avatar | None = None,
) -> CreditEntry:
    """Spends credits inside the caller's transaction; 402 if the balance is too low."""
    EndUser.objects.select_for_update().get(pk=end_user.pk)  # serializes spends per end user
    available = balance(end_user=end_user, credit_type=credit_type)
    if available < amount:
        raise InsufficientCredits(
            f"This needs {amount} {credit_type} credit(s); the balance is {available}."
        )
    return CreditEntry.objects.create(
        end_user=end_user,
        credit_type=credit_type,
        amount=-amount,
        reason=CreditEntry.Reason.CHARGE,
        note=note,
        job=job,
        avatar=avatar,
    )


def generation_cost(*, avatar: Avatar) -> int:
    """0 within the avatar's included allowance, else 1 generation credit."""
    used = RenderJob.objects.filter(
        kind__in=[JobKind.GENERATION, JobKind.REFINEMENT],
        avatar=avatar,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED],
    ).count()
    return 0 if used < settings.AVATAR_GENERATION_ALLOWANCE else 1


def refund_job(*, job: RenderJob, note: str) -> CreditEntry | None:
    """Returns what the job cost, once (a constraint forbids a second refund)."""
    charged = CreditEntry.objects.filter(reason=CreditEntry.Reason.CHARGE)
    if job.kind == JobKind.TRAINING:
        charged = charged.filter(avatar=job.avatar_id, credit_type=CreditType.AVATAR)
    else:
        charged = charged.filter(job=job)
    entry = charged.first()
    if entry is None:
        return None
    try:
        with transaction.atomic():
            return CreditEntry.objects.create(
                end_user=entry.end_user,
                credit_type=entry.credit_type,
                amount=-entry.amount,
                reason=CreditEntry.Reason.REFUND,
                note=note[:300],
                job=job,
                avatar_id=entry.avatar_id,
            )
    except IntegrityError:
        return None


@receiver(render_job_finished)
def refund_unsuccessful_jobs(sender: object, job: RenderJob, **kwargs: object) -> None:
    """Every technical failure, abort, or cancel before start is refunded automatically."""
    if job.end_user_id is None or job.status == JobStatus.SUCCEEDED:
        return
    if job.status == JobStatus.CANCELED and job.started_at is not None:
        return  # the user stopped a job that was already using the GPU
    refund = refund_job(job=job, note=f"{job.status}: {job.error_message}")
    if refund is not None:
        logger.info("job %s refunded (%s)", job.pk, job.status)
