""" "More like me": each level renders the same composition closer to the avatar, by the
engine's schedule; a refinement that changes nothing is not charged and says so."""

import pytest

from credits.models import CreditEntry
from credits.services import balance
from engine.likeness import refine_spec
from engine.spec import RenderSpec
from generations.services import IDENTICAL_REFINEMENT_NOTICE
from jobs.assets import with_placeholder_images
from jobs.models import RenderJob, RenderOutput
from jobs.runner import dispatch_once

from .test_queue import create, shop  # noqa: F401  (the consumer fixture)

pytestmark = pytest.mark.django_db


def _engine_spec(job_id: str) -> RenderSpec:
    return RenderSpec.from_dict(with_placeholder_images(RenderJob.objects.get(pk=job_id).spec))


def _hashes(job_id: str) -> list[str]:
    """The outputs' pixels before labels (the labels carry the job id, so files always differ)."""
    outputs = RenderOutput.objects.filter(job_id=job_id)
    return sorted(outputs.values_list("content_sha256", flat=True))


def test_each_level_follows_the_engine_schedule_and_changes_the_pixels(shop):  # noqa: F811
    first = create(shop).json()
    dispatch_once(lane="render", worker="w")
    level1 = shop.post(first["urls"]["refine"]).json()
    dispatch_once(lane="render", worker="w")
    level2 = shop.post(level1["urls"]["refine"]).json()
    dispatch_once(lane="render", worker="w")

    base = _engine_spec(first["id"])
    # The face pass is switched on at the first refinement, then strengthened per level.
    with_face = RenderSpec.from_dict({**base.to_dict(), "face_refine": {}})
    assert _engine_spec(level1["id"]) == refine_spec(with_face, 1)
    assert _engine_spec(level2["id"]) == refine_spec(with_face, 2)
    one, two = _engine_spec(level1["id"]), _engine_spec(level2["id"])
    assert two.avatar.weight > one.avatar.weight > base.avatar.weight
    assert two.face_refine.strength > one.face_refine.strength
    assert (one.seed, two.seed) == (base.seed, base.seed)  # the same compositions

    bodies = [shop.get(f"/api/v1/generations/{j['id']}").json() for j in (first, level1, level2)]
    assert [b["status"] for b in bodies] == ["succeeded"] * 3
    assert _hashes(level1["id"]) != _hashes(first["id"])
    assert _hashes(level2["id"]) != _hashes(level1["id"])
    # Every output carries its likeness field (null when the tiny model draws no face).
    assert all("likeness" in output for b in bodies for output in b["output"])
    assert [b["notice"] for b in bodies] == [None, None, None]


def test_an_identical_refinement_is_refunded_and_says_so(shop, settings, monkeypatch):  # noqa: F811
    settings.AVATAR_GENERATION_ALLOWANCE = 0  # every generation costs a credit
    first = create(shop).json()
    dispatch_once(lane="render", worker="w")
    # A schedule that changes nothing: the refinement renders the parent's pixels again.
    monkeypatch.setattr(
        "generations.services.refined_spec",
        lambda spec: {**spec, "refine_level": spec.get("refine_level", 0) + 1},
    )
    refined = shop.post(first["urls"]["refine"]).json()
    assert balance(end_user=shop.end_user, credit_type="generation") == 1  # charged 2 so far
    dispatch_once(lane="render", worker="w")
    body = shop.get(f"/api/v1/generations/{refined['id']}").json()
    assert body["status"] == "succeeded"
    assert _hashes(refined["id"]) == _hashes(first["id"])
    assert body["notice"] == IDENTICAL_REFINEMENT_NOTICE
    assert balance(end_user=shop.end_user, credit_type="generation") == 2  # refunded
    refund = CreditEntry.objects.get(reason="refund", job_id=refined["id"])
    assert refund.note == IDENTICAL_REFINEMENT_NOTICE
