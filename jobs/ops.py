"""Operations views: the operators' queue dashboard and Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.api.permissions import IsOperator

from . import registry
from .models import JobStatus, RenderJob, WorkerHeartbeat
from .selectors import average_seconds

CLASS_NAMES = {0: "consumer", 1: "studio", 2: "diagnostic"}


def queue_snapshot() -> dict:
    now = timezone.now()
    lanes = []
    queued = (
        RenderJob.objects.filter(status=JobStatus.QUEUED)
        .values("lane", "priority")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
    )
    running = dict(
        ((r["lane"], r["priority"]), r["n"])
        for r in RenderJob.objects.filter(status=JobStatus.RUNNING)
        .values("lane", "priority")
        .annotate(n=Count("pk"))
    )
    seen = set()
    for row in queued:
        key = (row["lane"], row["priority"])
        seen.add(key)
        lanes.append(
            {
                "lane": row["lane"],
                "class": CLASS_NAMES.get(row["priority"]),
                "queued": row["n"],
                "running": running.get(key, 0),
                "oldest_wait_seconds": round((now - row["oldest"]).total_seconds(), 1),
            }
        )
    for (lane, priority), n in running.items():
        if (lane, priority) not in seen:
            lanes.append(
                {
                    "lane": lane,
                    "class": CLASS_NAMES.get(priority),
                    "queued": 0,
                    "running": n,
                    "oldest_wait_seconds": 0.0,
                }
            )
    live_since = now - timedelta(seconds=settings.WORKER_LIVE_S)
    workers = [
        {
            "name": w.name,
            "lanes": w.lanes,
            "last_seen": w.last_seen,
            "current_job": str(w.current_job) if w.current_job else None,
        }
        for w in WorkerHeartbeat.objects.filter(last_seen__gte=live_since)
    ]
    minute_ago = now - timedelta(minutes=1)
    failures = RenderJob.objects.filter(status=JobStatus.FAILED).order_by("-finished_at")[:10]
    return {
        "lanes": sorted(lanes, key=lambda r: (r["lane"], r["class"] or "")),
        "workers": workers,
        "throughput_per_minute": RenderJob.objects.filter(
            status=JobStatus.SUCCEEDED, finished_at__gte=minute_ago
        ).count(),
        "recent_failures": [
            {
                "id": str(j.pk),
                "kind": j.kind,
                "error": j.error_code,
                "message": j.error_message,
                "finished_at": j.finished_at,
            }
            for j in failures
        ],
    }


class QueueDashboardView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        summary="Queue depth and waits by lane and class, workers, failures",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        return Response(queue_snapshot())


def metrics_view(request):
    """Prometheus text format. Expose it only inside the cluster (see docs/OPERATIONS.md)."""
    import hmac

    sent = request.headers.get("Authorization", "")
    if settings.METRICS_TOKEN and not hmac.compare_digest(
        sent.encode(), f"Bearer {settings.METRICS_TOKEN}".encode()
    ):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    snapshot = queue_snapshot()
    lines = [
        "# HELP workstation_queue_depth Jobs waiting, by lane and priority class.",
        "# TYPE workstation_queue_depth gauge",
    ]
    for row in snapshot["lanes"]:
        labels = f'lane="{row["lane"]}",class="{row["class"]}"'
        lines.append(f"workstation_queue_depth{{{labels}}} {row['queued']}")
    lines += [
        "# HELP workstation_jobs_running Jobs running, by lane and class.",
        "# TYPE workstation_jobs_running gauge",
    ]
    for row in snapshot["lanes"]:
        labels = f'lane="{row["lane"]}",class="{row["class"]}"'
        lines.append(f"workstation_jobs_running{{{labels}}} {row['running']}")
    lines += [
        "# HELP workstation_queue_oldest_wait_seconds Age of the oldest waiting job.",
        "# TYPE workstation_queue_oldest_wait_seconds gauge",
    ]
    for row in snapshot["lanes"]:
        labels = f'lane="{row["lane"]}",class="{row["class"]}"'
        lines.append(
            f"workstation_queue_oldest_wait_seconds{{{labels}}} {row['oldest_wait_seconds']}"
        )
    lines += [
        "# HELP workstation_job_run_seconds Rolling mean run time by kind.",
        "# TYPE workstation_job_run_seconds gauge",
    ]
    for kind in sorted(registry.registered()):
        lines.append(f'workstation_job_run_seconds{{kind="{kind}"}} {average_seconds(kind):.3f}')
    totals = dict(
        RenderJob.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    lines += [
        "# HELP workstation_jobs_total Jobs by final or current state.",
        "# TYPE workstation_jobs_total gauge",
    ]
    for state in JobStatus.values:
        lines.append(f'workstation_jobs_total{{status="{state}"}} {totals.get(state, 0)}')
    lines += [
        "# HELP workstation_live_workers Workers seen recently.",
        "# TYPE workstation_live_workers gauge",
        f"workstation_live_workers {len(snapshot['workers'])}",
        "# HELP workstation_throughput_per_minute Jobs finished in the last minute.",
        "# TYPE workstation_throughput_per_minute gauge",
        f"workstation_throughput_per_minute {snapshot['throughput_per_minute']}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
