"""Every API error uses the one documented format with the right status."""

import pytest

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response["X-Request-ID"]
    return error


def test_unknown_api_route_is_404_in_error_format(api):
    assert_error(api.get("/api/v1/no-such-thing"), 404, "not_found")


def test_malformed_json_is_400(signed_in, operator):
    response = signed_in(operator).post(
        "/api/v1/ops/test-render", data='{"prompt": "x", ', content_type="application/json"
    )
    assert_error(response, 400, "malformed_request")


def test_no_credentials_is_401_with_bearer_challenge(api):
    response = api.get("/api/v1/ops/test-render")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_invalid_bearer_key_is_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer pk_nope_nope")
    assert_error(api.get("/api/v1/ops/test-render"), 401, "not_authenticated")


@pytest.mark.parametrize("role", ["designer", "reviewer"])
def test_wrong_role_is_403(signed_in, make_user, role):
    assert_error(
        signed_in(make_user(role)).get("/api/v1/ops/test-render"), 403, "permission_denied"
    )


def test_consumer_key_cannot_use_operator_endpoints(api, consumer_key):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {consumer_key()}", HTTP_X_END_USER="u1")
    assert_error(api.get("/api/v1/ops/test-render"), 403, "permission_denied")


def test_validation_error_names_the_field(signed_in, operator):
    response = signed_in(operator).post("/api/v1/ops/test-render", {"seed": 1}, format="json")
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["prompt"]


def test_engine_spec_error_names_the_field(signed_in, operator):
    response = signed_in(operator).post(
        "/api/v1/ops/test-render",
        {"prompt": "a cat", "seed": 1, "steps": 100000},
        format="json",
    )
    error = assert_error(response, 400, "invalid")
    assert "steps" in error["fields"]


def test_method_not_allowed_is_405(signed_in, operator):
    assert_error(signed_in(operator).delete("/api/v1/ops/test-render"), 405, "method_not_allowed")


def test_database_errors_map_to_503_in_error_format():
    """The handler turns a lost database connection into a documented 503, not a 500."""
    from django.db import OperationalError
    from rest_framework.test import APIRequestFactory

    from workstation.api.errors import api_exception_handler

    request = APIRequestFactory().get("/api/v1/ops/test-render")
    request.request_id = "req-12345678"
    response = api_exception_handler(OperationalError("connection refused"), {"request": request})
    assert response.status_code == 503
    assert response.data["error"]["code"] == "service_unavailable"
    assert response.data["error"]["request_id"] == "req-12345678"
