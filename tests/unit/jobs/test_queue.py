"""The queue of record: fair claims, leases, recovery, position/ETA, and consumer generation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from credits.models import CreditEntry
from credits.services import balance
from generations.kinds import GENERATION
from jobs import dispatch, selectors
from jobs.kinds import TEST_RENDER
from jobs.models import JobStatus, RenderJob
from jobs.runner import dispatch_once
from jobs.services import job_create
from templates_studio.kinds import PREVIEW
from workstation.accounts.models import EndUser

from ...factories import published_template, ready_consumer_avatar
from ...streams import stream_text

pytestmark = pytest.mark.django_db

SPEC = {"prompt": "a portrait", "seed": 1, "steps": 1}


def queue(user, n, kind=TEST_RENDER):
    return [job_create(kind=kind, spec=SPEC, created_by=user) for _ in range(n)]


def test_round_robin_between_owners_fifo_within(make_user):
    a, b, c = make_user("operator"), make_user("operator"), make_user("operator")
    a_jobs = queue(a, 30)
    b_job = queue(b, 1)[0]
    claims = [dispatch.claim_next(lane="render", worker="w") for _ in range(3)]
    assert claims[0].pk == a_jobs[0].pk and claims[1].pk == b_job.pk  # B within two claims
    assert claims[2].pk == a_jobs[1].pk  # A's own jobs stay in order
    c_job = queue(c, 1)[0]
    assert dispatch.claim_next(lane="render", worker="w").pk == c_job.pk  # never served yet


def test_consumer_jobs_before_designer_previews_before_test_renders(make_user):
    operator, designer = make_user("operator"), make_user("designer")
    test_render = queue(operator, 1)[0]
    preview = job_create(kind=PREVIEW, spec=SPEC, created_by=designer)
    end_user = EndUser.objects.create(client=_client(), external_ref="u1")
    generation = job_create(kind=GENERATION, spec=SPEC, end_user=end_user)
    order = [dispatch.claim_next(lane="render", worker="w").pk for _ in range(3)]
    assert order == [generation.pk, preview.pk, test_render.pk]
    assert dispatch.claim_next(lane="render", worker="w") is None  # an empty token is a no-op


def _client(name="partner"):
    from workstation.accounts.services import api_client_create

    return api_client_create(name=name).client


def test_position_follows_the_fair_policy(make_user):
    a, b = make_user("operator"), make_user("operator")
    a_jobs = queue(a, 5)
    b_job = queue(b, 1)[0]
    assert selectors.queue_estimate(a_jobs[0]).position == 0
    assert selectors.queue_estimate(b_job).position == 1  # A's first, then B
    assert selectors.queue_estimate(a_jobs[2]).position == 3  # A0, B, A1 before it
    estimate = selectors.queue_estimate(a_jobs[4])
    assert estimate.position == 5 and estimate.eta_seconds > 0


def test_expired_lease_requeues_then_fails_after_max_attempts(make_user, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    job = queue(make_user("operator"), 1)[0]
    for attempt in (1, 2):
        claimed = dispatch.claim_next(lane="render", worker=f"w{attempt}")
        assert claimed.pk == job.pk and claimed.attempts == attempt
        RenderJob.objects.filter(pk=job.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        counts = dispatch.sweep()
    assert counts["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "worker_lost"


def test_a_worker_that_lost_its_lease_cannot_store_results(make_user, tiny_models):
    job = queue(make_user("operator"), 1)[0]
    claimed = dispatch.claim_next(lane="render", worker="slow")
    RenderJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    dispatch.sweep()  # back to the queue: "slow" is presumed dead
    from jobs.runner import execute_job

    execute_job(claimed)  # "slow" wakes up and finishes anyway
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.outputs.count() == 0
    dispatch_once(lane="render", worker="healthy")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.outputs.count() == 1


def test_sweeper_resends_tokens_only_for_stale_queued_jobs(make_user, settings):
    settings.TOKEN_RESEND_S = 30
    jobs = queue(make_user("operator"), 3)
    assert dispatch.sweep()["tokens"] == 0  # fresh tokens are in flight
    RenderJob.objects.filter(pk__in=[j.pk for j in jobs[:2]]).update(
        token_sent_at=timezone.now() - timedelta(minutes=5)
    )
    assert dispatch.sweep()["tokens"] == 2
    assert dispatch.sweep()["tokens"] == 0


# --- Consumer generation ------------------------------------------------------------------------


@pytest.fixture
def shop(api, consumer_key, designer, tiny_models):
    """A consumer client for end user "u1" with a ready avatar, credits and a template."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key('shop')}", HTTP_X_END_USER="u1")
    grant = client.post(
        "/api/v1/credits/grants",
        {"credit_type": "generation", "amount": 3},
        format="json",
        HTTP_IDEMPOTENCY_KEY="g1",
    )
    assert grant.status_code == 201
    end_user = EndUser.objects.get(external_ref="u1")
    client.avatar = ready_consumer_avatar(end_user=end_user)
    client.template = published_template(owner=designer)
    client.end_user = end_user
    return client


def create(shop, **headers):
    return shop.post(
        "/api/v1/generations",
        {"template": str(shop.template.pk), "avatar": str(shop.avatar.pk)},
        format="json",
        **headers,
    )


def test_generation_runs_ranks_and_links_expire(shop, settings):
    response = create(shop)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["queue"]["position"] == 0
    dispatch_once(lane="render", worker="w")
    body = shop.get(body["urls"]["get"]).json()
    assert body["status"] == "succeeded"
    [output] = body["output"]  # 2 candidates rendered, the best 1 kept
    image = shop.get(output["url"])
    assert image.status_code == 200
    png = b"".join(image.streaming_content)
    from engine.labels import read_labels

    labels = read_labels(png)
    assert labels.implicit_label["ProduceID"] == body["id"]
    assert labels.visible_label

    settings.OUTPUT_URL_TTL_S = -1  # every link is now past its lifetime
    assert shop.get(output["url"]).status_code == 404


def test_idempotent_create_returns_the_same_job(shop):
    first = create(shop, HTTP_IDEMPOTENCY_KEY="order-7")
    second = create(shop, HTTP_IDEMPOTENCY_KEY="order-7")
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert RenderJob.objects.filter(kind=GENERATION).count() == 1


def test_grants_are_idempotent(shop):
    again = shop.post(
        "/api/v1/credits/grants",
        {"credit_type": "generation", "amount": 3},
        format="json",
        HTTP_IDEMPOTENCY_KEY="g1",
    )
    assert again.status_code == 200
    assert shop.get("/api/v1/credits").json()["balances"]["generation"] == 3
    missing = shop.post(
        "/api/v1/credits/grants", {"credit_type": "generation", "amount": 1}, format="json"
    )
    assert missing.status_code == 400


def test_cancel_before_start_refunds(shop, settings):
    settings.AVATAR_GENERATION_ALLOWANCE = 0  # every generation costs a credit
    job = create(shop).json()
    assert balance(end_user=shop.end_user, credit_type="generation") == 2
    canceled = shop.post(job["urls"]["cancel"])
    assert canceled.json()["status"] == "canceled"
    assert balance(end_user=shop.end_user, credit_type="generation") == 3
    assert shop.post(job["urls"]["cancel"]).status_code == 409
    assert dispatch_once(lane="render", worker="w") is None


def test_deadline_passed_before_start_aborts_and_refunds(shop, settings):
    settings.AVATAR_GENERATION_ALLOWANCE = 0
    job = create(shop, HTTP_CANCEL_AFTER="5s").json()
    RenderJob.objects.filter(pk=job["id"]).update(deadline_at=timezone.now() - timedelta(1))
    assert dispatch_once(lane="render", worker="w") is None
    body = shop.get(job["urls"]["get"]).json()
    assert body["status"] == "aborted" and body["error"]["code"] == "deadline"
    assert balance(end_user=shop.end_user, credit_type="generation") == 3
    assert create(shop, HTTP_CANCEL_AFTER="soon").status_code == 400


def test_technical_failure_is_refunded_once(shop, settings, tmp_path):
    settings.AVATAR_GENERATION_ALLOWANCE = 0
    job = create(shop).json()
    # Force a real engine failure: the base model's files disappear.
    from workstation.engine_host import get_engine, get_registry

    get_registry.cache_clear()
    get_engine.cache_clear()
    settings.ENGINE_MODELS_DIR = tmp_path / "gone"
    try:
        dispatch_once(lane="render", worker="w")
    finally:
        get_registry.cache_clear()
        get_engine.cache_clear()
    body = shop.get(job["urls"]["get"]).json()
    assert body["status"] == "failed" and "not charged" in body["error"]["message"]
    assert balance(end_user=shop.end_user, credit_type="generation") == 3
    refunds = CreditEntry.objects.filter(reason="refund", job_id=job["id"])
    assert refunds.count() == 1


def test_balance_never_negative(shop, settings):
    settings.AVATAR_GENERATION_ALLOWANCE = 0
    statuses = [create(shop).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 402, 402]
    assert balance(end_user=shop.end_user, credit_type="generation") == 0


def test_more_like_me_chains_refinements(shop):
    first = create(shop).json()
    assert shop.post(first["urls"]["refine"]).status_code == 409  # not finished yet
    dispatch_once(lane="render", worker="w")
    refined = shop.post(first["urls"]["refine"]).json()
    assert refined["parent"] == first["id"] and refined["refine_level"] == 1
    dispatch_once(lane="render", worker="w")
    again = shop.post(refined["urls"]["refine"]).json()
    assert again["refine_level"] == 2
    stats = shop.template.stats
    stats.refresh_from_db()
    assert stats.generations == 1 and stats.refinements == 2


def test_outputs_and_jobs_are_scoped_to_their_owner(shop, consumer_key):
    from rest_framework.test import APIClient

    job = create(shop).json()
    for key, ref in ((consumer_key("other"), "u1"), (None, "u2")):
        intruder = APIClient()
        intruder.credentials(
            HTTP_AUTHORIZATION=shop._credentials["HTTP_AUTHORIZATION"]
            if key is None
            else f"Bearer {key}",
            HTTP_X_END_USER=ref,
        )
        assert intruder.get(job["urls"]["get"]).status_code == 404
        assert intruder.post(job["urls"]["cancel"]).status_code == 404
        assert intruder.get("/api/v1/generations").json()["count"] == 0
        other = intruder.post(
            "/api/v1/generations",
            {"template": str(shop.template.pk), "avatar": str(shop.avatar.pk)},
            format="json",
        )
        assert other.status_code == 400 and "avatar" in other.json()["error"]["fields"]


def test_server_sent_events_stream_states(shop, settings):
    settings.SSE_MAX_SECONDS = 0  # one snapshot, then the stream ends
    job = create(shop).json()
    # What a browser's EventSource sends.
    response = shop.get(job["urls"]["events"], HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    text = stream_text(response)
    assert "retry: 2000" in text and "event: state" in text and f"id: {job['id']}:1" in text
    assert '"status": "queued"' in text


def test_ops_queue_and_metrics(shop, signed_in, operator):
    create(shop)
    body = signed_in(operator).get("/api/v1/ops/queue").json()
    assert {k: body["lanes"][0][k] for k in ("lane", "class", "queued")} == {
        "lane": "render",
        "class": "consumer",
        "queued": 1,
    }
    metrics = shop.get("/metrics").content.decode()
    assert 'workstation_queue_depth{lane="render",class="consumer"} 1' in metrics
    assert "workstation_live_workers" in metrics
    assert shop.get("/api/v1/ops/queue").status_code == 403


def test_compatible_jobs_of_different_owners_render_in_one_batch(
    make_user, tiny_models, settings, caplog
):
    from ...factories import ready_test_avatar

    settings.RENDER_BATCH_LIMIT = 4
    first, second = ready_test_avatar(name="A"), ready_test_avatar(name="B")
    a, b = make_user("designer"), make_user("designer")
    spec = {"prompt": "{subject}, portrait", "steps": 2, "seed": 5}
    jobs = [
        job_create(
            kind=PREVIEW,
            created_by=owner,
            spec={**spec, "avatar": {"id": str(avatar.pk), "weight": 0.9}},
        )
        for owner, avatar in ((a, first), (b, second))
    ]
    odd = job_create(kind=PREVIEW, created_by=a, spec={**spec, "steps": 3})
    assert jobs[0].batch_group and jobs[0].batch_group == jobs[1].batch_group
    assert odd.batch_group != jobs[0].batch_group

    with caplog.at_level("INFO", logger="jobs.runner"):
        dispatch_once(lane="render", worker="w")
    assert "batch of 2 jobs done" in caplog.text
    for job in jobs:
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED and job.outputs.count() == 1
    odd.refresh_from_db()
    assert odd.status == JobStatus.QUEUED  # not compatible: left for the next claim

    # Each batched output equals the same job rendered alone.
    settings.RENDER_BATCH_LIMIT = 1
    alone = job_create(kind=PREVIEW, created_by=a, spec=jobs[0].spec)
    dispatch_once(lane="render", worker="w")  # the odd job (older)
    dispatch_once(lane="render", worker="w")
    alone.refresh_from_db()
    assert alone.status == JobStatus.SUCCEEDED
    from django.core.files.storage import default_storage
    from PIL import Image, ImageChops

    def pixels(job):
        with default_storage.open(job.outputs.get().storage_name, "rb") as handle:
            return Image.open(handle).convert("RGB")

    difference = ImageChops.difference(pixels(jobs[0]), pixels(alone)).getextrema()
    assert max(high for _, high in difference) <= 1  # rounding of float pixels at most


def test_outputs_flagged_by_content_safety_are_withheld_and_refunded(shop, settings, tmp_path):
    from avatars import safety

    from ..avatars.test_safety import _tiny_safety_checker

    settings.AVATAR_GENERATION_ALLOWANCE = 0
    job = create(shop).json()
    settings.CONTENT_SAFETY_CHECKER = (
        f"diffusers:{_tiny_safety_checker(tmp_path / 'checker', threshold=-10.0)}"
    )
    safety.get_checker.cache_clear()
    try:
        dispatch_once(lane="render", worker="w")
    finally:
        safety.get_checker.cache_clear()
    body = shop.get(job["urls"]["get"]).json()
    assert body["status"] == "failed" and body["error"]["code"] == "unsafe_output"
    assert body["output"] == []
    assert balance(end_user=shop.end_user, credit_type="generation") == 3


def test_requeued_job_canceled_before_it_restarts_is_refunded(shop, settings):
    settings.AVATAR_GENERATION_ALLOWANCE = 0
    job = create(shop).json()
    dispatch.claim_next(lane="render", worker="dead")
    RenderJob.objects.filter(pk=job["id"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.sweep()
    assert shop.post(job["urls"]["cancel"]).json()["status"] == "canceled"
    assert balance(end_user=shop.end_user, credit_type="generation") == 3


def test_idempotency_key_cannot_be_reused_for_another_request(shop):
    first = create(shop, HTTP_IDEMPOTENCY_KEY="k1").json()
    dispatch_once(lane="render", worker="w")
    refine = shop.post(first["urls"]["refine"], HTTP_IDEMPOTENCY_KEY="k1")
    assert refine.status_code == 409


def test_published_template_stays_in_the_catalog_while_a_new_revision_is_reviewed(shop):
    from templates_studio.models import Template, TemplateStatus

    Template.objects.filter(pk=shop.template.pk).update(status=TemplateStatus.IN_REVIEW)
    catalog = shop.get("/api/v1/catalog/templates").json()
    assert [t["id"] for t in catalog["results"]] == [str(shop.template.pk)]
    assert create(shop).status_code == 201


def test_positions_share_one_lane_snapshot_per_tick(make_user, settings, django_assert_num_queries):
    """Readers within a tick reuse the lane's snapshot: one indexed count each, no scan. An
    owner whose first job arrived after the snapshot counts as last in turn."""
    settings.QUEUE_POSITION_TICK_S = 3600
    a, b = make_user("operator"), make_user("operator")
    a_jobs = queue(a, 3)
    assert selectors.queue_estimate(a_jobs[2]).position == 2  # builds the snapshot
    selectors.average_seconds(a_jobs[0].kind)  # cached, as in production
    with django_assert_num_queries(1):  # the owner's own older jobs
        assert selectors.queue_estimate(a_jobs[1]).position == 1

    b_job = queue(b, 1)[0]  # after the snapshot: not in it
    assert selectors.queue_estimate(a_jobs[2]).position == 2  # B not yet counted
    assert selectors.queue_estimate(b_job).position == 1  # after A0: B taken as last in turn

    selectors._local_snapshots.clear()
    from django.core.cache import cache

    cache.clear()  # the next tick
    assert selectors.queue_estimate(a_jobs[2]).position == 3  # A0, B0, A1 before it
    assert selectors.queue_estimate(b_job).position == 1


@pytest.mark.django_db(transaction=True)
def test_a_stale_snapshot_is_served_while_one_rebuild_runs_in_the_background(make_user, settings):
    """Past its tick a snapshot is still served (readers never wait for the grouped read of a
    long queue); one background rebuild replaces it."""
    from dataclasses import replace

    from django.core.cache import cache

    from ...workers import wait_for

    settings.QUEUE_POSITION_TICK_S = 60
    a_jobs = queue(make_user("operator"), 2)
    built = selectors.lane_snapshot("render")
    aged = replace(built, built_at=built.built_at - 61)  # its tick has passed
    selectors._local_snapshots["render"] = aged
    cache.set("queue-snapshot:render", aged)
    newcomer = queue(make_user("operator"), 1)[0]

    assert selectors.lane_snapshot("render") is aged  # served at once, not rebuilt inline
    fresh = wait_for(
        lambda: (s := selectors.lane_snapshot("render")).built_at > built.built_at and s,
        timeout=30,
        what="the background rebuild",
    )
    assert fresh.classes[a_jobs[0].priority].counts[newcomer.owner_key] == 1
    assert cache.get("queue-snapshot:render").built_at == fresh.built_at  # shared


def test_an_owner_new_to_the_snapshot_takes_its_turn_by_when_it_was_last_served(
    make_user, settings
):
    """An owner whose job arrived after the lane's snapshot is placed as the claims will
    serve it: after owners never served and those served before it, before the rest."""
    settings.QUEUE_POSITION_TICK_S = 3600
    a, b, c = make_user("operator"), make_user("operator"), make_user("operator")
    queue(c, 1)
    queue(a, 1)
    assert dispatch.claim_next(lane="render", worker="w").created_by == c  # C served first
    assert dispatch.claim_next(lane="render", worker="w").created_by == a  # then A
    a_job = queue(a, 1)[0]
    b_job = queue(b, 1)[0]
    assert selectors.queue_estimate(b_job).position == 0  # builds the snapshot: B, then A
    c_job = queue(c, 1)[0]  # not in the snapshot

    assert selectors.queue_estimate(c_job).position == 1  # after B, before A
    claimed = [dispatch.claim_next(lane="render", worker="w").pk for _ in range(3)]
    assert claimed == [b_job.pk, c_job.pk, a_job.pk]
