"""Reads for generations: a job's public state, shared by the REST API, SSE and webhooks; usage
per API client for operators."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from avatars.kinds import TRAINING
from credits.models import CreditEntry, CreditType
from jobs.models import TERMINAL_STATUSES, JobStatus, RenderJob
from workstation.accounts.models import ApiClient
from workstation.errors import InvalidInput

from .kinds import GENERATION, REFINEMENT


def job_state(job: RenderJob) -> dict[str, Any]:
    """Ids, status, error and times: what every view of a consumer job shows. Never prompts,
    specs or storage names."""
    return {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "template": str(job.template_id) if job.template_id else None,
        "avatar": str(job.avatar_id) if job.avatar_id else None,
        "parent": str(job.parent_id) if job.parent_id else None,
        "error": {
            "code": job.error_code,
            "message": job.error_message,
            "details": job.error_details or [],
        }
        if job.error_code
        else None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.finished_at,
    }


# --- Usage per API client, for operators (billing partners) ---------------------------------------

USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366


@dataclass
class RefundUsage:
    count: int = 0
    credits: dict[str, int] = field(
        default_factory=lambda: {credit_type: 0 for credit_type in CreditType.values}
    )


@dataclass
class DayUsage:
    """One API client's use in one UTC day (or a total over days)."""

    day: date | None = None
    avatars_trained: int = 0
    generations: int = 0
    refinements: int = 0
    gpu_seconds: float = 0.0
    refunds: RefundUsage = field(default_factory=RefundUsage)

    def add(self, other: DayUsage) -> None:
        self.avatars_trained += other.avatars_trained
        self.generations += other.generations
        self.refinements += other.refinements
        self.gpu_seconds = round(self.gpu_seconds + other.gpu_seconds, 3)
        self.refunds.count += other.refunds.count
        for credit_type, amount in other.refunds.credits.items():
            self.refunds.credits[credit_type] += amount


@dataclass
class ClientUsage:
    client_id: int
    client_name: str
    totals: DayUsage
    days: list[DayUsage]


@dataclass
class UsageReport:
    since: date
    until: date
    clients: list[ClientUsage]


def usage_window(*, since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The inclusive UTC days of a usage report: by default the last 30 days up to today; at
    most 366 days."""
    until = until or today
    since = since or until - timedelta(days=USAGE_DEFAULT_DAYS - 1)
    if since > until:
        raise InvalidInput({"since": ["Must be on or before `until`."]})
    if (until - since).days + 1 > USAGE_MAX_DAYS:
        raise InvalidInput(
            {"since": [f"The window is at most {USAGE_MAX_DAYS} days; move `since` or `until`."]}
        )
    return since, until


def client_usage(*, since: date | None = None, until: date | None = None) -> UsageReport:
    """Per API client and UTC day: avatars trained, generations and refinements (jobs that
    succeeded, by the day they finished), GPU-seconds (started -> finished of every finished
    job of the client's end users, whatever its outcome) and refunds (ledger entries by the day
    they were made, count and credits per credit type). Days without use are left out; so are
    clients without use in the window. Three grouped queries, whatever the volume."""
    since, until = usage_window(since=since, until=until, today=timezone.now().date())
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    rows: dict[tuple[int, date], DayUsage] = {}

    def row(client_pk: int, day: date) -> DayUsage:
        return rows.setdefault((client_pk, day), DayUsage(day=day))

    succeeded = Q(status=JobStatus.SUCCEEDED)
    jobs = (
        RenderJob.objects.filter(
            end_user__isnull=False,
            status__in=TERMINAL_STATUSES,
            finished_at__gte=start,
            finished_at__lt=end,
        )
        .annotate(day=TruncDate("finished_at", tzinfo=UTC), client_pk=F("end_user__client_id"))
        .values("client_pk", "day")
        .annotate(
            n_avatars_trained=Count("pk", filter=succeeded & Q(kind=TRAINING)),
            n_generations=Count("pk", filter=succeeded & Q(kind=GENERATION)),
            n_refinements=Count("pk", filter=succeeded & Q(kind=REFINEMENT)),
            run_time=Sum(
                ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
                filter=Q(started_at__isnull=False),
            ),
        )
        .order_by()
    )
    for job_row in jobs:
        usage = row(job_row["client_pk"], job_row["day"])
        usage.avatars_trained = job_row["n_avatars_trained"]
        usage.generations = job_row["n_generations"]
        usage.refinements = job_row["n_refinements"]
        run_time = job_row["run_time"]
        usage.gpu_seconds = round(run_time.total_seconds(), 3) if run_time else 0.0

    refunds = (
        CreditEntry.objects.filter(
            reason=CreditEntry.Reason.REFUND, created_at__gte=start, created_at__lt=end
        )
        .annotate(day=TruncDate("created_at", tzinfo=UTC), client_pk=F("end_user__client_id"))
        .values("client_pk", "day", "credit_type")
        .annotate(count=Count("pk"), credits=Sum("amount"))
        .order_by()
    )
    for refund_row in refunds:
        usage = row(refund_row["client_pk"], refund_row["day"])
        usage.refunds.count += refund_row["count"]
        usage.refunds.credits[refund_row["credit_type"]] = (
            usage.refunds.credits.get(refund_row["credit_type"], 0) + refund_row["credits"]
        )

    names = dict(
        ApiClient.objects.filter(pk__in={client_pk for client_pk, _ in rows}).values_list(
            "pk", "name"
        )
    )
    clients: dict[int, ClientUsage] = {}
    for (client_pk, _day), usage in sorted(rows.items(), key=lambda item: item[0]):
        report = clients.get(client_pk)
        if report is None:
            report = clients[client_pk] = ClientUsage(
                client_id=client_pk,
                client_name=names.get(client_pk, ""),
                totals=DayUsage(),
                days=[],
            )
        report.days.append(usage)
        report.totals.add(usage)
    return UsageReport(
        since=since,
        until=until,
        clients=sorted(clients.values(), key=lambda c: (c.client_name, c.client_id)),
    )
