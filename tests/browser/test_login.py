"""A studio user signs in through the real browser app and sees their role."""

import pytest

from ..conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_shows_role_and_sign_out(page, live_server, make_user):
    reviewer = make_user("reviewer", email="rita@example.test")
    page.goto(f"{live_server.url}/studio/")
    page.wait_for_url("**/studio/login**")

    page.get_by_label("Email", exact=True).fill(reviewer.email)
    page.get_by_label("Password", exact=True).fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()
    assert "Wrong email or password" in page.get_by_role("alert").inner_text()

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("role").wait_for()
    assert page.get_by_test_id("role").inner_text() == "reviewer"
    assert "rita@example.test" in page.content()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/studio/login**")
