"""Benchmark (not a test): position/ETA request time and dispatch overhead with N queued jobs.

    python manage.py bench_queue --jobs 1000 --owners 100
    python manage.py bench_queue --jobs 2000 --owners 600 --estimate-error --arrivals 0.5
    python manage.py bench_queue --jobs 100000 --owners 10000 --claimers 8

``--claimers N`` then drains part of the queue with N claimer processes at once and reports
claims per second and whether the fair order held (no owner served twice while another
still waited for its first turn; each owner's jobs in arrival order).

``--estimate-error`` then drains the queue by the fair policy and compares, for a sample of
jobs, the position reported while they waited with the number of jobs that really started
before them. With ``--arrivals R``, R new jobs arrive per claim while it drains (alternately
from new owners, who take their turn before anyone's second round, and from waiting owners),
which is where estimates go wrong: a static queue is predicted exactly (the property test).

It writes real rows to the configured database and removes them afterwards; point
DATABASE_URL at a scratch database (docs/benchmarks.md shows the runs).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from generations.kinds import GENERATION
from jobs import dispatch, turns
from jobs.models import JobStatus, OwnerTurn, RenderJob, WorkerHeartbeat
from jobs.selectors import queue_estimate
from workstation.accounts.models import ApiClient, EndUser
from workstation.accounts.services import api_client_create
from workstation.ownership import owner_key


def _claimer(worker: str, claims: int, start, results) -> None:
    """One claimer process (forked): claims `claims` jobs, reports each claim's time."""
    start.wait()
    times = []
    for _ in range(claims):
        began = time.perf_counter()
        job = dispatch.claim_next(lane="render", worker=worker)
        times.append((time.perf_counter() - began) * 1000)
        if job is None:
            break
    connections.close_all()
    results.put(times)


def _fairness(claimed: list[tuple], rounds: dict[str, int]) -> str:
    """Order violations among claims (owner, created, started) sorted by start. `rounds`: how
    often each owner with waiting work had been served before. A round violation: an owner
    served again while another waiting owner had had fewer turns. A FIFO violation: an
    owner's jobs out of arrival order. Concurrent claimers skip each other's locked owners,
    so near-simultaneous claims may swap; these counts say how far that goes."""
    waiting_at = Counter(rounds.values())  # turns had -> owners
    last_created: dict[str, object] = {}
    round_violations = fifo = 0
    for owner, created, _started in claimed:
        had = rounds.get(owner, 0)
        if any(turns_had < had and n for turns_had, n in waiting_at.items()):
            round_violations += 1
        if owner in rounds:
            waiting_at[had] -= 1
            waiting_at[had + 1] += 1
        rounds[owner] = had + 1
        if owner in last_created and created < last_created[owner]:
            fifo += 1
        last_created[owner] = created
    return f"round-robin violations {round_violations}; FIFO violations {fifo}"


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
        parser.add_argument("--estimate-error", action="store_true")
        parser.add_argument(
            "--arrivals", type=float, default=0.0, help="below 1, or the queue never drains"
        )
        parser.add_argument("--claimers", type=int, default=0)
        parser.add_argument("--concurrent-claims", type=int, default=4000)

    def handle(self, *args, jobs: int, owners: int, requests: int, claims: int, **options):
        self.estimate_error = options["estimate_error"]
        self.arrivals = options["arrivals"]
        if not 0 <= self.arrivals < 1:
            raise CommandError("--arrivals must be at least 0 and below 1")
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
            job.created_at = now + timedelta(microseconds=i)  # arrival order, no ties
            job.token_sent_at = now
            rows.append(job)
        RenderJob.objects.bulk_create(rows, batch_size=500)
        # Rows inserted in bulk skip job_create: the sweeper's reconcile builds their turn
        # index (jobs.turns), as it would after an import.
        started = time.perf_counter()
        turns.reconcile()
        self.stdout.write(f"turn index built in {time.perf_counter() - started:.2f} s")
        WorkerHeartbeat.objects.update_or_create(
            name="bench-worker", defaults={"lanes": "render", "last_seen": timezone.now()}
        )
        try:
            self._measure(issued, end_users, rows, requests, claims)
            if options["claimers"]:
                self._concurrent_claims(options["claimers"], options["concurrent_claims"])
            if self.estimate_error:
                self._estimate_error(issued, end_users, rows, requests)
        finally:
            every_user = list(EndUser.objects.filter(client=issued.client))
            RenderJob.objects.filter(end_user__client=issued.client).delete()
            OwnerTurn.objects.filter(
                owner_key__in=[owner_key(end_user_id=u.pk) for u in every_user]
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

    def _concurrent_claims(self, claimers: int, total: int) -> None:
        """`claimers` processes claim `total` jobs between them as fast as they can."""
        before = set(
            RenderJob.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True)
        )
        # Turns already had by each owner with waiting work (the sequential claims above).
        rounds = {
            owner: int(served > turns.NEVER_SERVED)
            for owner, served in OwnerTurn.objects.filter(
                lane="render", head_at__isnull=False
            ).values_list("owner_key", "last_served_at")
        }
        connections.close_all()  # each process opens its own connection
        context = multiprocessing.get_context("fork")
        start = context.Barrier(claimers + 1)
        results = context.Queue()
        share = total // claimers
        processes = [
            context.Process(target=_claimer, args=(f"bench-claimer-{n}", share, start, results))
            for n in range(claimers)
        ]
        for process in processes:
            process.start()
        start.wait()
        began = time.perf_counter()
        latencies: list[float] = []
        for _ in processes:
            latencies.extend(results.get(timeout=600))
        elapsed = time.perf_counter() - began
        for process in processes:
            process.join()
        claimed = list(
            RenderJob.objects.filter(status=JobStatus.RUNNING)
            .exclude(pk__in=before)
            .order_by("started_at")
            .values_list("owner_key", "created_at", "started_at")
        )
        self.stdout.write(
            f"{claimers} concurrent claimers: {len(claimed)} claims in {elapsed:.2f} s = "
            f"{len(claimed) / elapsed:.0f} claims/s; claim p50 "
            f"{statistics.median(latencies):.1f} ms, p95 {_percentile(latencies, 0.95):.1f} ms; "
            + _fairness(claimed, rounds)
        )

    def _estimate_error(self, issued, end_users, rows, requests: int) -> None:
        waiting = list(
            RenderJob.objects.filter(pk__in=[r.pk for r in rows], status=JobStatus.QUEUED)
        )
        sample = waiting[:: max(1, len(waiting) // requests)][:requests]
        if not sample:
            self.stdout.write("estimate error: no job left waiting to sample (raise --jobs)")
            return
        # Positions come from a lane snapshot up to one tick old: let the claims above age out.
        time.sleep(settings.QUEUE_POSITION_TICK_S)
        estimated = {}
        for job in sample:
            estimate = queue_estimate(job)
            assert estimate is not None
            estimated[job.pk] = estimate.position
        started: dict = {}
        credit = 0.0
        newcomers = 0
        while True:
            claimed = dispatch.claim_next(lane="render", worker="bench-worker")
            if claimed is None:
                break
            started[claimed.pk] = len(started)
            credit += self.arrivals
            while credit >= 1:
                credit -= 1
                if newcomers % 2 == 0:
                    owner = EndUser.objects.create(
                        client=issued.client, external_ref=f"bench-new-{newcomers}"
                    )
                else:
                    owner = end_users[newcomers % len(end_users)]
                newcomers += 1
                arrival = dispatch.prepare_job(
                    RenderJob(kind=GENERATION, end_user=owner, spec={"prompt": "x", "seed": 0})
                )
                arrival.token_sent_at = timezone.now()
                arrival.save()
                turns.job_queued(arrival)
        errors = [started[pk] - position for pk, position in estimated.items()]
        absolute = [abs(e) for e in errors]
        relative = [
            abs(started[pk] - position) / max(1, position) for pk, position in estimated.items()
        ]
        per_job = settings.JOB_DEFAULT_SECONDS[GENERATION]
        p95 = _percentile(absolute, 0.95)
        exact = sum(1 for e in errors if e == 0) / len(errors)
        self.stdout.write(
            f"estimate error ({len(errors)} sampled jobs, {self.arrivals} arrivals per claim, "
            f"{newcomers} arrived): actual start - reported position: mean "
            f"{statistics.fmean(errors):+.1f} jobs; |error| p50 {statistics.median(absolute):.0f}, "
            f"p95 {p95:.0f}, max {max(absolute)} jobs; exact for {exact:.0%}; relative |error| "
            f"p95 {_percentile(relative, 0.95):.1%} (p95 {p95 * per_job:.0f} s at {per_job:g} s "
            "per job on one worker)"
        )
