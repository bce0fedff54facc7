"""Hostile input answers 4xx in the error format, never 500 (sizes 413, counts 400), and
OPTIONS works on routes whose views have no serializer class."""

import uuid

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _consumer(consumer_key) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {consumer_key('p')}", "HTTP_X_END_USER": "u1"}


def _multipart_with_parts(parts: int, field: str = "photos") -> tuple[bytes, str]:
    boundary = "----hostile"
    chunks = []
    for n in range(parts):
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{n}.png"\r\nContent-Type: image/png\r\n\r\nx\r\n'
        )
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode(), f"multipart/form-data; boundary={boundary}"


def _assert_error(response, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    body = response.json()["error"]
    assert body["status"] == status and body["message"]


def test_a_thousand_file_parts_is_a_400(consumer_key, signed_in, operator, designer):
    body, content_type = _multipart_with_parts(1000)
    consumer = Client(**_consumer(consumer_key))
    _assert_error(consumer.post("/api/v1/avatars", body, content_type=content_type), 400)
    ops = signed_in(operator)
    _assert_error(ops.post("/api/v1/ops/test-avatars", body, content_type=content_type), 400)
    studio = signed_in(designer)
    body, content_type = _multipart_with_parts(1000, field="file")
    _assert_error(studio.post("/api/studio/assets", body, content_type=content_type), 400)


def test_an_oversized_field_or_json_body_is_a_413(consumer_key, signed_in, designer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    consumer = Client(**_consumer(consumer_key))
    big = "x" * (2 * 1024 * 1024)
    boundary = "----big"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{big}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = consumer.post(
        "/api/v1/avatars", body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    _assert_error(response, 413)
    studio = signed_in(designer)
    response = studio.post(
        "/api/studio/assets/pose",
        '{"keypoints": "' + big + '"}',
        content_type="application/json",
    )
    _assert_error(response, 413)


@pytest.mark.parametrize("action", ["cancel", "refine"])
def test_options_works_on_views_without_a_serializer(consumer_key, action):
    consumer = Client(**_consumer(consumer_key))
    response = consumer.options(f"/api/v1/generations/{uuid.uuid4()}/{action}")
    assert response.status_code == 200
    assert response.json()["schema"] == "/api/v1/schema/"


@pytest.mark.parametrize("path", ["/api/v1/avatars", "/api/v1/generations", "/api/v1/credits"])
def test_a_consumer_call_without_x_end_user_is_a_400_naming_the_header(consumer_key, path):
    response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {consumer_key('p')}")
    _assert_error(response, 400)
    assert "X-End-User" in response.json()["error"]["fields"]
    # Without a key at all it stays an authentication failure.
    assert Client().get(path).status_code in (401, 403)


def test_the_schema_declares_x_end_user_on_consumer_operations_only():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)

    def names(path: str, method: str) -> set[str]:
        return {p["name"] for p in schema["paths"][path][method].get("parameters", [])}

    assert "X-End-User" in names("/api/v1/generations", "post")
    assert "X-End-User" in names("/api/v1/avatars/{id}", "get")
    assert "X-End-User" not in names("/api/v1/catalog/templates", "get")  # the key alone
    assert "X-End-User" not in names("/api/studio/templates", "get")
