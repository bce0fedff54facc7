"""Upload probe (a benchmark, not a test): web time and web-process memory of image uploads.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wsbench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/8 CACHE_URL=redis://127.0.0.1:6379/9 \
    .venv/bin/python bench/upload_probe.py --json /tmp/upload-probe.json

Reproduces a security probe's finding: photos that declare a huge size (9000x9000 = 81 Mpx,
just under Pillow's bomb limit; one solid RGB colour, 252 KB on disk here) make the
web request decode them. Target: no avatar or asset upload holds a web thread > 2 s or grows
a web process by > 200 MB.

It migrates the database DATABASE_URL names (use a scratch one: rows are written), creates an
API client (+ end users with consent and avatar credits, through the API) and a designer, and
for every measurement starts a fresh gunicorn exactly as the Procfile's ``web`` line (2 workers
x 4 threads, DEBUG off, a generated SECRET_KEY) on a free loopback port, so each worker's
memory peak belongs to that measurement. Each server is warmed first (small, valid avatar
uploads until both workers have served one) so import and model-load memory is not counted.

Cases: (a) ``POST /api/v1/avatars``: a real front photo + 20 x the 9000x9000 PNG; (b) the
9000x9000 PNG as a designer asset, ``POST /api/studio/assets``; (c) a legitimate avatar: 20
real-size selfies (4000x3000 JPEG, ~12 Mpx, a real face). Each case is measured alone
(``--repeats`` times, a fresh server each) and as 4 parallel uploads while a loop of plain
``GET /api/v1/health`` measures what unrelated requests see.

Memory: VmRSS of every gunicorn worker before the upload, VmRSS sampled every 50 ms during it
(peak), and VmRSS / VmHWM after. "growth" = sampled peak - starting RSS of that worker (the
HWM delta, also relative to the starting RSS, is an upper bound: it may hold the warm-up's
peak). Single uploads report the worker that grew most; parallel ones the sum over workers.
Every loop is bounded; gunicorn's process group is killed at the end, even on error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from _harness import ROOT, bench_env  # bench/ is the folder of the script

sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
PASSWORD = secrets.token_urlsafe(16)  # the designer is made and signed in by this run
GIANT_SIDE = 9000
SELFIE_SIZE = (4000, 3000)
TARGET_S = 2.0
TARGET_MB = 200.0


# --- Environment ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    cookies: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        cookies: dict[str, str] = {}
        for line in response.headers.get_all("Set-Cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            cookies.update({k: m.value for k, m in jar.items()})
        return Reply(response.status, data, dict(response.headers.items()), cookies)
    finally:
        conn.close()


def multipart(
    fields: dict[str, str], files: list[tuple[str, str, bytes, str]]
) -> tuple[bytes, str]:
    boundary = f"----probe{uuid.uuid4().hex}"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, filename, data, ctype in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# --- Images --------------------------------------------------------------------------------------


def giant_png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (GIANT_SIDE, GIANT_SIDE), colour).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def jpeg(image: Any, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def selfies(count: int) -> list[bytes]:
    """`count` distinct ~12 Mpx photos of one real face (the tests' astronaut, upscaled)."""
    from PIL import Image

    from templates_studio import demo

    out = []
    for small in demo.photo_set(demo.astronaut(), count):
        face = Image.open(io.BytesIO(small)).convert("RGB")
        side = SELFIE_SIZE[1]
        face = face.resize((side, side), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", SELFIE_SIZE, (200, 190, 180))
        canvas.paste(face, ((SELFIE_SIZE[0] - side) // 2, 0))
        out.append(jpeg(canvas, quality=90))
    return out


@dataclass
class Payloads:
    front: bytes
    giant: bytes
    giant_variants: list[bytes]
    warmup_photos: list[bytes]
    selfies: list[bytes]


def make_payloads(parallel: int) -> Payloads:
    from templates_studio import demo

    started = time.perf_counter()
    astronaut = demo.astronaut()
    payloads = Payloads(
        front=jpeg(astronaut),
        giant=giant_png((120, 140, 160)),
        # Distinct assets per parallel upload (assets are stored by content hash).
        giant_variants=[giant_png((120 + i, 140, 160)) for i in range(parallel)],
        warmup_photos=demo.photo_set(astronaut, 20),
        selfies=selfies(20),
    )
    print(
        f"payloads built in {time.perf_counter() - started:.1f} s: 9000x9000 PNG "
        f"{len(payloads.giant) / 1024:.0f} KB, selfie JPEG {SELFIE_SIZE[0]}x{SELFIE_SIZE[1]} "
        f"{statistics.median(len(s) for s in payloads.selfies) / 2**20:.2f} MB median",
        flush=True,
    )
    return payloads


# --- Accounts (in-process Django, the same database) -----------------------------------------------


@dataclass
class Accounts:
    api_key: str
    designer_email: str
    end_user_seq: int = 0

    def next_ref(self, tag: str) -> str:
        self.end_user_seq += 1
        return f"probe-{tag}-{self.end_user_seq}-{uuid.uuid4().hex[:6]}"


def setup_accounts(env: dict[str, str]) -> Accounts:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=600,
    )
    os.environ.update({k: env[k] for k in ("VAR_DIR", "MEDIA_ROOT", "SECRET_KEY", "DEBUG")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")
    import django

    django.setup()
    from workstation.accounts.models import User
    from workstation.accounts.services import api_client_create

    issued = api_client_create(name=f"upload-probe-{time.time_ns()}")
    email = f"probe-designer-{uuid.uuid4().hex[:8]}@example.test"
    User.objects.create_user(email, PASSWORD, role="designer", display_name="Probe designer")
    return Accounts(api_key=issued.key, designer_email=email)


# --- Server --------------------------------------------------------------------------------------


class Server:
    """gunicorn as the Procfile's web line, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "workstation.wsgi",
                "--bind",
                f"{HOST}:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "60",
                "--access-logfile",
                "-",
                "--logger-class",
                "workstation.log_redaction.RedactingAccessLogger",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_up(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early (rc {self.process.returncode})")
            with contextlib.suppress(OSError):
                health = call(self.port, "GET", "/api/v1/health", timeout=5)
                if health.status == 200 and len(self.workers()) == 2:
                    return
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /api/v1/health in time")

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return sorted(int(p) for p in path.read_text().split())
        except OSError:
            return []

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        self.log.close()


def mem_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class MemorySampler:
    """Polls VmRSS of the given pids every `interval` s; keeps each pid's peak."""

    def __init__(self, pids: list[int], interval: float = 0.05):
        self.pids = pids
        self.before = {pid: mem_kb(pid).get("VmRSS", 0) for pid in pids}
        self.peak = dict(self.before)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                rss = mem_kb(pid).get("VmRSS", 0)
                self.peak[pid] = max(self.peak.get(pid, 0), rss)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.after = {pid: mem_kb(pid) for pid in self.pids}

    def per_worker_mb(self) -> dict[int, dict[str, float]]:
        out = {}
        for pid in self.pids:
            start = self.before[pid]
            after = self.after.get(pid, {})
            out[pid] = {
                "start_mb": start / 1024,
                "peak_growth_mb": (self.peak[pid] - start) / 1024,
                "rss_growth_after_mb": (after.get("VmRSS", start) - start) / 1024,
                "hwm_growth_mb": (after.get("VmHWM", start) - start) / 1024,
            }
        return out


class HealthLoop:
    """Plain GET /api/v1/health in a loop (bounded count, per-request timeout)."""

    def __init__(self, port: int, *, max_requests: int = 5000, pause: float = 0.05):
        self.port = port
        self.max_requests = max_requests
        self.pause = pause
        self.latencies_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self.max_requests):
            if self._stop.is_set():
                return
            started = time.perf_counter()
            try:
                ok = call(self.port, "GET", "/api/v1/health", timeout=30).status == 200
            except OSError:
                ok = False
            if ok:
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                self.errors += 1
            self._stop.wait(self.pause)

    def __enter__(self) -> HealthLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)

    def summary(self) -> dict[str, float | int | None]:
        values = sorted(self.latencies_ms)
        if not values:
            return {"count": 0, "errors": self.errors, "median_ms": None, "p95_ms": None}
        return {
            "count": len(values),
            "errors": self.errors,
            "median_ms": statistics.median(values),
            "p95_ms": values[min(len(values) - 1, round(0.95 * (len(values) - 1)))],
        }


# --- Uploads -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    wall_s: float
    detail: str = ""


class Client:
    def __init__(self, port: int, accounts: Accounts, timeout: float):
        self.port = port
        self.accounts = accounts
        self.timeout = timeout
        self.session: dict[str, str] = {}
        self.created_refs: list[str] = []

    def consumer_headers(self, ref: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.accounts.api_key}", "X-End-User": ref}

    def new_end_user(self, tag: str) -> tuple[str, str]:
        """An end user with consent and avatar credits, made through the API."""
        ref = self.accounts.next_ref(tag)
        headers = self.consumer_headers(ref)
        current = call(self.port, "GET", "/api/v1/consent/current", headers=headers).json()
        body = json.dumps(
            {
                "agreement_hash": current["hash"],
                "items": [item["key"] for item in current["items"]],
                "age_confirmation": "adult",
            }
        ).encode()
        json_headers = {**headers, "Content-Type": "application/json"}
        reply = call(self.port, "POST", "/api/v1/consents", body=body, headers=json_headers)
        if reply.status != 201:
            raise RuntimeError(f"consent: {reply.status} {reply.body[:300]!r}")
        consent = str(reply.json()["id"])
        grant = json.dumps({"credit_type": "avatar", "amount": 2}).encode()
        reply = call(
            self.port,
            "POST",
            "/api/v1/credits/grants",
            body=grant,
            headers={**json_headers, "Idempotency-Key": f"probe-{ref}"},
        )
        if reply.status not in (200, 201):
            raise RuntimeError(f"grant: {reply.status} {reply.body[:300]!r}")
        self.created_refs.append(ref)
        return ref, consent

    def erase(self, ref: str) -> None:
        with contextlib.suppress(OSError):
            call(self.port, "POST", "/api/v1/me/erase", headers=self.consumer_headers(ref))

    def prepared_avatar(self, tag: str, front: bytes, photos: list[bytes]) -> Callable[[], Outcome]:
        """Creates the end user now; the returned callable does only the timed upload."""
        ref, consent = self.new_end_user(tag)
        kind = "image/png" if photos[0].startswith(b"\x89PNG") else "image/jpeg"
        ext = "png" if kind == "image/png" else "jpg"
        body, ctype = multipart(
            {"consent": consent, "name": "probe"},
            [("front_photo", "front.jpg", front, "image/jpeg")]
            + [("photos", f"{i}.{ext}", data, kind) for i, data in enumerate(photos)],
        )
        headers = {**self.consumer_headers(ref), "Content-Type": ctype}
        return lambda: self._timed("/api/v1/avatars", body, headers)

    def sign_in(self) -> None:
        reply = call(self.port, "GET", "/api/v1/auth/csrf")
        token = reply.cookies["csrftoken"]
        body = json.dumps({"email": self.accounts.designer_email, "password": PASSWORD}).encode()
        reply = call(
            self.port,
            "POST",
            "/api/v1/auth/login",
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-CSRFToken": token,
                "Cookie": f"csrftoken={token}",
            },
        )
        if reply.status != 200:
            raise RuntimeError(f"login: {reply.status} {reply.body[:300]!r}")
        self.session = {"csrftoken": token, **reply.cookies}

    def prepared_asset(self, data: bytes) -> Callable[[], Outcome]:
        if not self.session:
            self.sign_in()
        body, ctype = multipart({"kind": "reference"}, [("file", "asset.png", data, "image/png")])
        headers = {
            "Content-Type": ctype,
            "X-CSRFToken": self.session["csrftoken"],
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.session.items()),
        }
        return lambda: self._timed("/api/studio/assets", body, headers)

    def _timed(self, path: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        try:
            reply = call(self.port, "POST", path, body=body, headers=headers, timeout=self.timeout)
        except OSError as exc:
            return Outcome(0, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        wall = time.perf_counter() - started
        detail = ""
        if reply.status >= 400:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                error = reply.json()["error"]
                detail = str(error.get("message", ""))[:160]
        return Outcome(reply.status, wall, detail)


def run_parallel(jobs: list[Callable[[], Outcome]]) -> list[Outcome]:
    results: list[Outcome | None] = [None] * len(jobs)

    def work(i: int) -> None:
        results[i] = jobs[i]()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r if r is not None else Outcome(0, 0.0, "no result") for r in results]


# --- Measurements --------------------------------------------------------------------------------


@dataclass
class Measurement:
    case: str
    mode: str  # "single" or "parallel-N"
    statuses: list[int]
    wall_s: list[float]
    details: list[str]
    workers: dict[str, dict[str, float]]
    growth_mb: float  # single: the worker that grew most; parallel: the sum over workers
    hwm_growth_mb: float
    health: dict[str, Any]
    warm_workers: int


CASES = {
    "a": "avatar: front photo + 20 x 9000x9000 solid-colour PNG",
    "b": "designer asset: 9000x9000 solid-colour PNG",
    "c": "avatar (legitimate): front photo + 20 x 4000x3000 JPEG selfies",
}


@contextlib.contextmanager
def fresh_server(
    env: dict[str, str], log_path: Path, accounts: Accounts, payloads: Payloads, timeout: float
) -> Iterator[tuple[Server, Client, int]]:
    server = Server(env, log_path)
    client = Client(server.port, accounts, timeout)
    try:
        server.wait_up()
        warm = warm_up(server, client, payloads)
        yield server, client, warm
    finally:
        with contextlib.suppress(Exception):
            for ref in client.created_refs:
                client.erase(ref)
        server.stop()


def warm_up(server: Server, client: Client, payloads: Payloads, rounds: int = 4) -> int:
    """Loads what an upload loads (face models, decoders) in both workers before measuring:
    avatar uploads of the real front photo + 20 small photos without a face (answered 400
    after the front photo's face analysis, or 202 where screening left the web process) and
    small assets, until both workers grew (at most `rounds` rounds)."""
    from PIL import Image

    small = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 20, 30)).save(small, format="PNG")
    faceless = [small.getvalue()] * 20
    pids = server.workers()
    warmed: set[int] = set()
    for _ in range(rounds):
        before = {pid: mem_kb(pid).get("VmRSS", 0) for pid in pids}
        jobs = [client.prepared_avatar("warm", payloads.front, faceless) for _ in range(2)]
        jobs += [client.prepared_asset(small.getvalue()) for _ in range(2)]
        for outcome in run_parallel(jobs):
            if outcome.status not in (200, 201, 202, 400):
                raise RuntimeError(f"warm-up upload answered {outcome.status}: {outcome.detail}")
        # A worker that ran the face analysis for the first time grew by the model load.
        warmed |= {pid for pid in pids if mem_kb(pid).get("VmRSS", 0) - before[pid] > 10 * 1024}
        if len(warmed) == len(pids):
            break
    return len(warmed)


def measure(
    case: str,
    parallel: int,
    env: dict[str, str],
    log_path: Path,
    accounts: Accounts,
    payloads: Payloads,
    timeout: float,
) -> Measurement:
    with fresh_server(env, log_path, accounts, payloads, timeout) as (server, client, warm):
        jobs: list[Callable[[], Outcome]] = []
        for i in range(parallel):
            if case == "a":
                jobs.append(client.prepared_avatar("a", payloads.front, [payloads.giant] * 20))
            elif case == "b":
                variant = payloads.giant_variants[i % len(payloads.giant_variants)]
                jobs.append(client.prepared_asset(variant if parallel > 1 else payloads.giant))
            else:
                jobs.append(client.prepared_avatar("c", payloads.front, payloads.selfies))
        time.sleep(1.0)  # let the warm-up's freed memory settle
        pids = server.workers()
        health = HealthLoop(server.port)
        with MemorySampler(pids) as sampler, health:
            time.sleep(0.5)  # a few health requests before the uploads start
            outcomes = run_parallel(jobs)
        per_worker = sampler.per_worker_mb()
    growths = [w["peak_growth_mb"] for w in per_worker.values()]
    hwms = [w["hwm_growth_mb"] for w in per_worker.values()]
    return Measurement(
        case=case,
        mode="single" if parallel == 1 else f"parallel-{parallel}",
        statuses=[o.status for o in outcomes],
        wall_s=[o.wall_s for o in outcomes],
        details=sorted({o.detail for o in outcomes if o.detail}),
        workers={str(pid): values for pid, values in per_worker.items()},
        growth_mb=max(growths) if parallel == 1 else sum(max(g, 0.0) for g in growths),
        hwm_growth_mb=max(hwms) if parallel == 1 else sum(max(h, 0.0) for h in hwms),
        health=health.summary(),
        warm_workers=warm,
    )


def idle_health(
    env: dict[str, str], log_path: Path, accounts: Accounts, payloads: Payloads, timeout: float
) -> dict[str, Any]:
    with fresh_server(env, log_path, accounts, payloads, timeout) as (server, _client, _warm):
        with HealthLoop(server.port, max_requests=100) as health:
            time.sleep(5.0)
        return health.summary()


# --- Report --------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def table(idle: dict[str, Any], rows: list[Measurement]) -> str:
    lines = [
        "| case | mode | status | wall s | web worker RSS growth MB (HWM) | "
        "health GET median / p95 ms | target met |",
        "|---|---|---|---|---|---|---|",
        f"| idle server | - | - | - | - | {fmt(idle['median_ms'], '.1f')} / "
        f"{fmt(idle['p95_ms'], '.1f')} | - |",
    ]
    for row in rows:
        statuses = ",".join(str(s) for s in sorted(set(row.statuses)))
        wall = (
            f"{row.wall_s[0]:.2f}"
            if len(row.wall_s) == 1
            else f"{min(row.wall_s):.2f}-{max(row.wall_s):.2f}"
        )
        met = max(row.wall_s) <= TARGET_S and (
            row.growth_mb <= TARGET_MB if row.mode == "single" else True
        )
        if row.mode != "single":
            per_request = row.growth_mb / max(len(row.wall_s), 1)
            met = met and per_request <= TARGET_MB
        lines.append(
            f"| ({row.case}) {CASES[row.case]} | {row.mode} | {statuses} | {wall} | "
            f"{row.growth_mb:.0f} ({row.hwm_growth_mb:.0f}) | "
            f"{fmt(row.health['median_ms'], '.1f')} / {fmt(row.health['p95_ms'], '.1f')} | "
            f"{'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--cases", default="abc", help="any of a, b, c (default: abc)")
    parser.add_argument("--repeats", type=int, default=3, help="single-upload runs per case")
    parser.add_argument("--parallel", type=int, default=4, help="parallel uploads (0: skip)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per upload request, s")
    args = parser.parse_args()
    if not 1 <= args.repeats <= 10 or not 0 <= args.parallel <= 8:
        parser.error("--repeats 1..10, --parallel 0..8")

    with tempfile.TemporaryDirectory(prefix="upload-probe-") as tmp:
        var_dir = Path(tmp)
        env = bench_env(var_dir)
        log_path = var_dir / "gunicorn.log"
        accounts = setup_accounts(env)
        payloads = make_payloads(max(args.parallel, 1))
        rows: list[Measurement] = []
        started = time.perf_counter()
        try:
            idle = idle_health(env, log_path, accounts, payloads, args.timeout)
            for case in args.cases:
                for _ in range(args.repeats):
                    row = measure(case, 1, env, log_path, accounts, payloads, args.timeout)
                    rows.append(row)
                    print(
                        f"({case}) single: {row.statuses} {row.wall_s[0]:.2f} s, "
                        f"+{row.growth_mb:.0f} MB",
                        flush=True,
                    )
                if args.parallel:
                    row = measure(
                        case, args.parallel, env, log_path, accounts, payloads, args.timeout
                    )
                    rows.append(row)
                    print(
                        f"({case}) parallel: {row.statuses} "
                        f"{', '.join(f'{w:.1f}' for w in row.wall_s)} s, "
                        f"+{row.growth_mb:.0f} MB, health {row.health}",
                        flush=True,
                    )
        except BaseException:
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        summary = summarise(rows)
        print()
        print(table(idle, rows))
        print()
        print(summary_table(summary))
        print(
            f"\nwhole run: {time.perf_counter() - started:.0f} s; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "targets": {"wall_s": TARGET_S, "growth_mb": TARGET_MB},
                        "cases": CASES,
                        "idle_health": idle,
                        "summary": summary,
                        "measurements": [asdict(row) for row in rows],
                        "load_average": os.getloadavg(),
                    },
                    indent=2,
                )
            )
    return 0


def summarise(rows: list[Measurement]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for case in CASES:
        singles = [r for r in rows if r.case == case and r.mode == "single"]
        if singles:
            out[f"{case}/single"] = {
                "runs": len(singles),
                "statuses": sorted({s for r in singles for s in r.statuses}),
                "wall_s_median": statistics.median(r.wall_s[0] for r in singles),
                "growth_mb_median": statistics.median(r.growth_mb for r in singles),
                "hwm_growth_mb_median": statistics.median(r.hwm_growth_mb for r in singles),
            }
    return out


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| case, single upload | runs | status | wall s (median) | worker growth MB (median) |",
        "|---|---|---|---|---|",
    ]
    for key, row in summary.items():
        case = key.split("/")[0]
        lines.append(
            f"| ({case}) {CASES[case]} | {row['runs']} | "
            f"{','.join(str(s) for s in row['statuses'])} | {row['wall_s_median']:.2f} | "
            f"{row['growth_mb_median']:.0f} (HWM {row['hwm_growth_mb_median']:.0f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
