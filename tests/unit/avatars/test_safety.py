"""The pluggable content-safety check: off says so; a configured checker loads and screens."""

import pytest
import torch

from avatars import safety

from ... import photos as P


@pytest.fixture(autouse=True)
def fresh_checker():
    safety.get_checker.cache_clear()
    yield
    safety.get_checker.cache_clear()


def test_not_configured_is_said_plainly(settings, api, db):
    settings.CONTENT_SAFETY_CHECKER = "none"
    assert safety.get_checker() is None
    assert "NOT CONFIGURED" in api.get("/api/v1/health").json()["notices"]["content_safety"]


def _tiny_safety_checker(directory, *, threshold: float):
    """A random-weight diffusers safety checker saved to disk (weights cannot be downloaded)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 100,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 4,
        },
        projection_dim=32,
    )
    model = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():  # every concept threshold decides the verdict for every image
        model.concept_embeds_weights.fill_(threshold)
        model.special_care_embeds_weights.fill_(threshold)
    model.save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("threshold, flagged", [(-10.0, True), (10.0, False)])
def test_configured_diffusers_checker_loads_from_disk_and_screens(
    settings, tmp_path, threshold, flagged
):
    path = _tiny_safety_checker(tmp_path / "checker", threshold=threshold)
    settings.CONTENT_SAFETY_CHECKER = f"diffusers:{path}"
    checker = safety.get_checker()
    verdicts = checker.check([P.astronaut().resize((64, 64))] * 2)
    assert [v.flagged for v in verdicts] == [flagged, flagged]


def test_unknown_checker_setting_is_a_clear_error(settings):
    settings.CONTENT_SAFETY_CHECKER = "magic"
    with pytest.raises(ValueError, match="CONTENT_SAFETY_CHECKER"):
        safety.get_checker()


@pytest.mark.django_db
def test_flagged_uploads_fail_the_avatar_with_a_reason(settings, tmp_path, consumer):
    from avatars.models import Avatar

    from ...factories import give_consent
    from ...storage_utils import list_objects
    from .conftest import train, upload

    settings.CONTENT_SAFETY_CHECKER = (
        f"diffusers:{_tiny_safety_checker(tmp_path / 'c', threshold=-10.0)}"
    )
    client = consumer("alice")
    response = upload(client, give_consent(client), P.same_person_photos(3))
    assert response.status_code == 202, response.content
    train(response.json()["id"])  # screening runs in the training job
    avatar = Avatar.objects.get(pk=response.json()["id"])
    assert avatar.status == "failed" and avatar.failure_code == "too_few_usable_photos"
    assert {issue["code"] for issue in avatar.photo_issues} == {"unsafe_content"}
    assert list_objects("avatars") == []
