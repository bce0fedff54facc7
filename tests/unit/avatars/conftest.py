import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ... import photos as P


@pytest.fixture(autouse=True)
def small_intake(settings):
    """Three photos are enough in unit tests (each face check costs ~0.3 s on 2 cores)."""
    settings.AVATAR_MIN_PHOTOS = 3
    settings.AVATAR_MIN_USABLE_PHOTOS = 3


@pytest.fixture
def consumer(api, consumer_key):
    """`consumer(end_user, key=None)` -> an APIClient acting for that end user."""
    from rest_framework.test import APIClient

    default_key = consumer_key("partner-a")

    def make(end_user: str, key: str | None = None, credits: bool = True) -> APIClient:
        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {key or default_key}", HTTP_X_END_USER=end_user
        )
        if credits:
            grant_credits(client)
        return client

    return make


def grant_credits(client, avatar: int = 5, generation: int = 10) -> None:
    for credit_type, amount in (("avatar", avatar), ("generation", generation)):
        response = client.post(
            "/api/v1/credits/grants",
            {"credit_type": credit_type, "amount": amount},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"setup-{credit_type}",
        )
        assert response.status_code in (200, 201), response.content


def train(avatar_id: str) -> None:
    """Runs the avatar's jobs through the real job runner (claim, lease, run), in order: the
    intake job (photo checks, instant tier), then the training job it queues (the LoRA)."""
    from avatars.models import Avatar
    from jobs.runner import render_job_execute

    ran: set = set()
    while True:
        avatar = Avatar.objects.filter(pk=avatar_id).first()
        job = avatar and avatar.jobs.exclude(pk__in=ran).order_by("created_at").first()
        if not job:
            return
        ran.add(job.pk)
        render_job_execute(job_id=job.id, worker="test-worker")


def intake(avatar_id: str) -> None:
    """Runs only the avatar's intake job (photo checks and the instant tier)."""
    from avatars.kinds import INTAKE
    from avatars.models import Avatar
    from jobs.runner import render_job_execute

    job = Avatar.objects.get(pk=avatar_id).jobs.get(kind=INTAKE)
    render_job_execute(job_id=job.id, worker="test-worker")


def upload(
    client,
    consent_id: str,
    photos: list[bytes],
    front: bytes | None = None,
    names: list[str] | None = None,
    **fields: str,
):
    files = [
        SimpleUploadedFile(name, data, content_type="application/octet-stream")
        for name, data in zip(
            names or [f"p{i}.jpg" for i in range(len(photos))], photos, strict=True
        )
    ]
    return client.post(
        "/api/v1/avatars",
        {
            "consent": consent_id,
            "name": "Me",
            "front_photo": SimpleUploadedFile("front.jpg", front or P.front_photo()),
            "photos": files,
            **fields,
        },
        format="multipart",
    )
