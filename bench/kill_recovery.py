"""Kill recovery (a benchmark, not a test): how long a SIGKILLed worker's job takes to restart.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wsbench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/8 CACHE_URL=redis://127.0.0.1:6379/9 \
    .venv/bin/python bench/kill_recovery.py --runs 5 --json /tmp/kill-recovery.json

Target: a killed worker's job restarts within 15 s. Before the heartbeat change recovery took
67-72 s (the 60 s lease plus a sweep); now a running job's worker heartbeats every
WORKER_HEARTBEAT_S and the sweeper re-queues the jobs of a worker silent for
WORKER_DEAD_AFTER_S. The lease (JOB_LEASE_S) is left at its default, so only the heartbeat can
explain a fast recovery.

Everything runs as production runs it (Procfile): ``celery beat`` schedules the queue sweep
every SWEEP_INTERVAL_S onto the maintenance queue, and two workers (``-Q
render,training,maintenance -P solo -c 1``, each in its own process group) consume every queue.
Nothing calls the sweeper by hand. Like tests/integration/test_queue_resilience.py, each run
is a consumer generation (a ready avatar, a published 128 px template with many steps, one
generation credit, AVATAR_GENERATION_ALLOWANCE=0 so it is charged) submitted through the API;
once it is running with progress on one worker (A), A's process group gets SIGKILL, and the
clock runs until the job is running again on the other worker (B) and until it succeeded.
Then the ledger is checked (one charge, no refund) and A is replaced by a fresh worker.

It writes to the database DATABASE_URL names (use a scratch one) and purges the broker's
queues at start: point CELERY_BROKER_URL at a Redis db nobody else uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _harness import ROOT, bench_env  # bench/ is the folder of the script

sys.path.insert(0, str(ROOT))

TARGET_S = 15.0
READY_TIMEOUT_S = 180.0


class Proc:
    """A Procfile process (worker or beat) in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            if text in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no {text!r} in its log after {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL to the whole process group: no cleanup, no acknowledgement."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of the group, if any
        self._log.close()


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "workstation", "worker"]
    argv += ["-Q", "render,training,maintenance", "-P", "solo", "-c", "1"]
    argv += ["-n", f"{name}@%h", "-l", "INFO"]
    worker = Proc(name, argv, env, log_dir)
    worker.wait_for_log(" ready.")
    return worker


def start_beat(env: dict[str, str], var_dir: Path, log_dir: Path) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "workstation", "beat"]
    argv += ["-s", str(var_dir / "celerybeat-schedule"), "-l", "INFO"]
    beat = Proc("beat", argv, env, log_dir)
    beat.wait_for_log("beat: Starting...")
    return beat


# --- Setup (in-process Django on the same database) ------------------------------------------------


@dataclass
class Fixture:
    key: str
    end_user_ref: str
    end_user_id: int
    template_id: str
    avatar_id: str


def setup(env: dict[str, str], runs: int, steps: int) -> Fixture:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=600,
    )
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")
    import django

    django.setup()
    from django.test import Client

    from jobs.models import JobStatus, RenderJob
    from tests import factories
    from workstation.accounts.models import EndUser, User
    from workstation.accounts.services import api_client_create
    from workstation.celery import app
    from workstation.queues import ALL_QUEUES

    busy = RenderJob.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).count()
    if busy:
        sys.exit(
            f"{busy} queued/running jobs are already in this database; use an empty scratch "
            "database (the workers started here would run them)"
        )
    with app.connection_for_write() as conn:
        for queue in ALL_QUEUES:
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)

    issued = api_client_create(name=f"kill-recovery-{time.time_ns()}")
    ref = f"kill-{uuid.uuid4().hex[:8]}"
    client = Client(
        HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {issued.key}", HTTP_X_END_USER=ref
    )
    reply = client.post(
        "/api/v1/credits/grants",
        {"credit_type": "generation", "amount": runs},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=f"grant-{ref}",
    )
    assert reply.status_code == 201, reply.content
    end_user = EndUser.objects.get(client=issued.client, external_ref=ref)
    print("training the avatar once (tiny model, in this process)...", flush=True)
    avatar = factories.ready_consumer_avatar(end_user=end_user)
    designer = User.objects.create_user(
        f"kill-designer-{uuid.uuid4().hex[:8]}@example.test",
        secrets.token_urlsafe(16),
        role="designer",
        display_name="Kill bench",
    )
    template = factories.published_template(
        owner=designer, steps=steps, size={"width": 128, "height": 128}
    )
    return Fixture(issued.key, ref, end_user.pk, str(template.pk), str(avatar.pk))


# --- One run ------------------------------------------------------------------------------------------


@dataclass
class Run:
    run: int
    victim: str
    rescuer: str
    kill_to_requeued_s: float | None
    kill_to_running_on_b_s: float | None  # polled (every 0.1 s)
    kill_to_started_at_s: float | None  # the new attempt's started_at (database clock)
    kill_to_succeeded_s: float | None
    status: str
    attempts: int
    outputs: int
    charges: int
    refunds: int
    progress_at_kill: int


def poll(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def one_run(number: int, fixture: Fixture, workers: dict[str, Proc], timeout: float) -> Run:
    from django.test import Client

    from credits.models import CreditEntry
    from jobs.models import JobStatus, RenderJob

    client = Client(
        HTTP_HOST="127.0.0.1",
        HTTP_AUTHORIZATION=f"Bearer {fixture.key}",
        HTTP_X_END_USER=fixture.end_user_ref,
    )
    reply = client.post(
        "/api/v1/generations",
        {"template": fixture.template_id, "avatar": fixture.avatar_id},
        content_type="application/json",
    )
    assert reply.status_code in (201, 202), reply.content
    job_id = reply.json()["id"]
    by_host = {w.hostname: w for w in workers.values()}

    def running_with_progress() -> RenderJob | None:
        job = RenderJob.objects.get(pk=job_id)
        ok = job.status == JobStatus.RUNNING and job.progress_step > 0 and job.worker in by_host
        return job if ok else None

    job = poll(running_with_progress, timeout)
    if job is None:
        raise RuntimeError(f"job {job_id} did not start with progress within {timeout:.0f} s")
    victim = by_host[job.worker]
    rescuer = next(w for w in workers.values() if w is not victim)
    progress_at_kill = job.progress_step
    victim.kill()
    killed_at = time.time()
    del workers[victim.name]
    print(f"run {number}: killed {victim.name} at step {progress_at_kill}", flush=True)

    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = RenderJob.objects.get(pk=job_id)
        now = time.time() - killed_at
        if job.status == JobStatus.QUEUED:
            seen.setdefault("requeued", now)
        if job.status == JobStatus.RUNNING and job.worker == rescuer.hostname:
            seen.setdefault("requeued", now)
            seen.setdefault("running_on_b", now)
            if job.started_at is not None:
                seen.setdefault("started_at", job.started_at.timestamp() - killed_at)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            seen.setdefault("done", now)
            break
        time.sleep(0.1)
    job = RenderJob.objects.get(pk=job_id)
    if job.started_at is not None and job.worker == rescuer.hostname:
        seen.setdefault("started_at", job.started_at.timestamp() - killed_at)
    reasons = list(CreditEntry.objects.filter(job_id=job_id).values_list("reason", flat=True))
    return Run(
        run=number,
        victim=victim.name,
        rescuer=rescuer.name,
        kill_to_requeued_s=seen.get("requeued"),
        kill_to_running_on_b_s=seen.get("running_on_b"),
        kill_to_started_at_s=seen.get("started_at"),
        kill_to_succeeded_s=seen.get("done") if job.status == JobStatus.SUCCEEDED else None,
        status=str(job.status),
        attempts=job.attempts,
        outputs=job.outputs.count(),
        charges=reasons.count(CreditEntry.Reason.CHARGE),
        refunds=reasons.count(CreditEntry.Reason.REFUND),
        progress_at_kill=progress_at_kill,
    )


# --- Report ------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def spread(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"min": None, "median": None, "max": None}
    return {"min": min(present), "median": statistics.median(present), "max": max(present)}


def report(runs: list[Run], settings_used: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lines = [
        "| run | killed (A) | rescuer (B) | step at kill | kill -> re-queued s | "
        "kill -> running on B s | kill -> succeeded s | status | attempts | charges / refunds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.run} | {r.victim} | {r.rescuer} | {r.progress_at_kill} | "
            f"{fmt(r.kill_to_requeued_s)} | {fmt(r.kill_to_running_on_b_s)} | "
            f"{fmt(r.kill_to_succeeded_s)} | {r.status} | {r.attempts} | "
            f"{r.charges} / {r.refunds} |"
        )
    summary = {
        "kill_to_requeued_s": spread([r.kill_to_requeued_s for r in runs]),
        "kill_to_running_on_b_s": spread([r.kill_to_running_on_b_s for r in runs]),
        "kill_to_started_at_s": spread([r.kill_to_started_at_s for r in runs]),
        "kill_to_succeeded_s": spread([r.kill_to_succeeded_s for r in runs]),
    }
    restart = [r.kill_to_running_on_b_s for r in runs]
    met = all(v is not None and v <= TARGET_S for v in restart)
    charged_once = all(r.charges == 1 and r.refunds == 0 and r.status == "succeeded" for r in runs)
    lines += [
        "",
        "| measure (s) | min | median | max |",
        "|---|---|---|---|",
    ]
    for name, values in summary.items():
        lines.append(
            f"| {name.replace('_', ' ')} | {fmt(values['min'])} | {fmt(values['median'])} | "
            f"{fmt(values['max'])} |"
        )
    lines += [
        "",
        f"target (restart on B within {TARGET_S:.0f} s in every run): {'met' if met else 'NOT met'}"
        f"; charged exactly once, never refunded, succeeded: {'yes' if charged_once else 'NO'}",
        "settings: " + ", ".join(f"{k}={v}" for k, v in settings_used.items()),
    ]
    return "\n".join(lines), {"summary": summary, "target_met": met, "charged_once": charged_once}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="the template's denoising steps")
    parser.add_argument("--timeout", type=float, default=240.0, help="per wait, seconds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs 1..20")

    with tempfile.TemporaryDirectory(prefix="kill-recovery-") as tmp:
        var_dir = Path(tmp)
        log_dir = var_dir / "logs"
        log_dir.mkdir()
        env = bench_env(var_dir, AVATAR_GENERATION_ALLOWANCE="0")  # every generation costs a credit
        fixture = setup(env, args.runs, args.steps)
        from django.conf import settings

        settings_used = {
            name: getattr(settings, name)
            for name in (
                "WORKER_HEARTBEAT_S",
                "WORKER_DEAD_AFTER_S",
                "SWEEP_INTERVAL_S",
                "JOB_LEASE_S",
                "TOKEN_RESEND_S",
            )
        }
        settings_used["steps"] = args.steps
        procs: list[Proc] = []
        workers: dict[str, Proc] = {}
        runs: list[Run] = []
        started = time.perf_counter()
        try:
            procs.append(start_beat(env, var_dir, log_dir))
            for name in ("w1", "w2"):
                workers[name] = start_worker(name, env, log_dir)
                procs.append(workers[name])
            for number in range(1, args.runs + 1):
                run = one_run(number, fixture, workers, args.timeout)
                runs.append(run)
                print(
                    f"run {number}: running on {run.rescuer} after "
                    f"{fmt(run.kill_to_running_on_b_s)} s, succeeded after "
                    f"{fmt(run.kill_to_succeeded_s)} s ({run.status}, attempts {run.attempts}, "
                    f"charges {run.charges}, refunds {run.refunds})",
                    flush=True,
                )
                if number < args.runs:
                    name = f"w{number + 2}"
                    workers[name] = start_worker(name, env, log_dir)
                    procs.append(workers[name])
        except BaseException:
            for proc in procs:
                with contextlib.suppress(OSError):
                    print(f"--- {proc.name} log tail\n{proc.log()[-2000:]}", file=sys.stderr)
            raise
        finally:
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.stop()
        text, summary = report(runs, settings_used)
        print()
        print(text)
        print(
            f"\nwhole run: {time.perf_counter() - started:.0f} s; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "target_s": TARGET_S,
                        "settings": settings_used,
                        **summary,
                        "runs": [asdict(r) for r in runs],
                        "load_average": os.getloadavg(),
                    },
                    indent=2,
                    default=str,
                )
            )
        return 0 if summary["target_met"] and summary["charged_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
