"""The full-size random profiles have the real architectures (counted on the meta device:
no memory, about a second). Building and running them is measured by the benchmark."""

from __future__ import annotations

import pytest

from engine.random_models import parameter_counts
from engine.registry import random_profile_config


@pytest.mark.parametrize("profile", ["sd15-random", "sdxl-random"])
def test_parameter_counts_match_the_published_models(profile: str):
    expected = random_profile_config(profile)["expected_params"]
    assert parameter_counts(profile) == expected


def test_published_unet_sizes():
    """SD1.5: 859.5M UNet parameters; SDXL base: 2.567B (both as published)."""
    assert random_profile_config("sd15-random")["expected_params"]["unet"] == 859_520_964
    assert random_profile_config("sdxl-random")["expected_params"]["unet"] == 2_567_463_684
