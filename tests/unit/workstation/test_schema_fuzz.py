"""The whole OpenAPI schema, fuzzed in-process with schemathesis: no request answers 5xx.

Every operation of every tag is called by every kind of caller the API has (anonymous, each
studio role with a session and a CSRF token, a consumer API client acting for an end user, and
the same client without X-End-User), with a bounded, derandomized set of hypothesis examples:
schema-valid cases, schema-violating cases, valid cases whose body names real seeded objects
(and carries real images in upload fields) and, for object endpoints, valid cases whose path
points at a real seeded object (so the authenticated surface past the 400s and 404s is
exercised). No operation is skipped: the event streams run too, with SSE_MAX_SECONDS = 0 (one
snapshot, then the stream ends). Each example runs in a savepoint that is rolled back, so examples do not build on each other
and a failure replays the same way when hypothesis shrinks it.

A failure names the request (as a curl command) and the server's traceback.

`test_options_answers_on_every_route` walks Django's URL resolver (the SPA and admin included,
not only the schema) and sends OPTIONS to every route as every caller.
"""

from __future__ import annotations

import itertools
import logging
import re
import string
import traceback
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.admindocs.views import simplify_regex
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.test.client import ClientHandler
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from ...factories import avatar_row, consent_record, published_template
from ...streams import stream_text

pytestmark = pytest.mark.django_db

# Cases per operation, each sent by every caller (72 operations x 6 callers): keep the whole
# module well under three minutes on two cores (`time pytest tests/unit/workstation/test_schema_fuzz.py`).
MAX_EXAMPLES = 10

SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


def _operations() -> tuple[list[Any], list[str]]:
    operations, errors = [], []
    for result in SCHEMA.get_all_operations():
        try:
            operations.append(result.ok())
        except Exception as exc:  # an operation schemathesis cannot load is reported, not skipped
            errors.append(repr(exc))
    return operations, errors


OPERATIONS, LOAD_ERRORS = _operations()

# --- Callers ------------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
DESIGNER = "designer"
REVIEWER = "reviewer"
OPERATOR = "operator"
CONSUMER = "consumer"  # an API client key plus X-End-User
CLIENT_ONLY = "client-only"  # the same key without X-End-User (webhook, catalog, consent text)
# Anonymous first: it keeps the Authorization headers schemathesis invents (the key lookup is
# fuzzed too); the studio callers drop them, the API clients replace them.
CALLERS = (ANONYMOUS, DESIGNER, REVIEWER, OPERATOR, CONSUMER, CLIENT_ONLY)
STUDIO_CALLERS = (DESIGNER, REVIEWER, OPERATOR)
END_USER_REF = "fuzz-user"


def _browser(user=None) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, cookies) of a browser: a CSRF pair (GET /api/v1/auth/csrf sets the cookie) and,
    for a signed-in user, a fresh session (logout and password changes end one)."""
    csrf = get_random_string(32, string.ascii_letters + string.digits)
    cookies = {django_settings.CSRF_COOKIE_NAME: csrf}
    if user is not None:
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        cookies[name] = client.cookies[name].value
    return {django_settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-"): csrf}, cookies


def _credentials(world: SimpleNamespace, caller: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, cookies) for one request by `caller`."""
    if caller in (CONSUMER, CLIENT_ONLY):
        headers = {"Authorization": f"Bearer {world.key}"}
        if caller == CONSUMER:
            headers["X-End-User"] = END_USER_REF
        return headers, {}
    return _browser(None if caller == ANONYMOUS else world.users[caller])


# --- The seeded world ---------------------------------------------------------------------------


@pytest.fixture
def world(make_user, settings) -> SimpleNamespace:
    """A few real objects of each kind, owned by the callers above."""
    from credits import services as credits
    from generations.kinds import GENERATION
    from generations.services import output_token
    from jobs.kinds import TEST_RENDER
    from jobs.models import PRIORITY_CONSUMER, PRIORITY_DIAGNOSTIC, JobStatus, Lane, RenderJob
    from templates_studio import services as studio
    from templates_studio.models import Review, Template, TemplateStatus
    from workstation.accounts.services import (
        api_client_create,
        end_user_get_or_create,
        invitation_create,
    )
    from workstation.ownership import owner_key

    from .test_owner_scoping_walk import _output, _png, _preview

    settings.SSE_MAX_SECONDS = 0  # an event stream sends one snapshot and ends
    # Hashing is what sign-in and password changes cost, not what is tested here: with the
    # production hasher every fuzzed login (Django hashes even for unknown emails) takes ~1 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    w = SimpleNamespace()
    w.users = {role: make_user(role) for role in (DESIGNER, REVIEWER, OPERATOR)}
    issued = api_client_create(name="fuzz")
    w.key = issued.key
    end_user = end_user_get_or_create(client=issued.client, external_ref=END_USER_REF)
    for credit_type in ("avatar", "generation"):
        credits.grant(
            end_user=end_user, credit_type=credit_type, amount=5, idempotency_key=credit_type
        )
    w.consent = consent_record(end_user=end_user)
    w.avatar = avatar_row(name="Fuzz avatar", end_user=end_user, consent=w.consent)
    w.test_avatar = avatar_row(name="Panel")

    designer = w.users[DESIGNER]
    w.asset, _ = studio.asset_upload(user=designer, data=_png(), kind="lighting")
    spec = {"prompt": "{subject}, business portrait", "seeds": [1], "steps": 2}
    w.draft = studio.template_create(
        user=designer, title="Fuzz draft", category="business", tags=[], spec=spec
    )
    w.preview, w.cell = _preview(w.draft.revisions.get(), designer, w.test_avatar)
    w.submitted = studio.template_create(
        user=designer, title="Fuzz submitted", category="business", tags=[], spec=spec
    )
    revision = w.submitted.revisions.get()
    submitted_preview, _ = _preview(revision, designer, w.test_avatar)
    w.review = Review.objects.create(
        template=w.submitted, revision=revision, preview=submitted_preview, submitted_by=designer
    )
    Template.objects.filter(pk=w.submitted.pk).update(status=TemplateStatus.IN_REVIEW)
    w.published = published_template(owner=designer)

    def job(**fields: Any) -> RenderJob:
        return RenderJob.objects.create(
            lane=Lane.RENDER, spec={"prompt": "a portrait", "seed": 1, "steps": 2}, **fields
        )

    consumer_job = {
        "kind": GENERATION,
        "end_user": end_user,
        "owner_key": owner_key(end_user_id=end_user.pk),
        "priority": PRIORITY_CONSUMER,
        "template": w.published,
        "avatar": w.avatar,
    }
    now = timezone.now()
    w.done_job = job(status=JobStatus.SUCCEEDED, started_at=now, finished_at=now, **consumer_job)
    w.file_token = output_token(_output(w.done_job))
    w.queued_job = job(status=JobStatus.QUEUED, **consumer_job)
    operator = w.users[OPERATOR]
    w.test_render = job(
        kind=TEST_RENDER,
        status=JobStatus.SUCCEEDED,
        created_by=operator,
        owner_key=owner_key(user_id=operator.pk),
        priority=PRIORITY_DIAGNOSTIC,
        started_at=now,
        finished_at=now,
    )
    _output(w.test_render)
    w.invitation_token = invitation_create(
        email="invitee@example.test", role="designer", created_by=operator
    ).token
    return w


def _templates(w: SimpleNamespace) -> list[Any]:
    return [w.draft.pk, w.submitted.pk, w.published.pk]


# Real values for every path parameter of every object endpoint (a new endpoint without an
# entry fails `test_every_object_endpoint_has_real_ids`).
REAL_IDS: dict[str, Callable[[SimpleNamespace], dict[str, list[Any]]]] = {
    "/api/studio/assets/{sha256}/image": lambda w: {"sha256": [w.asset.sha256]},
    "/api/studio/cells/{cell_id}/image": lambda w: {"cell_id": [w.cell.pk]},
    "/api/studio/previews/{preview_id}": lambda w: {"preview_id": [w.preview.pk]},
    "/api/studio/previews/{preview_id}/contact-sheet": lambda w: {"preview_id": [w.preview.pk]},
    "/api/studio/reviews/{id}": lambda w: {"id": [w.review.pk]},
    "/api/studio/reviews/{review_id}/approve": lambda w: {"review_id": [w.review.pk]},
    "/api/studio/reviews/{review_id}/request-changes": lambda w: {"review_id": [w.review.pk]},
    **{
        f"/api/studio/templates/{{id}}{suffix}": lambda w: {"id": _templates(w)}
        for suffix in ("", "/compare", "/retire", "/revisions", "/stats", "/unpublish")
    },
    **{
        f"/api/studio/templates/{{id}}/revisions/{{number}}{suffix}": (
            lambda w: {"id": _templates(w), "number": [1]}
        )
        for suffix in ("", "/previews", "/submit")
    },
    "/api/studio/templates/{template}/events": lambda w: {"template": _templates(w)},
    "/api/v1/auth/invitations/{token}": lambda w: {"token": [w.invitation_token]},
    "/api/v1/avatars/{id}": lambda w: {"id": [w.avatar.pk, w.test_avatar.pk]},
    "/api/v1/avatars/{id}/events": lambda w: {"id": [w.avatar.pk, w.test_avatar.pk]},
    "/api/v1/catalog/templates/{id}": lambda w: {"id": [w.published.pk, w.draft.pk]},
    "/api/v1/catalog/templates/{id}/cover": lambda w: {"id": [w.published.pk]},
    "/api/v1/consents/{id}/withdraw": lambda w: {"id": [w.consent.pk]},
    "/api/v1/files/{token}": lambda w: {"token": [w.file_token]},
    **{
        f"/api/v1/generations/{{id}}{suffix}": lambda w: {"id": [w.done_job.pk, w.queued_job.pk]}
        for suffix in ("", "/cancel", "/events", "/refine")
    },
    "/api/v1/ops/test-avatars/{id}": lambda w: {"id": [w.test_avatar.pk]},
    "/api/v1/ops/test-render/{id}": lambda w: {"id": [w.test_render.pk]},
    "/api/v1/ops/test-render/{id}/outputs/{index}": lambda w: {
        "id": [w.test_render.pk],
        "index": [0],
    },
}


# --- Calling the app in-process -----------------------------------------------------------------


class DjangoApp:
    """Django as a WSGI app for schemathesis, the test client's way: the request is handled in
    the test's thread and transaction, and finishing a response does not close the test's
    database connection (Django's own WSGIHandler would). CSRF checks stay on."""

    def __init__(self) -> None:
        self.handler = ClientHandler(enforce_csrf_checks=True)

    def __call__(self, environ, start_response):
        response = self.handler(environ)
        headers = list(response.items())
        headers += [
            ("Set-Cookie", cookie.output(header="")) for cookie in response.cookies.values()
        ]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        if response.streaming and response.is_async:
            # An event stream's body is async (workstation/api/sse.py): read it here, where its
            # reads see the test's transaction.
            return [stream_text(response).encode()]
        if response.streaming:
            # Closed (request_finished, without closing connections) once read to its end.
            return response.streaming_content
        return [response.content]


class _Tracebacks(logging.Handler):
    """Server-side errors logged while a request runs (Django's and the API's 500 paths)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.seen.append(text)


def _send(app: DjangoApp, case, world: SimpleNamespace, caller: str, catcher: _Tracebacks):
    cache.clear()  # throttle counters: hundreds of calls per caller would turn into 429s
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        with transaction.atomic():
            headers, cookies = _credentials(world, caller)
            if caller in STUDIO_CALLERS and case.headers:
                # The schema's bearer scheme makes schemathesis invent Authorization headers;
                # a studio caller's request must reach the view with its session.
                case.headers.pop("Authorization", None)
            response = case.call(app=app, headers=headers, cookies=cookies)
            transaction.set_rollback(True)
    finally:
        root.removeHandler(catcher)
    return response, headers


def _call(app: DjangoApp, case, world: SimpleNamespace, caller: str) -> None:
    catcher = _Tracebacks()
    response, headers = _send(app, case, world, caller, catcher)
    try:
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
    except Exception as failure:
        failure.add_note(f"caller: {caller}")
        for text in catcher.seen:
            failure.add_note(f"server log:\n{text}")
        raise


def _real_fields(w: SimpleNamespace) -> dict[str, list[Any]]:
    """Real values for the request-body fields that name objects, and a real image for the
    upload fields (random bytes never get past the image check)."""
    from .test_owner_scoping_walk import _png

    return {
        "front_photo": [_png()],
        "photos": [[_png()] * 20],  # the fewest an avatar takes
        "file": [_png()],
        "template": [str(w.published.pk), str(w.draft.pk)],
        "avatar": [str(w.avatar.pk), str(w.test_avatar.pk)],
        "consent": [str(w.consent.pk)],
        "avatars": [[str(w.test_avatar.pk)], [str(w.avatar.pk)]],
        "templates": [[str(t) for t in _templates(w)]],
    }


def _with_real_fields(strategy, world: SimpleNamespace):
    real = _real_fields(world)
    picks = st.fixed_dictionaries({name: st.sampled_from(v) for name, v in real.items()})

    def substitute(drawn):
        case, chosen = drawn
        if isinstance(case.body, dict):
            for name in real.keys() & case.body.keys():
                case.body[name] = chosen[name]
        return case

    return st.tuples(strategy, picks).map(substitute)


def _strategy(operation, world: SimpleNamespace):
    """Schema-valid and schema-violating cases; valid cases whose body fields name real objects
    (avatar, template, consent); on object endpoints valid cases aimed at each combination of
    real ids."""
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if operation.body:
        strategies.append(_with_real_fields(operation.as_strategy(GenerationMode.POSITIVE), world))
    real = REAL_IDS.get(operation.path)
    if real is not None:
        values = real(world)
        for combination in itertools.product(*values.values()):
            params = dict(zip(values, combination, strict=True))
            strategy = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=params)
            strategies.append(_with_real_fields(strategy, world) if operation.body else strategy)
    return st.one_of(strategies)


# --- Tests --------------------------------------------------------------------------------------


def test_every_operation_loads_and_every_object_endpoint_has_real_ids():
    assert not LOAD_ERRORS, LOAD_ERRORS
    object_paths = {op.path for op in OPERATIONS if "{" in op.path}
    assert not sorted(object_paths - set(REAL_IDS)), "add real ids to REAL_IDS"
    assert not sorted(set(REAL_IDS) - object_paths), "REAL_IDS names paths the schema lost"


@pytest.mark.parametrize(
    ("label", "caller", "body", "status"),
    [
        ("GET /api/v1/auth/me", DESIGNER, None, 200),
        ("POST /api/v1/auth/logout", REVIEWER, None, 204),  # session and CSRF accepted
        ("POST /api/v1/auth/login", ANONYMOUS, {"email": "a@b.test", "password": "x"}, 400),
        ("GET /api/v1/ops/queue", OPERATOR, None, 200),
        ("GET /api/v1/avatars", CONSUMER, None, 200),
        ("GET /api/v1/webhook", CLIENT_ONLY, None, 200),
    ],
)
def test_the_fuzz_callers_are_who_they_claim(label, caller, body, status, world):
    """The harness's credentials get past authentication and CSRF (else the fuzz would only
    ever see 401 and 403)."""
    method, path = label.split(" ")
    operation = SCHEMA[path][method]
    case = (
        operation.Case()
        if body is None
        else operation.Case(body=body, media_type="application/json")
    )
    response, _ = _send(DjangoApp(), case, world, caller, _Tracebacks())
    assert response.status_code == status, response.text


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_request_is_answered_with_a_server_error(operation, world):
    app = DjangoApp()

    # Each generated case is sent by every caller: drawing a case costs more than a request.
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=_strategy(operation, world))
    def run(case) -> None:
        for caller in CALLERS:
            _call(app, case, world, caller)

    run()


# --- OPTIONS on every route ---------------------------------------------------------------------


def _routes(
    patterns: list[URLPattern | URLResolver] | None = None, prefix: str = ""
) -> Iterator[tuple[str, URLPattern]]:
    """(the route's pattern text from the root, the pattern) for every route."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        text = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, text)
        else:
            yield text, entry


def _filled(route: str, pattern: URLPattern) -> str | None:
    """A path that resolves to this very route, its variables filled with plain values."""
    readable = simplify_regex(re.sub(r"<(?:\w+:)?(\w+)>", r"(?P<\1>[^/]+)", route))
    names = re.findall(r"<(\w+)>", readable)
    for values in itertools.product(
        [str(uuid.UUID(int=1)), "1", "x", "auth", "user"], repeat=len(names)
    ):
        path = readable
        for name, value in zip(names, values, strict=True):
            path = path.replace(f"<{name}>", value, 1)
        try:
            match = resolve(path)
        except Resolver404:
            continue
        if match.func is pattern.callback or getattr(match, "route", None) == route:
            return path
    return None


def test_options_answers_on_every_route(world):
    app = Client(enforce_csrf_checks=True, raise_request_exception=False)
    routes = list(_routes())
    unresolved = [route for route, pattern in routes if _filled(route, pattern) is None]
    assert not unresolved, f"routes the walk cannot build a path for: {unresolved}"
    # Object routes of the schema also with real ids (the view's object lookup runs).
    real = [
        re.sub(r"\{(\w+)\}", lambda m, v=values: str(v[m.group(1)][0]), path)
        for path, ids in REAL_IDS.items()
        for values in [ids(world)]
    ]
    paths = sorted({_filled(route, pattern) for route, pattern in routes} | set(real))
    problems = []
    for caller in CALLERS:
        headers, cookies = _credentials(world, caller)
        app.cookies.clear()
        for name, value in cookies.items():
            app.cookies[name] = value
        for path in paths:
            cache.clear()
            response = app.options(path, headers=headers)
            if response.status_code >= 500:
                problems.append(
                    f"OPTIONS {path} as {caller}: {response.status_code}\n"
                    + "".join(traceback.format_exception(*response.exc_info or (None, None, None)))
                )
    assert not problems, "\n".join(problems)
    assert len(paths) >= len(routes) > 50
