"""Instant avatars (a benchmark, not a test): seconds from the end of an upload to the instant
tier and to the first finished portrait.

    .venv/bin/python bench/instant_avatar.py --photos 20 --runs 5 --json /tmp/instant.json

Each run is one consumer avatar of ``--photos`` photos plus a front photo (the same person,
tests/photos.py), uploaded through the real service (`avatars.services.avatar_create`: checks,
encryption, storage, the intake job queued), then the worker's own loop
(`jobs.runner.dispatch_once` on the render lane) runs the intake job: photo screening (shared
with the engine's post-processing processes), the identity embedding, storage. The clock
starts when the upload returns (the API's 202) and stops when the avatar's instant tier is
stored (`instant_ready_at`), then when a generation with ``identity: "instant"`` from a
published template (4 steps, 2 candidates, keep 1, the tiny model's 64 px) has succeeded.

The queue is empty and the worker idle, so the figures are the work itself, with no wait:
under load, add the queue's wait (docs/benchmarks.md, queue figures). The engine is warmed
(compile/load, one avatar) before the measured runs. Runs on the embedded defaults (SQLite in
a scratch VAR_DIR, local files) unless DATABASE_URL etc. are set.

Targets (issue #15), CPU tiny profile, 20 photos: instant tier <= 3 s; first portrait <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_INSTANT_S = 3.0
TARGET_PORTRAIT_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="instant-bench-"))
    os.environ.setdefault("VAR_DIR", str(var_dir))
    os.environ.setdefault("ENGINE_MODELS_DIR", str(ROOT / "var" / "models"))
    os.environ.setdefault("ENGINE_TORCH_THREADS", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")
    os.environ["ENTITLEMENTS_ENFORCED"] = "0"  # credits are not what is measured
    os.environ["AVATAR_MAX_IN_FLIGHT"] = str(args.runs + 2)
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not (Path(os.environ["ENGINE_MODELS_DIR"]) / "identity-tiny").exists():
        from engine.tiny import build_tiny

        build_tiny(Path(os.environ["ENGINE_MODELS_DIR"]))

    from avatars.models import Avatar
    from avatars.services import avatar_create
    from generations.services import generation_create
    from jobs.models import RenderJob
    from jobs.runner import dispatch_once
    from tests import photos as P
    from tests.factories import consent_record, published_template
    from workstation.accounts.models import ApiClient, User
    from workstation.accounts.principals import ConsumerPrincipal
    from workstation.engine_host import get_engine, warm_up

    warm_up()
    for ready in get_engine().postprocess.start():
        ready.result(timeout=120)
    designer = User.objects.create_user(
        f"bench-{time.time_ns()}@example.test", "x" * 16, role="designer"
    )
    template = published_template(owner=designer, candidates=2, keep=1)
    client = ApiClient.objects.create(
        name=f"bench-{time.time_ns()}", key_prefix=str(time.time_ns())[-12:], key_hash="x"
    )
    front = P.front_photo()
    photos = P.same_person_photos(args.photos)

    def one_run(index: int) -> dict[str, float]:
        principal = ConsumerPrincipal(client=client, end_user_ref=f"bench-user-{index}")
        consent = consent_record(end_user=principal.end_user)
        avatar = avatar_create(
            principal=principal,
            consent_id=consent.id,
            front=SimpleUploadedFile("front.jpg", front),
            photos=[SimpleUploadedFile(f"{i}.jpg", data) for i, data in enumerate(photos)],
            train_lora=False,
        )
        uploaded = time.time()
        dispatch_once(lane="render", worker="bench")
        avatar = Avatar.objects.get(pk=avatar.pk)
        if avatar.instant_ready_at is None:
            raise SystemExit(f"no instant tier: {avatar.status} {avatar.failure_reason}")
        instant_s = avatar.instant_ready_at.timestamp() - uploaded
        job, _ = generation_create(
            end_user=principal.end_user,
            template_id=template.pk,
            avatar_id=avatar.pk,
            likeness=None,
            identity="instant",
        )
        dispatch_once(lane="render", worker="bench")
        # The worker hands a render's finishing to its pipeline thread: wait for the job's end.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = RenderJob.objects.get(pk=job.pk)
            if job.status in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.01)  # polling the job's state, not timing anything
        if job.status != "succeeded" or job.finished_at is None:
            raise SystemExit(f"generation {job.status}: {job.error_message}")
        return {
            "instant_s": round(instant_s, 3),
            "first_portrait_s": round(job.finished_at.timestamp() - uploaded, 3),
            "photos_kept": avatar.photo_count,
        }

    one_run(-1)  # warm: the identity encoder, the pool's face models, the adapter's graph
    runs = [one_run(i) for i in range(args.runs)]
    for run in runs:
        print(json.dumps(run), flush=True)
    summary = {
        "photos": args.photos,
        "runs": runs,
        "instant_s_median": statistics.median(r["instant_s"] for r in runs),
        "instant_s_max": max(r["instant_s"] for r in runs),
        "first_portrait_s_median": statistics.median(r["first_portrait_s"] for r in runs),
        "first_portrait_s_max": max(r["first_portrait_s"] for r in runs),
        "targets": {"instant_s": TARGET_INSTANT_S, "first_portrait_s": TARGET_PORTRAIT_S},
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    get_engine().postprocess.shutdown(wait=False)


if __name__ == "__main__":
    main()
