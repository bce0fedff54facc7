"""The studio flow on real services: previews rendered by a worker process, review, catalog."""

import pytest
from rest_framework.test import APIClient

from ..factories import ready_test_avatar
from ..unit.templates_studio.test_workflow import create_template, make_assets, spec
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _preview_done(client, template_id, number):
    response = client.post(
        f"/api/studio/templates/{template_id}/revisions/{number}/previews", {}, format="json"
    )
    assert response.status_code == 202, response.content
    preview_id = response.json()["id"]

    def complete():
        grid = client.get(f"/api/studio/previews/{preview_id}").json()
        failed = [c for row in grid["rows"] for c in row if c["status"] == "failed"]
        assert not failed, failed
        return grid if grid["complete"] else None

    return wait_for(complete, timeout=180, interval=0.5, what="preview grid")


def test_author_preview_review_publish(
    celery_worker, signed_in, make_user, consumer_key, tiny_models
):
    ready_test_avatar(name="Ana")
    ready_test_avatar(name="Bo", gender="male")
    designer, reviewer = make_user("designer"), make_user("reviewer")
    client, desk = signed_in(designer), signed_in(reviewer)

    pose, light = make_assets(client)  # pose from keypoints, a lighting map
    template_id = create_template(
        client,
        controls=[
            {"kind": "pose", "asset": pose},
            {"kind": "lighting", "asset": light, "conditioning_scale": 0.5},
        ],
    )
    grid = _preview_done(client, template_id, 1)
    assert grid["progress"] == {"done": 4, "total": 4}
    assert all(
        cell["likeness"] is None or 0 <= cell["likeness"] <= 1
        for row in grid["rows"]
        for cell in row
    )

    revision_2 = client.post(
        f"/api/studio/templates/{template_id}/revisions",
        {"spec": spec(guidance=6.5, controls=[{"kind": "pose", "asset": pose}])},
        format="json",
    )
    assert revision_2.status_code == 201
    _preview_done(client, template_id, 2)
    compare = client.get(f"/api/studio/templates/{template_id}/compare?a=1&b=2").json()
    assert {c["field"] for c in compare["diff"]} >= {"guidance"}
    assert compare["grids"]["a"]["complete"] and compare["grids"]["b"]["complete"]

    review = client.post(
        f"/api/studio/templates/{template_id}/revisions/2/submit", {"note": "v2"}, format="json"
    ).json()
    outsider = signed_in(make_user("designer"))
    assert outsider.get(f"/api/studio/templates/{template_id}").status_code == 404

    desk.post(
        f"/api/studio/reviews/{review['id']}/request-changes",
        {"comment": "Less contrast"},
        format="json",
    )
    client.post(
        f"/api/studio/templates/{template_id}/revisions",
        {"spec": spec(guidance=5.5, controls=[{"kind": "pose", "asset": pose}])},
        format="json",
    )
    _preview_done(client, template_id, 3)
    again = client.post(
        f"/api/studio/templates/{template_id}/revisions/3/submit", {"note": "v3"}, format="json"
    )
    assert again.status_code == 201, again.content
    approved = desk.post(f"/api/studio/reviews/{again.json()['id']}/approve", {}, format="json")
    assert approved.json()["status"] == "published"
    assert approved.json()["live_revision_number"] == 3

    consumer = APIClient()
    consumer.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key('shop')}")
    catalog = consumer.get("/api/v1/catalog/templates").json()
    assert [t["id"] for t in catalog["results"]] == [template_id]
    assert "prompt" not in str(catalog) and "studio light" not in str(catalog)
    assert consumer.get(catalog["results"][0]["cover_url"]).status_code == 200
