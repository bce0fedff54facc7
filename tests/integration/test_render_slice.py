"""The vertical slice on real services: API -> commit -> broker -> worker process -> storage."""

import hashlib

import pytest
from django.core.files.storage import default_storage

from jobs.models import RenderJob

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(job_id):
    def check():
        job = RenderJob.objects.get(pk=job_id)
        return job if job.is_terminal else None

    return check


def test_test_render_runs_in_a_real_worker(celery_worker, signed_in, make_user):
    first, second = make_user("operator"), make_user("operator")
    client = signed_in(first)
    ids = []
    for seed in (5, 5):
        response = client.post(
            "/api/v1/ops/test-render",
            {"prompt": "studio portrait", "seed": seed, "steps": 3},
            format="json",
        )
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])

    for job_id in ids:
        job = wait_for(_finished(job_id), timeout=120, what=f"job {job_id}")
        assert job.status == "succeeded", (
            job.error_code,
            job.error_message,
            celery_worker.log()[-3000:],
        )

    details = [client.get(f"/api/v1/ops/test-render/{job_id}").json() for job_id in ids]
    pngs = []
    for detail in details:
        [output] = detail["outputs"]
        response = client.get(output["image_url"])
        assert response.status_code == 200
        png = b"".join(response.streaming_content)
        assert hashlib.sha256(png).hexdigest() == output["sha256"]
        pngs.append(png)
    # Same seed, same pixels, rendered by the worker process: the stored bytes carry each
    # job's own labels (job id in the XMP and the watermark), the pixels before them do not.
    contents = [RenderJob.objects.get(pk=job_id).outputs.get().content_sha256 for job_id in ids]
    assert contents[0] and contents[0] == contents[1]
    from engine.labels import read_labels

    assert all(read_labels(png).visible_label for png in pngs)

    # The object really is in the configured storage, and only its creator can fetch it.
    name = RenderJob.objects.get(pk=ids[0]).outputs.get().storage_name
    assert default_storage.exists(name)
    assert signed_in(second).get(details[0]["outputs"][0]["image_url"]).status_code == 404
