"""Event-stream load (a benchmark, not a test): N open streams on one web process, a plain GET's
latency meanwhile, and the process's memory per stream.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wsstream \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 CACHE_URL=redis://127.0.0.1:6379/13 \
    .venv/bin/python bench/stream_load.py --streams 2000

Target (issue #14): with 2,000 streams open on one web process, a plain GET p95 <= 100 ms.

One web process runs as the Procfile runs it (gunicorn, one uvicorn worker, workstation.asgi)
on the scratch database and Redis the environment names; loopback only. The script migrates
the database, creates one API client and one queued generation per stream owner (each stream
is its own end user watching their own job, as 2,000 people in line would), then:

1. measures GET /api/v1/health (database, broker, storage and engine checks) alone;
2. opens the streams (asyncio, raw sockets; at most --open-concurrency connecting at once)
   and waits for each one's first event;
3. with all of them open, measures the same GET again, while --changes-per-s jobs change
   (progress written and published as a worker does): each change must reach its stream,
   and the time from publishing to the event arriving is reported;
4. reads the worker's RSS and threads before the streams and with them open.

It stops by itself (every wait is bounded), then stops the server. It writes to the database
DATABASE_URL names (use a scratch one; it is created if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from _harness import ROOT, bench_env  # bench/ is the folder of the script

sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        sys.exit(f"the open-file limit is {hard}; {need} streams need more (ulimit -Hn)")


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


# --- Data (in-process Django on the same database) ---------------------------------------------------


def seed(owners: int) -> tuple[str, list[tuple[str, str]]]:
    """One API client; per owner an end user and one queued generation. Returns the key and
    (end user ref, job id) pairs."""
    from generations.kinds import GENERATION
    from jobs.models import RenderJob
    from jobs.services import job_create
    from workstation.accounts.models import EndUser
    from workstation.accounts.services import api_client_create

    RenderJob.objects.all().delete()
    issued = api_client_create(name=f"stream-bench-{os.getpid()}-{time.time_ns()}")
    pairs = []
    for i in range(owners):
        ref = f"viewer-{i}"
        end_user = EndUser.objects.create(client=issued.client, external_ref=ref)
        job = job_create(kind=GENERATION, spec={"prompt": "p", "seed": i}, end_user=end_user)
        pairs.append((ref, str(job.pk)))
    return issued.key, pairs


def change(job_id: str, step: int) -> None:
    """What a worker does on a progress step: write the row, publish the job's topic."""
    from jobs.events import job_changed
    from jobs.models import JobStatus, RenderJob

    RenderJob.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING, progress_step=step, progress_total=1000
    )
    job_changed(job_id)


# --- Client side -------------------------------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    elapsed = time.perf_counter() - started
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, elapsed


def _probe(port: int, samples: int, interval: float) -> tuple[list[float], int]:
    latencies, failures = [], 0
    for _ in range(samples):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        latencies.append((time.perf_counter() - started) * 1000)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        failures += status not in (200, 503)  # 503: a component reported down, still answered
        time.sleep(interval)
    return latencies, failures


async def measure_gets(port: int, samples: int, interval: float) -> tuple[list[float], int]:
    """GET latencies measured from a process of its own: this one is busy reading streams."""
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await loop.run_in_executor(pool, _probe, port, samples, interval)


class Stream:
    def __init__(self, ref: str, job_id: str):
        self.ref = ref
        self.job_id = job_id
        self.events = 0
        self.refused = ""
        self.first = asyncio.Event()
        self.steps: dict[int, float] = {}  # progress step -> arrival time
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None

    async def run(self, port: int, key: str) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(
            (
                f"GET /api/v1/generations/{self.job_id}/events HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {key}\r\nX-End-User: {self.ref}\r\n\r\n"
            ).encode()
        )
        await self.writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            self.refused = status.decode(errors="replace").strip()
            self.first.set()
            return
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                self.events += 1
                self.first.set()
                if b'"status": "running"' in line:  # parsed only when needed: cheap client
                    body = json.loads(line[6:])
                    self.steps.setdefault(body["progress"]["step"], time.monotonic())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()


async def open_streams(port: int, key: str, pairs, concurrency: int, timeout: float):
    streams = [Stream(ref, job_id) for ref, job_id in pairs]
    gate = asyncio.Semaphore(concurrency)

    async def open_one(stream: Stream) -> None:
        async with gate:
            stream.task = asyncio.create_task(stream.run(port, key))
            await asyncio.wait_for(stream.first.wait(), timeout)

    started = time.monotonic()
    await asyncio.gather(*(open_one(s) for s in streams))
    refused = [s.refused for s in streams if s.refused]
    if refused:
        raise RuntimeError(f"{len(refused)} streams refused, e.g. {refused[0]!r}")
    return streams, time.monotonic() - started


async def drive_changes(streams: list[Stream], per_s: float, stop: asyncio.Event, sent: dict):
    """Changes jobs at `per_s` (one progress step each), recording when each was published."""
    if per_s <= 0:
        return
    rng = random.Random(14)
    step = 0
    while not stop.is_set():
        step += 1
        stream = rng.choice(streams)
        await asyncio.to_thread(change, stream.job_id, step)
        sent[(stream.job_id, step)] = (time.monotonic(), stream)
        await asyncio.sleep(1 / per_s)


# --- Main ----------------------------------------------------------------------------------------


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gunicorn", "workstation.asgi:application"]
    argv += ["-k", "uvicorn.workers.UvicornWorker", "--workers", "1"]
    argv += ["--bind", f"127.0.0.1:{port}", "--timeout", "60"]
    argv += ["--logger-class", "workstation.log_redaction.RedactingAccessLogger"]
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def worker_pid(master: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("the web worker did not start")


async def bench(args, env: dict[str, str], key: str, pairs, log: Path) -> dict:
    port = free_port()
    server = start_server(env, port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"web server exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if (await http_get(port, "/api/v1/health"))[0] in (200, 503):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("web server did not answer in 90 s")
            await asyncio.sleep(0.2)
        pid = worker_pid(server.pid)
        await measure_gets(port, 20, 0.02)  # warm-up
        alone, _ = await measure_gets(port, args.samples, args.interval)
        before = proc_status(pid)
        streams, open_s = await open_streams(
            port, key, pairs, args.open_concurrency, args.open_timeout
        )
        await asyncio.sleep(1)  # let the last opens settle
        opened = proc_status(pid)
        stop, sent = asyncio.Event(), {}
        changer = asyncio.create_task(drive_changes(streams, args.changes_per_s, stop, sent))
        loaded, failures = await measure_gets(port, args.samples, args.interval)
        stop.set()
        await changer

        # Every published change must reach its stream (bounded wait). A stream re-reads its
        # row when woken, so two quick changes of one job may arrive as one event showing the
        # later step: a change counts as delivered by the first event at or after its step.
        def arrival(stream: Stream, step: int) -> float | None:
            seen = [at for s, at in stream.steps.items() if s >= step]
            return min(seen) if seen else None

        wait_until = time.monotonic() + 10
        while time.monotonic() < wait_until and any(
            arrival(stream, step) is None for (_, step), (_, stream) in sent.items()
        ):
            await asyncio.sleep(0.05)
        delivery = [
            (arrived - at) * 1000
            for (_, step), (at, stream) in sent.items()
            if (arrived := arrival(stream, step)) is not None
        ]
        still_open = sum(1 for s in streams if s.task is not None and not s.task.done())
        after = proc_status(pid)
        for stream in streams:
            stream.close()
        return {
            "streams": len(streams),
            "open_s": open_s,
            "still_open": still_open,
            "alone": alone,
            "loaded": loaded,
            "failures": failures,
            "rss_before_kb": before["VmRSS"],
            "rss_open_kb": opened["VmRSS"],
            "rss_after_kb": after["VmRSS"],
            "threads_before": before["Threads"],
            "threads_open": after["Threads"],
            "changes": len(sent),
            "delivered": len(delivery),
            "delivery": delivery,
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def report(r: dict) -> str:
    per_stream = (r["rss_open_kb"] - r["rss_before_kb"]) / max(r["streams"], 1)
    rows = [
        (
            "open streams (one web process)",
            f"{r['streams']} (still open at the end: {r['still_open']})",
        ),
        ("time to open them all", f"{r['open_s']:.1f} s"),
        (
            "GET /api/v1/health, no streams",
            f"p50 {statistics.median(r['alone']):.1f} ms, p95 {percentile(r['alone'], 0.95):.1f} ms",
        ),
        (
            f"GET /api/v1/health, {r['streams']} streams open",
            f"p50 {statistics.median(r['loaded']):.1f} ms, p95 "
            f"{percentile(r['loaded'], 0.95):.1f} ms, max {max(r['loaded']):.1f} ms "
            f"(target p95 <= {TARGET_P95_MS:.0f} ms; failed: {r['failures']})",
        ),
        (
            "web worker RSS",
            f"{r['rss_before_kb'] / 1024:.0f} MiB -> {r['rss_open_kb'] / 1024:.0f} MiB open "
            f"-> {r['rss_after_kb'] / 1024:.0f} MiB after the changes",
        ),
        ("memory per open stream", f"{per_stream:.1f} KiB"),
        ("web worker threads", f"{r['threads_before']} -> {r['threads_open']}"),
        (
            "job changes -> event on its stream",
            f"{r['delivered']}/{r['changes']} delivered; p50 "
            f"{statistics.median(r['delivery']) if r['delivery'] else float('nan'):.1f} ms, "
            f"p95 {percentile(r['delivery'], 0.95):.1f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200, help="GETs per measurement")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between GETs")
    parser.add_argument("--changes-per-s", type=float, default=20.0)
    parser.add_argument("--open-concurrency", type=int, default=64)
    parser.add_argument("--open-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    raise_fd_limit(args.streams * 2 + 256)  # this client's sockets and the server's (inherited)
    var_dir = Path(tempfile.mkdtemp(prefix="stream-load-", dir=ROOT / "var"))
    env = bench_env(
        var_dir,
        # Throttles off: what is measured is the streams' cost, not the rate limits.
        THROTTLE_RATE_ANON="100000/min",
        THROTTLE_RATE_PRINCIPAL="1000000/min",  # one partner key opens every stream here
        SSE_MAX_SECONDS="600",  # no reconnects during the run
        ENGINE_WARM_ON_START="0",
    )
    os.environ.update({k: env[k] for k in ("VAR_DIR", "MEDIA_ROOT", "ENGINE_MODELS_DIR")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")
    ensure_database(os.environ["DATABASE_URL"])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    django.setup()
    import logging

    logging.getLogger("jobs").setLevel(logging.WARNING)  # one line per seeded job otherwise
    print(f"seeding {args.streams} owners with a queued generation each ...", flush=True)
    key, pairs = seed(args.streams)
    log = var_dir / "web.log"
    print(f"web process log: {log}", flush=True)
    result = asyncio.run(asyncio.wait_for(bench(args, env, key, pairs, log), 900))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in result.items()}, indent=1))
    loaded_p95 = percentile(result["loaded"], 0.95)
    return 0 if loaded_p95 <= TARGET_P95_MS and result["still_open"] == result["streams"] else 1


if __name__ == "__main__":
    sys.exit(main())
