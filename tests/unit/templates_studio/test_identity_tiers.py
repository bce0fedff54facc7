"""Issue #15 (instant avatars) in the studio: the panel's tiers, the identity of each preview
cell, and the panel likeness per identity in the template's stats and the catalog.

Most of these tests never render: the panel avatars are rows with their tiers' fields set
(`tiered_avatar`), and cell outcomes are written directly. The one render test at the end
runs the preview jobs through the real runner on the tiny models."""

from __future__ import annotations

import pytest
from django.utils import timezone

from avatars.models import Avatar, AvatarStatus, LoraStatus
from jobs.models import RenderJob
from templates_studio.models import CellStatus, Preview, PreviewCell, Template, TemplateStatus
from templates_studio.services import panel_avatars
from templates_studio.spec import identity_of_spec

from ...factories import avatar_row

pytestmark = pytest.mark.django_db


def tiered_avatar(name: str, *tiers: str, status: str = AvatarStatus.READY) -> Avatar:
    """A panel avatar row with the given tiers ("instant", "studio") marked ready, no weights."""
    avatar = avatar_row(name=name)
    avatar.status = status
    avatar.lora_status = LoraStatus.NOT_REQUESTED
    if "studio" in tiers:
        avatar.lora_object = f"avatars/{avatar.id}/lora.bin"
        avatar.lora_status, avatar.lora_ready_at = LoraStatus.READY, timezone.now()
    if "instant" in tiers:
        avatar.identity_embedding = b"\x01" * 64
        # The adapter the engine serves (tiny profile): an older one would not count.
        avatar.identity_adapter, avatar.identity_kind = "tiny-identity", "image_encoder"
        avatar.instant_ready_at = timezone.now()
    avatar.save()
    return avatar


def create_template(client, *, seeds=(1, 2)) -> str:
    response = client.post(
        "/api/studio/templates",
        {
            "title": "Business headshot",
            "category": "business",
            "spec": {"prompt": "{subject}, business portrait", "seeds": list(seeds), "steps": 2},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def post_preview(client, template_id: str, number: int = 1, **body):
    return client.post(
        f"/api/studio/templates/{template_id}/revisions/{number}/previews", body, format="json"
    )


def cells_by_avatar(grid: dict) -> dict[str, list[dict]]:
    return {a["name"]: row for a, row in zip(grid["avatars"], grid["rows"], strict=True)}


def finish_cells(preview_id: str, *, likeness: float | None = 0.8) -> None:
    """Marks every cell of a preview succeeded (what the runner's terminal hook would write)."""
    PreviewCell.objects.filter(previews=preview_id).update(
        status=CellStatus.SUCCEEDED, output_name="previews/x.png", likeness=likeness
    )


@pytest.fixture
def mixed_panel():
    """Three panel avatars, one per tier combination; the instant-only one's LoRA is still
    training (the avatar as a whole is `training`), and one avatar has no tier yet."""
    both = tiered_avatar("Both", "instant", "studio")
    studio_only = tiered_avatar("Studio", "studio")
    instant_only = tiered_avatar("Instant", "instant", status=AvatarStatus.TRAINING)
    Avatar.objects.filter(pk=instant_only.pk).update(lora_status=LoraStatus.TRAINING)
    tiered_avatar("Intake", status=AvatarStatus.PREPARING)
    return {
        "both": both,
        "studio": studio_only,
        "instant": Avatar.objects.get(pk=instant_only.pk),
    }


def test_panel_holds_avatars_with_any_tier_ready(signed_in, designer, mixed_panel):
    assert [a.name for a in panel_avatars()] == ["Both", "Studio", "Instant"]

    panel = signed_in(designer).get("/api/studio/test-avatars").json()
    assert [(a["name"], a["tier"], a["lora_status"], a["identities"]) for a in panel] == [
        ("Both", "studio", "ready", ["both", "lora", "instant"]),
        ("Studio", "studio", "ready", ["lora"]),
        ("Instant", "instant", "training", ["instant"]),
    ]


def test_preview_without_identity_uses_each_avatars_best(signed_in, designer, mixed_panel):
    client = signed_in(designer)
    template_id = create_template(client)
    response = post_preview(client, template_id)
    assert response.status_code == 202, response.content
    grid = response.json()
    assert grid["full_panel"] is True and grid["new_cells"] == 6
    rows = cells_by_avatar(grid)
    assert {name: {c["identity"] for c in row} for name, row in rows.items()} == {
        "Both": {"both"},
        "Studio": {"lora"},
        "Instant": {"instant"},
    }
    # Each cell's render job carries the identity the cell says (the LoRA, the adapter or both).
    for row in rows.values():
        for cell in row:
            job = RenderJob.objects.get(preview_cell=cell["id"])
            assert identity_of_spec(job.spec) == cell["identity"], job.spec
    instant_job = RenderJob.objects.get(preview_cell=rows["Instant"][0]["id"])
    assert "avatar" not in instant_job.spec
    assert instant_job.spec["identity"]["id"] == str(mixed_panel["instant"].id)


def test_named_identity_an_avatar_lacks_is_400_naming_it(signed_in, designer, mixed_panel):
    client = signed_in(designer)
    template_id = create_template(client)

    refused = post_preview(client, template_id, identity="lora")
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    [message] = error["fields"]["identity"]
    instant = mixed_panel["instant"]
    assert f"Instant ({instant.id})" in message
    assert "Both" not in message and "Studio" not in message
    assert [(d["avatar"], d["available"]) for d in error["details"]] == [
        (str(instant.id), ["instant"])
    ]
    both_refused = post_preview(client, template_id, identity="both")
    assert both_refused.status_code == 400
    [message] = both_refused.json()["error"]["fields"]["identity"]
    assert "Studio" in message and "Instant" in message and "Both (" not in message
    assert not Preview.objects.exists() and not PreviewCell.objects.exists()
    assert not RenderJob.objects.exists()

    # The avatars that have it render with it; an unknown identity is a plain 400.
    chosen = [str(mixed_panel["both"].id), str(mixed_panel["studio"].id)]
    grid = post_preview(client, template_id, avatars=chosen, identity="lora").json()
    assert grid["full_panel"] is False
    assert {c["identity"] for row in grid["rows"] for c in row} == {"lora"}
    bad = post_preview(client, template_id, identity="adapter")
    assert bad.status_code == 400 and "identity" in bad.json()["error"]["fields"]


def test_cells_of_different_identities_are_separate_and_reused(signed_in, designer):
    tiered_avatar("Both", "instant", "studio")
    client = signed_in(designer)
    template_id = create_template(client)

    def cell_ids(grid):
        return [c["id"] for row in grid["rows"] for c in row]

    instant = post_preview(client, template_id, identity="instant").json()
    lora = post_preview(client, template_id, identity="lora").json()
    assert instant["new_cells"] == 2 and lora["new_cells"] == 2
    assert not set(cell_ids(instant)) & set(cell_ids(lora))

    again = post_preview(client, template_id, identity="instant").json()
    assert again["new_cells"] == 0 and cell_ids(again) == cell_ids(instant)
    best = post_preview(client, template_id).json()  # best available: both
    assert best["new_cells"] == 2
    assert {c["identity"] for row in best["rows"] for c in row} == {"both"}
    assert post_preview(client, template_id, identity="both").json()["new_cells"] == 0
    assert sorted(PreviewCell.objects.values_list("identity", flat=True)) == [
        "both",
        "both",
        "instant",
        "instant",
        "lora",
        "lora",
    ]
    assert RenderJob.objects.count() == 6

    # A cell's identity is shown wherever the grid is: the preview's own endpoint too.
    shown = client.get(f"/api/studio/previews/{instant['id']}").json()
    assert {c["identity"] for row in shown["rows"] for c in row} == {"instant"}


def test_any_identity_counts_for_submitting(signed_in, designer, mixed_panel):
    client = signed_in(designer)
    template_id = create_template(client)
    submit = f"/api/studio/templates/{template_id}/revisions/1/submit"
    instant_only = post_preview(
        client, template_id, avatars=[str(mixed_panel["instant"].id)], identity="instant"
    ).json()
    finish_cells(instant_only["id"])
    assert client.post(submit, {}, format="json").status_code == 409  # not the full panel

    grid = post_preview(client, template_id).json()  # the full panel, mixed identities
    assert grid["new_cells"] == 4  # the instant-only avatar's cells are reused
    assert client.post(submit, {}, format="json").status_code == 409  # cells pending
    finish_cells(grid["id"])
    assert client.post(submit, {}, format="json").status_code == 201


def _cell(revision, avatar, seed, identity, *, likeness, status=CellStatus.SUCCEEDED):
    return PreviewCell.objects.create(
        revision=revision,
        avatar=avatar,
        seed=seed,
        engine_version="v1",
        identity=identity,
        status=status,
        likeness=likeness,
    )


def test_stats_show_the_live_revisions_mean_likeness_per_identity(
    signed_in, designer, api, consumer_key
):
    ana = tiered_avatar("Ana", "instant", "studio")
    bo = tiered_avatar("Bo", "instant", "studio")
    client = signed_in(designer)
    template_id = create_template(client)
    stats_url = f"/api/studio/templates/{template_id}/stats"
    assert client.get(stats_url).json()["panel_likeness"] == {}  # no live revision yet

    client.post(
        f"/api/studio/templates/{template_id}/revisions",
        {"spec": {"prompt": "{subject}, new light", "seeds": [1, 2]}},
        format="json",
    )
    template = Template.objects.get(pk=template_id)
    live, draft = template.revisions.get(number=1), template.revisions.get(number=2)
    Template.objects.filter(pk=template_id).update(
        status=TemplateStatus.PUBLISHED, live_revision=live
    )
    assert client.get(stats_url).json()["panel_likeness"] == {}  # no cells yet

    _cell(live, ana, 1, "instant", likeness=0.6)
    _cell(live, bo, 1, "instant", likeness=0.7)
    _cell(live, ana, 2, "instant", likeness=0.8)
    _cell(live, ana, 1, "lora", likeness=0.9)
    _cell(live, bo, 1, "lora", likeness=None)  # no likeness (no reference embedding)
    _cell(live, bo, 2, "lora", likeness=0.1, status=CellStatus.FAILED)
    _cell(live, ana, 1, "both", likeness=None, status=CellStatus.PENDING)
    _cell(draft, ana, 1, "both", likeness=0.99)  # not the live revision

    stats = client.get(stats_url).json()
    expected = {"instant": {"mean": 0.7, "cells": 3}, "lora": {"mean": 0.9, "cells": 1}}
    assert stats == {
        "generations": 0,
        "refinements": 0,
        "downloads": 0,
        "failures": 0,
        "panel_likeness": expected,
    }

    # The consumer catalog shows the same per template.
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key('shop')}")
    [entry] = api.get("/api/v1/catalog/templates").json()["results"]
    assert entry["id"] == template_id and entry["panel_likeness"] == expected
    detail = api.get(f"/api/v1/catalog/templates/{template_id}").json()
    assert detail["panel_likeness"] == expected

    # Publishing the draft moves the stats to its cells.
    Template.objects.filter(pk=template_id).update(live_revision=draft)
    assert client.get(stats_url).json()["panel_likeness"] == {"both": {"mean": 0.99, "cells": 1}}


def test_contact_sheet_rows_name_the_tier(signed_in, designer, mixed_panel, monkeypatch):
    from engine import contact_sheet

    drawn = {}

    def fake_png(cells, *, row_labels, column_labels, title=""):
        drawn.update(rows=list(row_labels), columns=list(column_labels))
        return b"\x89PNG fake"

    monkeypatch.setattr(contact_sheet, "contact_sheet_png", fake_png)
    client = signed_in(designer)
    grid = post_preview(client, create_template(client, seeds=(1,))).json()
    sheet = client.get(f"/api/studio/previews/{grid['id']}/contact-sheet")
    assert sheet.status_code == 200 and sheet.content == b"\x89PNG fake"
    assert drawn == {
        "rows": ["Both · LoRA + adapter", "Studio · LoRA", "Instant · Instant"],
        "columns": ["seed 1"],
    }


def test_preview_renders_each_tier_through_the_runner(signed_in, designer, tiny_models):
    from jobs.models import JobStatus
    from jobs.runner import render_job_execute

    from ...factories import ready_test_avatar

    ana = ready_test_avatar(name="Ana", tiers=("instant",))
    # Ana's LoRA is still training: her instant tier renders meanwhile.
    Avatar.objects.filter(pk=ana.pk).update(
        status=AvatarStatus.TRAINING, lora_status=LoraStatus.TRAINING
    )
    ready_test_avatar(name="Bo", gender="male", tiers=("studio",))
    ready_test_avatar(name="Cy", tiers=("instant", "studio"))
    client = signed_in(designer)
    template_id = create_template(client, seeds=(1,))
    grid = post_preview(client, template_id).json()
    for job in RenderJob.objects.filter(status=JobStatus.QUEUED).order_by("created_at"):
        render_job_execute(job_id=job.id)

    grid = client.get(f"/api/studio/previews/{grid['id']}").json()
    assert grid["complete"], grid["rows"]
    assert {name: row[0]["identity"] for name, row in cells_by_avatar(grid).items()} == {
        "Ana": "instant",
        "Bo": "lora",
        "Cy": "both",
    }
    image = client.get(cells_by_avatar(grid)["Ana"][0]["image_url"])
    assert image.status_code == 200
