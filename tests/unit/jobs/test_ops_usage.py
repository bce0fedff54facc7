"""GET /api/v1/ops/usage: per API client and UTC day, for operators billing their partners."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.models import CreditEntry
from generations.selectors import client_usage
from jobs.models import RenderJob
from workstation.accounts.models import ApiClient, EndUser
from workstation.accounts.services import api_client_create

pytestmark = pytest.mark.django_db

DAY1, DAY2 = date(2026, 11, 10), date(2026, 11, 11)
WINDOW = {"since": "2026-11-10", "until": "2026-11-11"}


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def job(end_user, kind, status, finished_at, seconds, *, created_by=None):
    return RenderJob.objects.create(
        kind=kind,
        status=status,
        end_user=end_user,
        created_by=created_by,
        spec={},
        created_at=finished_at - timedelta(seconds=(seconds or 0) + 5),
        started_at=None if seconds is None else finished_at - timedelta(seconds=seconds),
        finished_at=finished_at,
    )


def refund(end_user, credit_type, amount, created_at, job=None):
    return CreditEntry.objects.create(
        end_user=end_user,
        credit_type=credit_type,
        amount=amount,
        reason=CreditEntry.Reason.REFUND,
        job=job,
        created_at=created_at,
    )


@pytest.fixture
def usage_world(make_user):
    api_client_create(name="alpha")
    api_client_create(name="beta")
    alpha, beta = ApiClient.objects.get(name="alpha"), ApiClient.objects.get(name="beta")
    a1 = EndUser.objects.create(client=alpha, external_ref="a1")
    a2 = EndUser.objects.create(client=alpha, external_ref="a2")
    b1 = EndUser.objects.create(client=beta, external_ref="b1")
    # alpha, day 1 (two end users count together)
    job(a1, "training", "succeeded", at(DAY1, 9), 100)
    job(a1, "generation", "succeeded", at(DAY1, 10), 5.5)
    failed = job(a2, "generation", "failed", at(DAY1, 11), 2)
    job(a2, "refinement", "succeeded", at(DAY1, 23, 59, 59), 3)
    refund(a2, "generation", 1, at(DAY1, 11), failed)
    training_failed = job(a1, "training", "failed", at(DAY1, 12), 20)
    refund(a1, "avatar", 1, at(DAY1, 12), training_failed)
    # alpha, day 2
    job(a1, "generation", "succeeded", at(DAY2, 0, 0, 1), 4)
    job(a1, "generation", "canceled", at(DAY2, 1), None)  # never started: no GPU time
    canceled = RenderJob.objects.filter(status="canceled").get()
    refund(a1, "generation", 1, at(DAY2, 1), canceled)
    # beta, day 2 only
    job(b1, "generation", "succeeded", at(DAY2, 8), 10)
    job(b1, "generation", "succeeded", at(DAY2, 9), 10)
    # Not counted: outside the window, still running or queued, studio jobs.
    job(b1, "generation", "succeeded", at(DAY1 - timedelta(days=1), 23, 59, 59), 10)
    job(b1, "generation", "succeeded", at(DAY2 + timedelta(days=1), 0, 0, 0), 10)
    refund(b1, "generation", 1, at(DAY2 + timedelta(days=1), 0))
    RenderJob.objects.create(
        kind="generation", status="running", end_user=b1, spec={}, started_at=at(DAY2, 9)
    )
    job(None, "test_render", "succeeded", at(DAY1, 10), 50, created_by=make_user("operator"))
    return alpha, beta


def figures(*, trained=0, generations=0, refinements=0, gpu=0.0, refunds=0, avatar=0, gen=0):
    return {
        "avatars_trained": trained,
        "generations": generations,
        "refinements": refinements,
        "gpu_seconds": gpu,
        "refunds": {"count": refunds, "credits": {"avatar": avatar, "generation": gen}},
    }


def test_aggregates_per_client_and_utc_day(usage_world, signed_in, operator):
    alpha, beta = usage_world
    response = signed_in(operator).get("/api/v1/ops/usage", WINDOW)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["since"] == "2026-11-10" and body["until"] == "2026-11-11"
    assert body["clients"] == [
        {
            "client_id": alpha.pk,
            "client_name": "alpha",
            "totals": figures(
                trained=1, generations=2, refinements=1, gpu=134.5, refunds=3, avatar=1, gen=2
            ),
            "days": [
                {
                    "date": "2026-11-10",
                    **figures(
                        trained=1,
                        generations=1,
                        refinements=1,
                        gpu=130.5,
                        refunds=2,
                        avatar=1,
                        gen=1,
                    ),
                },
                {"date": "2026-11-11", **figures(generations=1, gpu=4.0, refunds=1, gen=1)},
            ],
        },
        {
            "client_id": beta.pk,
            "client_name": "beta",
            "totals": figures(generations=2, gpu=20.0),
            "days": [{"date": "2026-11-11", **figures(generations=2, gpu=20.0)}],
        },
    ]


def test_one_grouped_query_per_metric_whatever_the_volume(usage_world):
    with CaptureQueriesContext(connection) as few:
        client_usage(since=DAY1, until=DAY2)
    alpha_user = EndUser.objects.filter(client__name="alpha").first()
    for n in range(30):
        job(alpha_user, "generation", "succeeded", at(DAY1, 13, n), 1)
    with CaptureQueriesContext(connection) as many:
        report = client_usage(since=DAY1, until=DAY2)
    assert len(few) == len(many) == 3
    assert report.clients[0].totals.generations == 32


def test_default_window_is_the_last_30_days(signed_in, operator):
    today = timezone.now().date()
    api_client_create(name="alpha")
    alpha_user = EndUser.objects.create(client=ApiClient.objects.get(), external_ref="a1")
    job(alpha_user, "generation", "succeeded", timezone.now(), 1)
    job(alpha_user, "generation", "succeeded", timezone.now() - timedelta(days=30), 1)
    body = signed_in(operator).get("/api/v1/ops/usage").json()
    assert body["until"] == today.isoformat()
    assert body["since"] == (today - timedelta(days=29)).isoformat()
    assert [c["client_name"] for c in body["clients"]] == ["alpha"]
    assert body["clients"][0]["totals"]["generations"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2026-13-01"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-31"}, "until"),
        ({"until": "11/20/2026"}, "until"),
        ({"since": "2026-11-12", "until": "2026-11-11"}, "since"),
        ({"since": "2025-11-09", "until": "2026-11-10"}, "since"),  # 367 days
    ],
)
def test_bad_dates_are_a_400_naming_the_field(signed_in, operator, query, field):
    response = signed_in(operator).get("/api/v1/ops/usage", query)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == [field] and error["fields"][field][0]


def test_a_window_of_366_days_is_allowed(signed_in, operator):
    response = signed_in(operator).get(
        "/api/v1/ops/usage", {"since": "2025-11-10", "until": "2026-11-10"}
    )
    assert response.status_code == 200 and response.json()["clients"] == []


def test_only_operators_may_read_usage(signed_in, designer, reviewer, api, consumer_key):
    assert api.get("/api/v1/ops/usage").status_code == 401
    for user in (designer, reviewer):
        assert signed_in(user).get("/api/v1/ops/usage").status_code == 403
    partner = api
    partner.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key('partner')}", HTTP_X_END_USER="u")
    assert partner.get("/api/v1/ops/usage").status_code == 403
