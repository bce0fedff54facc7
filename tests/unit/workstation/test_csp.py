"""The studio's pages carry a Content-Security-Policy; API responses need none."""

import pytest

pytestmark = pytest.mark.django_db


def test_studio_pages_carry_a_strict_csp(client):
    policy = client.get("/studio/templates").get("Content-Security-Policy", "")
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline or eval'd scripts
    assert directives["frame-ancestors"] == "'none'"
    assert "Content-Security-Policy" not in client.get("/api/v1/health")
