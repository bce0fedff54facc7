"""Credits: grants from the client's server, charges for work, automatic refunds.

Spending locks the end user's row first, so parallel requests are serialized and the balance
can never go negative. What costs what is decided by the apps that charge (avatars: training;
generations: beyond an avatar's allowance). A technical failure, a deadline abort or the user's
cancel before start is refunded by `refund_unsuccessful_jobs`, a terminal hook registered for
every job kind (jobs.registry).
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, models, transaction
from django.db.models import Sum

from jobs.models import JobStatus, RenderJob
from workstation.accounts.models import EndUser
from workstation.errors import InsufficientCredits

from .models import CreditEntry, CreditType

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
    avatar: models.Model | None = None,  # an avatars.Avatar (credits does not import avatars)
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
        avatar_id=avatar.pk if avatar is not None else None,
    )


def refund_job(*, job: RenderJob, note: str) -> CreditEntry | None:
    """Returns what the job cost, once (a constraint forbids a second refund)."""
    charges = CreditEntry.objects.filter(reason=CreditEntry.Reason.CHARGE)
    entry = charges.filter(job=job).first()
    if entry is None and job.avatar_id is not None and job.end_user_id is not None:
        # Avatar credits charged before the training job existed name only the avatar.
        entry = charges.filter(
            job__isnull=True,
            avatar=job.avatar_id,
            end_user=job.end_user_id,
            credit_type=CreditType.AVATAR,
        ).first()
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


def refund_unsuccessful_jobs(job: RenderJob) -> None:
    """Every technical failure, abort, or cancel before start is refunded automatically."""
    if job.end_user_id is None or job.status == JobStatus.SUCCEEDED:
        return
    if job.status == JobStatus.CANCELED and job.started_at is not None:
        return  # the user stopped a job that was already using the GPU
    refund = refund_job(job=job, note=f"{job.status}: {job.error_message}")
    if refund is not None:
        logger.info("job %s refunded (%s)", job.pk, job.status)
