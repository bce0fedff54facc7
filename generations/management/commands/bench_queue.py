"""Benchmark (not a test): position/ETA request time and dispatch overhead with N queued jobs.

    python manage.py bench_queue --jobs 1000 --owners 100

It writes real rows to the configured database and removes them afterwards; point
DATABASE_URL at a scratch database (docs/benchmarks.md shows the runs).
"""

from __future__ import annotations

import statistics
import time

from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client
from django.utils import timezone

from generations.kinds import GENERATION
from jobs import dispatch
from jobs.models import OwnerTurn, RenderJob, WorkerHeartbeat
from workstation.accounts.models import ApiClient, EndUser
from workstation.accounts.services import api_client_create
from workstation.ownership import owner_key


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Command(BaseCommand):
    help = "Measure position/ETA request time (p50/p95) and claim overhead with queued jobs."

    def add_arguments(self, parser):
        parser.add_argument("--jobs", type=int, default=1000)
        parser.add_argument("--owners", type=int, default=100)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--claims", type=int, default=200)

    def handle(self, *args, jobs: int, owners: int, requests: int, claims: int, **options):
        issued = api_client_create(name=f"bench-{time.time_ns()}")
        end_users = EndUser.objects.bulk_create(
            [EndUser(client=issued.client, external_ref=f"bench-{i}") for i in range(owners)]
        )
        now = timezone.now()
        rows = []
        for i in range(jobs):
            job = dispatch.prepare_job(
                RenderJob(
                    kind=GENERATION,
                    end_user=end_users[i % owners],
                    spec={"prompt": "x", "seed": i},
                )
            )
            job.created_at = now
            job.token_sent_at = now
            rows.append(job)
        RenderJob.objects.bulk_create(rows, batch_size=500)
        WorkerHeartbeat.objects.update_or_create(
            name="bench-worker", defaults={"lanes": "render", "last_seen": timezone.now()}
        )
        try:
            self._measure(issued, end_users, rows, requests, claims)
        finally:
            RenderJob.objects.filter(end_user__client=issued.client).delete()
            OwnerTurn.objects.filter(
                owner_key__in=[owner_key(end_user_id=u.pk) for u in end_users]
            ).delete()
            WorkerHeartbeat.objects.filter(name="bench-worker").delete()
            EndUser.objects.filter(client=issued.client).delete()
            ApiClient.objects.filter(pk=issued.client.pk).delete()

    def _measure(self, issued, end_users, rows, requests: int, claims: int) -> None:
        client = Client(HTTP_HOST="127.0.0.1")
        step = max(1, len(rows) // requests)
        sample = rows[::step][:requests]
        timings = []
        for job in sample:
            ref = next(u.external_ref for u in end_users if u.pk == job.end_user_id)
            started = time.perf_counter()
            response = client.get(
                f"/api/v1/generations/{job.pk}",
                HTTP_AUTHORIZATION=f"Bearer {issued.key}",
                HTTP_X_END_USER=ref,
            )
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content
            assert response.json()["queue"] is not None
        claim_times = []
        for _ in range(min(claims, len(rows))):
            started = time.perf_counter()
            job = dispatch.claim_next(lane="render", worker="bench-worker")
            claim_times.append((time.perf_counter() - started) * 1000)
            assert job is not None
        self.stdout.write(
            f"database: {connection.vendor}; queued jobs: {len(rows)}; owners: {len(end_users)}\n"
            f"GET /api/v1/generations/{{id}} with position/ETA ({len(timings)} requests): "
            f"p50 {statistics.median(timings):.1f} ms, p95 {_percentile(timings, 0.95):.1f} ms\n"
            f"claim (SELECT ... FOR UPDATE SKIP LOCKED, fair policy) -> running "
            f"({len(claim_times)} claims): p50 {statistics.median(claim_times):.1f} ms, "
            f"p95 {_percentile(claim_times, 0.95):.1f} ms, "
            f"mean {statistics.fmean(claim_times):.1f} ms"
        )
