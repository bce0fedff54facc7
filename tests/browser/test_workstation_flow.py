"""The whole workstation in Debian's chromium, against a live server and a real worker:
author (with the pose editor), preview, compare, submit, review, revise, approve, catalog.
A screenshot of each main page is saved under test-artifacts/."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from ..conftest import PASSWORD
from ..factories import ready_test_avatar
from .conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"flow-{name}.png"), full_page=True)


def sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/studio/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("role").wait_for()


def nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/studio/login**")


def preview_and_wait(page) -> None:
    page.get_by_role("button", name="Preview", exact=True).click()
    grid = page.get_by_test_id("preview-grid")
    # A cell's <img> exists only once its job succeeded; it is lazy-loaded, so an off-screen
    # one may not be "visible" yet: wait for it to be in the page.
    for seed in (1, 2):
        grid.get_by_role("img", name=f"Ana, seed {seed}").wait_for(
            state="attached", timeout=120_000
        )
    # Each cell names its tier: Ana has both tiers, so her best is the LoRA with the adapter.
    badges = grid.locator(".tier-badge")
    assert badges.all_inner_texts() == ["LoRA + adapter", "LoRA + adapter"]


def test_designer_reviewer_round_trip(
    page, live_server, celery_worker, make_user, consumer_key, tiny_models
):
    ready_test_avatar(name="Ana")
    designer = make_user("designer", email="dana@example.test")
    reviewer = make_user("reviewer", email="rui@example.test")
    base = live_server.url

    # The designer builds a template with a pose from the pose editor.
    sign_in(page, base, designer.email)
    shot(page, "home")
    nav(page, "My templates")
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Title", exact=True).fill("Business headshot")
    page.get_by_label("Category", exact=True).select_option("business")
    page.get_by_label("Prompt", exact=True).fill("{subject}, business portrait, studio light")
    page.get_by_label("Seeds", exact=True).fill("1, 2")
    page.get_by_label("Steps", exact=True).fill("2")
    page.get_by_role("button", name="Pose editor").click()
    nose = page.get_by_role("button", name="Nose", exact=True)
    nose.focus()
    nose.press("ArrowLeft")
    page.get_by_role("button", name="Save pose").click()
    page.get_by_label("Control 1 kind").wait_for()
    shot(page, "editor")
    page.get_by_role("button", name="Create template").click()
    page.wait_for_url("**/studio/templates/*-*")
    template_url = page.url
    preview_and_wait(page)
    shot(page, "preview-grid")

    # A second revision, previewed, then compared with the first.
    page.get_by_label("Guidance", exact=True).fill("6.5")
    page.get_by_role("button", name="Save revision").click()
    page.get_by_label("Revision", exact=True).locator("option", has_text="2").wait_for(
        state="attached"
    )
    preview_and_wait(page)
    page.get_by_label("Select revision 1 to compare").check()
    page.get_by_label("Select revision 2 to compare").check()
    page.get_by_role("button", name="Compare").click()
    diff = page.get_by_test_id("diff-table")
    diff.wait_for()
    assert "guidance" in diff.inner_text()
    shot(page, "compare")
    page.goto(template_url)
    page.get_by_label("Review note").fill("Ready for review")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_text("In review").first.wait_for()
    sign_out(page)

    # The reviewer asks for changes.
    sign_in(page, base, reviewer.email)
    nav(page, "Review queue")
    page.get_by_role("link", name="Business headshot").first.click()
    page.get_by_test_id("review-state").wait_for()
    shot(page, "review")
    page.get_by_label("Comment").fill("Warmer light, please")
    page.get_by_role("button", name="Request changes").click()
    page.get_by_text("Changes requested").first.wait_for()
    sign_out(page)

    # The designer sees the comment, revises, previews and resubmits.
    sign_in(page, base, designer.email)
    page.goto(template_url)
    feedback = page.get_by_test_id("review-feedback")
    feedback.wait_for()
    assert "Warmer light" in feedback.inner_text()
    page.get_by_label("Guidance", exact=True).fill("5.5")
    page.get_by_role("button", name="Save revision").click()
    page.get_by_label("Revision", exact=True).locator("option", has_text="3").wait_for(
        state="attached"
    )
    preview_and_wait(page)
    page.get_by_label("Review note").fill("Warmer now")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_text("In review").first.wait_for()
    sign_out(page)

    # The reviewer approves: the template is published.
    sign_in(page, base, reviewer.email)
    nav(page, "Review queue")
    page.get_by_role("link", name="Business headshot").first.click()
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("Published").first.wait_for()
    nav(page, "Catalog order")
    page.get_by_test_id("catalog-list").get_by_text("Business headshot").wait_for()
    shot(page, "catalog")
    sign_out(page)

    consumer = APIClient()
    consumer.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key('shop')}")
    catalog = consumer.get("/api/v1/catalog/templates").json()
    assert [t["title"] for t in catalog["results"]] == ["Business headshot"]
    assert "studio light" not in str(catalog)


def test_operator_pages(page, live_server, make_user, tiny_models):
    ready_test_avatar(name="Ana")
    operator = make_user("operator", email="olga@example.test")
    sign_in(page, live_server.url, operator.email)
    nav(page, "Test avatars")
    page.get_by_text("Ana").first.wait_for()
    row = page.get_by_role("row").filter(has_text="Ana")
    assert row.locator("[data-tier]").inner_text() == "Studio (LoRA)"
    page.get_by_role("button", name="Add test avatar").wait_for()
    shot(page, "test-avatars")
    nav(page, "Backend dashboard")
    page.get_by_test_id("throughput").wait_for()
    shot(page, "dashboard")
    nav(page, "Invitations")
    page.get_by_text("manage.py invite").first.wait_for()
    shot(page, "invitations")
