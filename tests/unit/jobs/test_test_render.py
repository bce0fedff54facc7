"""The operator test-render slice, executed in-process (the worker path is in integration)."""

import pytest
from django.core.files.storage import default_storage

from jobs.models import JobStatus, RenderJob
from jobs.runner import render_job_execute

pytestmark = pytest.mark.django_db


def _create(client, **spec):
    body = {"prompt": "a portrait photo", "seed": 7, "steps": 2, **spec}
    response = client.post("/api/v1/ops/test-render", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_create_queues_a_job_owned_by_the_operator(signed_in, operator):
    job = _create(signed_in(operator))
    assert job["status"] == "queued" and job["kind"] == "test_render"
    row = RenderJob.objects.get(pk=job["id"])
    assert row.created_by == operator and row.end_user is None


def test_execute_renders_stores_png_and_succeeds(signed_in, operator, tiny_models):
    client = signed_in(operator)
    job = _create(client)
    render_job_execute(job_id=job["id"])

    detail = client.get(f"/api/v1/ops/test-render/{job['id']}").json()
    assert detail["status"] == "succeeded", detail
    assert detail["progress"] == {"step": 2, "total": 2}
    [output] = detail["outputs"]
    image = client.get(output["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    png = b"".join(image.streaming_content)
    assert png.startswith(b"\x89PNG")
    name = RenderJob.objects.get(pk=job["id"]).outputs.get().storage_name
    assert default_storage.exists(name)


def test_same_seed_same_pixels_other_seed_other_pixels(signed_in, operator, tiny_models):
    # The stored bytes differ by job (the labels carry the job id); the pixels before the
    # labels (content_sha256) are reproducible, and so are the decoded labelled pixels apart
    # from the watermark's job-id bits.
    client = signed_in(operator)
    outputs = []
    for seed in (11, 11, 12):
        job = _create(client, seed=seed)
        render_job_execute(job_id=job["id"])
        outputs.append(RenderJob.objects.get(pk=job["id"]).outputs.get())
    assert all(len(o.content_sha256) == 64 for o in outputs)
    assert outputs[0].content_sha256 == outputs[1].content_sha256
    assert outputs[0].content_sha256 != outputs[2].content_sha256
    assert outputs[0].sha256 != outputs[1].sha256  # different jobs, different labels


def test_test_render_output_carries_the_visible_and_implicit_labels(
    signed_in, operator, tiny_models, settings
):
    from engine.labels import read_labels, watermark_matches

    client = signed_in(operator)
    job = _create(client, width=256, height=256)
    render_job_execute(job_id=job["id"])
    output = RenderJob.objects.get(pk=job["id"]).outputs.get()
    with default_storage.open(output.storage_name, "rb") as handle:
        stored = handle.read()
    served = b"".join(
        client.get(f"/api/v1/ops/test-render/{job['id']}/outputs/0").streaming_content
    )
    assert served == stored
    report = read_labels(stored, text=settings.LABEL_TEXT)
    assert report.visible_label
    assert report.implicit_label is not None
    assert report.implicit_label["ProduceID"] == job["id"]
    assert report.implicit_label["ContentProducer"] == settings.LABEL_PRODUCER
    assert watermark_matches(report, job["id"])


def test_redelivered_message_does_not_render_twice(signed_in, operator, tiny_models):
    job = _create(signed_in(operator))
    render_job_execute(job_id=job["id"])
    render_job_execute(job_id=job["id"])
    row = RenderJob.objects.get(pk=job["id"])
    assert row.status == JobStatus.SUCCEEDED
    assert row.attempts == 1 and row.outputs.count() == 1


def test_second_operator_cannot_see_or_fetch_first_operators_render(
    signed_in, make_user, tiny_models
):
    first, second = make_user("operator"), make_user("operator")
    job = _create(signed_in(first))
    render_job_execute(job_id=job["id"])
    image_url = (
        signed_in(first)
        .get(f"/api/v1/ops/test-render/{job['id']}")
        .json()["outputs"][0]["image_url"]
    )

    intruder = signed_in(second)
    assert intruder.get(f"/api/v1/ops/test-render/{job['id']}").status_code == 404
    assert intruder.get(image_url).status_code == 404
    assert intruder.get("/api/v1/ops/test-render").json()["count"] == 0
    assert signed_in(first).get("/api/v1/ops/test-render").json()["count"] == 1


def test_engine_failure_marks_job_failed_with_reason(signed_in, operator, tiny_models):
    job = _create(signed_in(operator))
    RenderJob.objects.filter(pk=job["id"]).update(spec={**job["spec"], "base_model": "missing"})
    render_job_execute(job_id=job["id"])
    row = RenderJob.objects.get(pk=job["id"])
    assert row.status == JobStatus.FAILED
    assert row.error_code in {"engine_error", "invalid_spec"}
    assert "missing" in row.error_message
    assert row.outputs.count() == 0
