"""Owner scoping, checked from the outside: a walk over the OpenAPI schema.

One owner's world is built (a consumer end user of client A with consent, an avatar, jobs with
an output and credits; a designer's draft and submitted templates with revisions, previews and
finished cells; an operator's test render; a published template; an invitation). Then every
path of the schema that has a path parameter (an object endpoint) is called with every method,
its parameters filled with the owner's real ids, by every second principal: another end user of
the same client, another client's end user with the same reference, the owner's client without
X-End-User, another designer, a reviewer (who never saw the draft), another operator and an
anonymous caller. Each must get 404/403 (401/403 anonymous) and nothing may change. Every list
(a GET without path parameters) must not contain the owner's objects.

An object endpoint that is not in `CASES` fails `test_every_object_endpoint_is_mapped`, so a new
endpoint cannot be skipped silently; what is shared on purpose is listed in `SHARED` and
`LIST_SHARED`, one reason each.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from PIL import Image
from rest_framework.test import APIClient

from avatars.models import Avatar
from credits import services as credits
from generations.kinds import GENERATION
from generations.services import output_token
from jobs.kinds import TEST_RENDER
from jobs.models import (
    PRIORITY_CONSUMER,
    PRIORITY_DIAGNOSTIC,
    JobStatus,
    Lane,
    RenderJob,
    RenderOutput,
)
from templates_studio import services as studio
from templates_studio.models import (
    CellStatus,
    Preview,
    PreviewCell,
    Review,
    Template,
    TemplateRevision,
    TemplateStatus,
)
from workstation.accounts.models import ApiClient, EndUser, User
from workstation.accounts.services import (
    api_client_create,
    end_user_get_or_create,
    invitation_create,
)
from workstation.ownership import owner_key

from ...factories import avatar_row, consent_record, published_template

pytestmark = pytest.mark.django_db

# --- Principals ---------------------------------------------------------------------------------

# The owners (used only for the positive controls: the ids in the walk are real).
OWNER_CONSUMER = "owner end user"
OWNER_DESIGNER = "owner designer"
OWNER_OPERATOR = "owner operator"

# The second principals every object endpoint is called by.
OTHER_END_USER = "other end user of the same client"
OTHER_CLIENT = "other client's end user (same reference)"
CLIENT_ONLY = "owner's client without X-End-User"
OTHER_DESIGNER = "other designer"
REVIEWER = "reviewer (draft never submitted)"
OTHER_OPERATOR = "other operator"
ANONYMOUS = "anonymous"

SECOND_PRINCIPALS = (
    OTHER_END_USER,
    OTHER_CLIENT,
    CLIENT_ONLY,
    OTHER_DESIGNER,
    REVIEWER,
    OTHER_OPERATOR,
    ANONYMOUS,
)
API_CLIENTS = (OTHER_END_USER, OTHER_CLIENT, CLIENT_ONLY)

OWNER_REF = "owner-ref"
OTHER_REF = "other-ref"
WEBHOOK_URL = "https://hooks.client-a.example/owner-secret-path"
GRANT_NOTE = "owner-private-grant-note"
DRAFT_TITLE = "Owner draft 7f3a"
SUBMITTED_TITLE = "Owner submitted 9c1e"

# --- The map from object endpoints to the owner's objects ---------------------------------------


@dataclass(frozen=True)
class Case:
    """One of the owner's objects at an endpoint: `params(world)` fills the path; `control` is
    the principal whose GET must answer 200 (proving the ids are right), None for cross-kind
    probes nobody can reach."""

    label: str
    params: Callable[[SimpleNamespace], dict[str, Any]]
    control: str | None


def _template(attr: str, param: str = "id") -> Callable[[SimpleNamespace], dict[str, Any]]:
    return lambda w: {param: getattr(w, attr).pk, "number": 1}


def _template_cases(param: str = "id") -> list[Case]:
    return [
        Case("draft", _template("draft", param), OWNER_DESIGNER),
        Case("submitted", _template("submitted", param), OWNER_DESIGNER),
    ]


def _preview_cases(attr: str, param: str) -> list[Case]:
    return [
        Case("draft", lambda w: {param: getattr(w, f"draft_{attr}").pk}, OWNER_DESIGNER),
        Case("submitted", lambda w: {param: getattr(w, f"submitted_{attr}").pk}, OWNER_DESIGNER),
    ]


T = "/api/studio/templates/{id}"
REVISION = f"{T}/revisions/{{number}}"
TEMPLATE_READS = [T, f"{T}/compare", f"{T}/revisions", REVISION, f"{T}/stats"]
TEMPLATE_EVENTS = "/api/studio/templates/{template}/events"
PREVIEW_READS = [
    "/api/studio/previews/{preview_id}",
    "/api/studio/previews/{preview_id}/contact-sheet",
    "/api/studio/cells/{cell_id}/image",
]
GENERATION_PATHS = [
    "/api/v1/generations/{id}",
    "/api/v1/generations/{id}/cancel",
    "/api/v1/generations/{id}/events",
    "/api/v1/generations/{id}/refine",
]
REVIEW_PATHS = [
    "/api/studio/reviews/{id}",
    "/api/studio/reviews/{review_id}/approve",
    "/api/studio/reviews/{review_id}/request-changes",
]
CATALOG_PATHS = ["/api/v1/catalog/templates/{id}", "/api/v1/catalog/templates/{id}/cover"]
TEST_RENDER_PATHS = ["/api/v1/ops/test-render/{id}", "/api/v1/ops/test-render/{id}/outputs/{index}"]

CASES: dict[str, list[Case]] = {
    # Consumer objects of the owner end user.
    **{
        path: [
            Case("avatar", lambda w: {"id": w.avatar.pk}, OWNER_CONSUMER),
            Case("test avatar via the consumer API", lambda w: {"id": w.test_avatar.pk}, None),
        ]
        for path in ("/api/v1/avatars/{id}", "/api/v1/avatars/{id}/events")
    },
    "/api/v1/consents/{id}/withdraw": [Case("consent", lambda w: {"id": w.consent.pk}, None)],
    **{
        path: [
            Case("succeeded generation", lambda w: {"id": w.done_job.pk}, OWNER_CONSUMER),
            Case("queued generation", lambda w: {"id": w.queued_job.pk}, OWNER_CONSUMER),
            Case("test render via the consumer API", lambda w: {"id": w.test_render.pk}, None),
        ]
        for path in GENERATION_PATHS
    },
    "/api/v1/files/{token}": [
        Case("output link", lambda w: {"token": w.file_token}, OWNER_CONSUMER)
    ],
    # Operators.
    **{
        path: [
            Case("test render", lambda w: {"id": w.test_render.pk, "index": 0}, OWNER_OPERATOR),
            Case("generation via the ops API", lambda w: {"id": w.done_job.pk, "index": 0}, None),
        ]
        for path in TEST_RENDER_PATHS
    },
    "/api/v1/ops/test-avatars/{id}": [
        Case("panel avatar", lambda w: {"id": w.test_avatar.pk}, OWNER_OPERATOR),
        Case("consumer avatar via the ops API", lambda w: {"id": w.avatar.pk}, None),
    ],
    "/api/v1/auth/invitations/{token}": [
        Case("invitation", lambda w: {"token": w.invitation_token}, ANONYMOUS)
    ],
    # The studio: the designer's draft (never submitted) and submitted templates.
    **{
        path: _template_cases()
        for path in [
            *TEMPLATE_READS,
            f"{T}/retire",
            f"{T}/unpublish",
            f"{REVISION}/previews",
            f"{REVISION}/submit",
        ]
    },
    TEMPLATE_EVENTS: _template_cases("template"),
    "/api/studio/previews/{preview_id}": _preview_cases("preview", "preview_id"),
    "/api/studio/previews/{preview_id}/contact-sheet": _preview_cases("preview", "preview_id"),
    "/api/studio/cells/{cell_id}/image": _preview_cases("cell", "cell_id"),
    "/api/studio/assets/{sha256}/image": [
        Case("draft's control asset", lambda w: {"sha256": w.asset.sha256}, OWNER_DESIGNER)
    ],
    **{
        path: [Case("open review", lambda w: {"id": w.review.pk, "review_id": w.review.pk}, None)]
        for path in REVIEW_PATHS
    },
    # The catalog: the published template is public to API clients; nothing else is in it.
    **{
        path: [
            Case("published", lambda w: {"id": w.published.pk}, OWNER_CONSUMER),
            Case("draft", lambda w: {"id": w.draft.pk}, None),
            Case("submitted", lambda w: {"id": w.submitted.pk}, None),
        ]
        for path in CATALOG_PATHS
    },
}

# --- The allow-list: (method, path, case, principal) -> why it is not a leak --------------------

SHARED: dict[tuple[str, str, str, str], str] = {}


def _share(
    methods: Iterable[str], paths: Iterable[str], case: str, who: Iterable[str], reason: str
) -> None:
    for method in methods:
        for path in paths:
            for principal in who:
                SHARED[(method, path, case, principal)] = reason


_share(
    ["get"],
    ["/api/v1/files/{token}"],
    "output link",
    SECOND_PRINCIPALS,
    "a signed, expiring link: the token is the capability and is handed only to the owner",
)
_share(
    ["get", "post"],
    ["/api/v1/auth/invitations/{token}"],
    "invitation",
    SECOND_PRINCIPALS,
    "the invitation token is the capability: whoever holds it may look it up and accept it",
)
_share(
    ["get"],
    CATALOG_PATHS,
    "published",
    API_CLIENTS,
    "published templates are the catalog every API client reads (no prompts, no assets)",
)
for _case in ("draft", "submitted"):
    _share(
        ["get"],
        [*TEMPLATE_READS, TEMPLATE_EVENTS, *PREVIEW_READS],
        _case,
        [OTHER_OPERATOR],
        "operators see every template (docs/API.md: studio scoping)",
    )
_share(
    ["get"],
    [*TEMPLATE_READS, TEMPLATE_EVENTS, *PREVIEW_READS],
    "submitted",
    [REVIEWER],
    "reviewers see every submitted template, its grids and cells",
)
_share(
    ["post"],
    [f"{T}/retire", f"{T}/unpublish"],
    "submitted",
    [REVIEWER],
    "reviewers may unpublish or retire any template they can see",
)
_share(["get"], ["/api/studio/reviews/{id}"], "open review", [REVIEWER], "the reviewers' queue")
_share(
    ["post"],
    REVIEW_PATHS[1:],
    "open review",
    [REVIEWER],
    "reviewers decide any open review (the service refuses their own templates)",
)
_share(
    ["get", "delete"],
    ["/api/v1/ops/test-avatars/{id}"],
    "panel avatar",
    [OTHER_OPERATOR],
    "the test-avatar panel is shared by all operators",
)
_share(
    ["get"],
    ["/api/studio/assets/{sha256}/image"],
    "draft's control asset",
    [REVIEWER, OTHER_OPERATOR],
    "reviewers and operators see every control asset (docs/API.md; content-addressed)",
)

# --- Lists: which of the owner's objects a second principal may see in which list --------------

# Groups of the owner's private strings (ids, titles, notes), filled in by the world fixture.
CONSUMER, CLIENT_A, DRAFT, SUBMITTED, OPERATOR_RENDER = (
    "consumer",
    "client A",
    "draft",
    "submitted",
    "test render",
)

LIST_SHARED: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("/api/studio/templates", OTHER_OPERATOR): (
        frozenset({DRAFT, SUBMITTED}),
        "operators see every template",
    ),
    ("/api/studio/events", OTHER_OPERATOR): (
        frozenset({DRAFT, SUBMITTED}),
        "operators see every template's events",
    ),
    ("/api/studio/templates", REVIEWER): (
        frozenset({SUBMITTED}),
        "reviewers see submitted templates",
    ),
    ("/api/studio/events", REVIEWER): (
        frozenset({SUBMITTED}),
        "reviewers see submitted templates' events",
    ),
    ("/api/studio/reviews", REVIEWER): (frozenset({SUBMITTED}), "the reviewers' queue"),
    ("/api/v1/webhook", OTHER_END_USER): (
        frozenset({CLIENT_A}),
        "the webhook is the API client's, not an end user's",
    ),
    ("/api/v1/webhook", CLIENT_ONLY): (frozenset({CLIENT_A}), "the client's own webhook"),
}

# --- Helpers ------------------------------------------------------------------------------------

SNAPSHOT_APPS = ("accounts", "avatars", "credits", "jobs", "generations", "templates_studio")


def _schema_paths() -> dict[str, list[str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path: sorted(m for m in operations if m in ("get", "post", "put", "patch", "delete"))
        for path, operations in schema["paths"].items()
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _fill(path: str, params: dict[str, Any]) -> str:
    for name in _path_params(path):
        assert name in params, f"{path}: the case gives no value for {{{name}}}"
        path = path.replace(f"{{{name}}}", str(params[name]))
    return path


QUERY = {f"{T}/compare": "?a=1&b=1"}


def _snapshot() -> dict[str, Any]:
    """Every row of every project table, and every stored file (name, size)."""
    rows: dict[str, Any] = {}
    for label in SNAPSHOT_APPS:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            rows[model._meta.label] = list(model._base_manager.order_by("pk").values_list())
    media = Path(settings.MEDIA_ROOT)
    rows["storage"] = sorted(
        (str(p.relative_to(media)), p.stat().st_size) for p in media.rglob("*") if p.is_file()
    )
    return rows


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [label for label in before if before[label] != after[label]]


def _call(client: APIClient, method: str, url: str):
    cache.clear()  # throttle counters: the walk makes many calls per principal
    if method in ("post", "put", "patch"):
        return getattr(client, method)(url, {}, format="json")
    return getattr(client, method)(url)


def _body(response) -> str:
    data = b"".join(response.streaming_content) if response.streaming else response.content
    if response.get("Content-Type", "").startswith("application/zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = b"".join(archive.read(name) for name in archive.namelist())
    return data.decode("utf-8", errors="replace")


def _drain(response) -> None:
    """Reads a file response to its end, which closes it the test client's way (closing it
    directly would send request_finished and close the test's database connection). An
    event stream is left unread: it would run until its time is up."""
    if response.streaming and response.get("Content-Type") != "text/event-stream":
        b"".join(response.streaming_content)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _stored_png(name: str) -> str:
    return default_storage.save(name, ContentFile(_png()))


# --- The owner's world --------------------------------------------------------------------------


def _preview(revision: TemplateRevision, user: User, avatar: Avatar) -> tuple[Preview, PreviewCell]:
    cell = PreviewCell.objects.create(
        revision=revision,
        avatar=avatar,
        seed=1,
        engine_version="walk",
        status=CellStatus.SUCCEEDED,
        output_name=_stored_png(f"previews/{revision.pk}/cell.png"),
        likeness=0.8,
    )
    preview = Preview.objects.create(
        revision=revision,
        requested_by=user,
        avatar_ids=[str(avatar.id)],
        seeds=[1],
        full_panel=True,
        new_cells=1,
    )
    preview.cells.add(cell)
    return preview, cell


def _job(*, kind: str, status: str, **fields: Any) -> RenderJob:
    """A job row made directly (no dispatch token, nothing rendered): the walk needs ids."""
    done = status == JobStatus.SUCCEEDED
    return RenderJob.objects.create(
        kind=kind,
        status=status,
        lane=Lane.RENDER,
        spec={"prompt": "a portrait", "seed": 1, "steps": 2},
        started_at=timezone.now() if done else None,
        finished_at=timezone.now() if done else None,
        **fields,
    )


def _output(job: RenderJob) -> RenderOutput:
    return RenderOutput.objects.create(
        job=job,
        index=0,
        storage_name=_stored_png(f"outputs/{job.pk}/0.png"),
        width=64,
        height=64,
        seed=1,
        sha256="0" * 64,
        likeness=0.9,
    )


def _consumer(key: str, ref: str | None = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    if ref is not None:
        headers["HTTP_X_END_USER"] = ref
    client.credentials(**headers)
    return client


def _studio(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def world(make_user) -> SimpleNamespace:
    w = SimpleNamespace()
    # Consumers: the owner and two others; each end user exists and has credits up front, so
    # a call by a second principal has nothing of its own to create.
    client_a, client_b = api_client_create(name="client-a"), api_client_create(name="client-b")
    ApiClient.objects.filter(pk=client_a.client.pk).update(
        webhook_url=WEBHOOK_URL, webhook_secret="s" * 64
    )
    owner = end_user_get_or_create(client=client_a.client, external_ref=OWNER_REF)
    for end_user, note in (
        (owner, GRANT_NOTE),
        (end_user_get_or_create(client=client_a.client, external_ref=OTHER_REF), ""),
        (end_user_get_or_create(client=client_b.client, external_ref=OWNER_REF), ""),
    ):
        for credit_type in ("avatar", "generation"):
            credits.grant(
                end_user=end_user,
                credit_type=credit_type,
                amount=5,
                idempotency_key=f"setup-{credit_type}",
                note=note,
            )
    w.consent = consent_record(end_user=owner)
    w.avatar = avatar_row(name="Owner avatar", end_user=owner, consent=w.consent)
    w.test_avatar = avatar_row(name="Panel Ana")

    # The studio: a draft never submitted, a submitted template, a published one.
    designer, operator = make_user("designer"), make_user("operator")
    w.asset, _ = studio.asset_upload(user=designer, data=_png(), kind="lighting")
    spec = {
        "prompt": "{subject}, business portrait",
        "seeds": [1],
        "steps": 2,
        "controls": [{"kind": "lighting", "asset": w.asset.sha256, "conditioning_scale": 0.5}],
    }
    w.draft = studio.template_create(
        user=designer, title=DRAFT_TITLE, category="business", tags=[], spec=spec
    )
    w.draft_preview, w.draft_cell = _preview(w.draft.revisions.get(), designer, w.test_avatar)
    w.submitted = studio.template_create(
        user=designer, title=SUBMITTED_TITLE, category="business", tags=[], spec=spec
    )
    revision = w.submitted.revisions.get()
    w.submitted_preview, w.submitted_cell = _preview(revision, designer, w.test_avatar)
    w.review = Review.objects.create(
        template=w.submitted, revision=revision, preview=w.submitted_preview, submitted_by=designer
    )
    Template.objects.filter(pk=w.submitted.pk).update(status=TemplateStatus.IN_REVIEW)
    w.published = published_template(owner=designer)
    _, cover = _preview(w.published.live_revision, designer, w.test_avatar)
    Template.objects.filter(pk=w.published.pk).update(cover=cover)

    # Jobs: the owner's generations (one done with an output, one queued) and a test render.
    consumer_job = {
        "kind": GENERATION,
        "end_user": owner,
        "owner_key": owner_key(end_user_id=owner.pk),
        "priority": PRIORITY_CONSUMER,
        "template": w.published,
        "avatar": w.avatar,
    }
    w.done_job = _job(status=JobStatus.SUCCEEDED, **consumer_job)
    w.file_token = output_token(_output(w.done_job))
    w.queued_job = _job(status=JobStatus.QUEUED, **consumer_job)
    w.test_render = _job(
        kind=TEST_RENDER,
        status=JobStatus.SUCCEEDED,
        created_by=operator,
        owner_key=owner_key(user_id=operator.pk),
        priority=PRIORITY_DIAGNOSTIC,
    )
    _output(w.test_render)
    w.invitation_token = invitation_create(
        email="invitee@example.test", role="designer", created_by=operator
    ).token

    w.clients = {
        OWNER_CONSUMER: _consumer(client_a.key, OWNER_REF),
        OWNER_DESIGNER: _studio(designer),
        OWNER_OPERATOR: _studio(operator),
        OTHER_END_USER: _consumer(client_a.key, OTHER_REF),
        OTHER_CLIENT: _consumer(client_b.key, OWNER_REF),
        CLIENT_ONLY: _consumer(client_a.key),
        OTHER_DESIGNER: _studio(make_user("designer")),
        REVIEWER: _studio(make_user("reviewer")),
        OTHER_OPERATOR: _studio(make_user("operator")),
        ANONYMOUS: APIClient(),
    }
    w.private = {
        CONSUMER: {
            str(w.avatar.pk),
            str(w.consent.pk),
            str(w.done_job.pk),
            str(w.queued_job.pk),
            GRANT_NOTE,
        },
        CLIENT_A: {WEBHOOK_URL},
        DRAFT: {
            str(w.draft.pk),
            DRAFT_TITLE,
            w.draft.slug,
            str(w.draft_preview.pk),
            w.asset.sha256,
        },
        SUBMITTED: {str(w.submitted.pk), SUBMITTED_TITLE, str(w.submitted_preview.pk)},
        OPERATOR_RENDER: {str(w.test_render.pk)},
    }
    return w


# --- Tests --------------------------------------------------------------------------------------


def test_every_object_endpoint_is_mapped_and_every_allowance_is_live():
    paths = _schema_paths()
    object_paths = {path for path in paths if "{" in path}
    unmapped = sorted(object_paths - set(CASES))
    assert not unmapped, (
        "Object endpoints with no owner's object to walk them with; add them to CASES in "
        f"{__name__} (and to SHARED only if they are shared on purpose): {unmapped}"
    )
    assert not sorted(set(CASES) - object_paths), "CASES names paths the schema no longer has"
    cases = {(path, case.label) for path, path_cases in CASES.items() for case in path_cases}
    stale = [
        key
        for key in SHARED
        if (key[1], key[2]) not in cases
        or key[0] not in paths[key[1]]
        or key[3] not in SECOND_PRINCIPALS
    ]
    assert not stale, f"SHARED entries that match no endpoint, case or principal: {stale}"
    assert all(path in paths and "get" in paths[path] for path, _ in LIST_SHARED)


def test_second_principals_reach_none_of_the_owners_objects(world):
    paths = _schema_paths()
    problems: list[str] = []
    walked: set[tuple[str, str]] = set()
    calls = skipped = 0

    for path, path_cases in CASES.items():
        for case in path_cases:
            url = _fill(path, case.params(world)) + QUERY.get(path, "")
            # Positive control: the owner reaches the object, so a 404 below means scoping.
            if case.control is not None and "get" in paths[path]:
                response = _call(world.clients[case.control], "get", url)
                if response.status_code != 200:
                    problems.append(f"control GET {url} as {case.control}: {response.status_code}")
                _drain(response)
            # The owner's reads may count (downloads, audit): compare from here on.
            before = _snapshot()
            for method in paths[path]:
                walked.add((method, path))
                for principal in SECOND_PRINCIPALS:
                    if (method, path, case.label, principal) in SHARED:
                        skipped += 1
                        continue
                    response = _call(world.clients[principal], method, url)
                    calls += 1
                    where = f"{method.upper()} {path} [{case.label}] as {principal}"
                    body = _body(response)
                    allowed = {
                        ANONYMOUS: (401, 403),
                        # The owner's own key without X-End-User: a 400 naming the header.
                        CLIENT_ONLY: (400, 403, 404),
                    }.get(principal, (403, 404))
                    if response.status_code not in allowed:
                        problems.append(f"{where}: {response.status_code} {body[:200]}")
                    after = _snapshot()
                    if changed := _changed(before, after):
                        problems.append(f"{where}: changed {changed}")
                        before = after
                    leaked = [
                        token
                        for group in world.private.values()
                        for token in group
                        if token in body and token not in url
                    ]
                    if leaked:
                        problems.append(f"{where}: body names {leaked}")

    assert not problems, "\n".join(problems)
    object_endpoints = sum(len(methods) for path, methods in paths.items() if "{" in path)
    assert len(walked) == object_endpoints
    print(f"\nwalked {len(walked)} object endpoints: {calls} calls, {skipped} shared (skipped)")


def test_lists_hold_none_of_the_owners_objects(world):
    lists = [
        path for path, methods in _schema_paths().items() if "{" not in path and "get" in methods
    ]
    problems: list[str] = []
    for path in lists:
        for principal in SECOND_PRINCIPALS:
            shared, _reason = LIST_SHARED.get((path, principal), (frozenset(), ""))
            body = _body(_call(world.clients[principal], "get", path))
            leaked = [
                (group, token)
                for group, tokens in world.private.items()
                if group not in shared
                for token in tokens
                if token in body
            ]
            if leaked:
                problems.append(f"GET {path} as {principal}: {leaked}")
    assert not problems, "\n".join(problems)

    # The owner's own lists do hold them (the tokens are real).
    owner = world.clients[OWNER_CONSUMER]
    assert str(world.avatar.pk) in _body(owner.get("/api/v1/avatars"))
    assert str(world.done_job.pk) in _body(owner.get("/api/v1/generations"))
    assert GRANT_NOTE in _body(owner.get("/api/v1/credits"))
    assert str(world.consent.pk) in _body(owner.get("/api/v1/me/export"))
    assert WEBHOOK_URL in _body(owner.get("/api/v1/webhook"))
    assert DRAFT_TITLE in _body(world.clients[OWNER_DESIGNER].get("/api/studio/templates"))
    assert world.asset.sha256 in _body(world.clients[OWNER_DESIGNER].get("/api/studio/assets"))
    ops = world.clients[OWNER_OPERATOR].get("/api/v1/ops/test-render")
    assert str(world.test_render.pk) in _body(ops)


def test_second_end_users_cannot_use_the_owners_objects_by_reference(world):
    """Ids in request bodies are scoped too: another end user's avatar or consent is a 400."""
    for principal in (OTHER_END_USER, OTHER_CLIENT):
        client = world.clients[principal]
        before = _snapshot()
        generation = client.post(
            "/api/v1/generations",
            {"template": str(world.published.pk), "avatar": str(world.avatar.pk)},
            format="json",
        )
        assert generation.status_code == 400, generation.content
        assert "avatar" in generation.json()["error"]["fields"]
        upload = client.post(
            "/api/v1/avatars",
            {
                "consent": str(world.consent.pk),
                "front_photo": SimpleUploadedFile("front.jpg", _png()),
                "photos": [SimpleUploadedFile("p0.jpg", _png())],
            },
            format="multipart",
        )
        assert upload.status_code == 400, upload.content
        assert "consent" in upload.json()["error"]["fields"]
        assert not _changed(before, _snapshot())
    assert EndUser.objects.count() == 3
    assert json.loads(world.clients[OWNER_CONSUMER].get("/api/v1/avatars").content)["count"] == 1
