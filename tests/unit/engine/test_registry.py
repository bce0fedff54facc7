from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError, ModelNotFoundError
from engine.registry import ModelRegistry


def test_tiny_profile_resolves_paths(tmp_path: Path):
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path)
    assert registry.default_base == "tiny"
    base = registry.get("tiny")
    assert (base.kind, base.family, base.source, base.is_local) == (
        "base",
        "sd15",
        tmp_path / "sd-tiny",
        True,
    )
    pose = registry.get("tiny-pose")
    assert (pose.kind, pose.controlnet_kind, pose.source) == (
        "controlnet",
        "pose",
        tmp_path / "controlnet-tiny",
    )


def test_unknown_key_names_key_and_models_dir(tmp_path: Path):
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        registry.get("sdxl-base")
    assert "sdxl-base" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_unknown_profile(tmp_path: Path):
    with pytest.raises(ConfigError, match="sd99"):
        ModelRegistry.for_profile("sd99", models_dir=tmp_path)


def test_status_not_ready_when_models_missing(tmp_path: Path):
    status = ModelRegistry.for_profile("tiny", models_dir=tmp_path).status()
    assert set(status) == {"tiny", "tiny-pose", "tiny-identity", "tiny-faceid"}
    assert not status["tiny"].ready
    assert str(tmp_path / "sd-tiny") in status["tiny"].detail


def test_status_not_ready_for_incomplete_folder(tmp_path: Path):
    (tmp_path / "sd-tiny").mkdir()
    status = ModelRegistry.for_profile("tiny", models_dir=tmp_path).status()
    assert not status["tiny"].ready
    assert "model_index.json" in status["tiny"].detail


def test_status_ready_for_built_models(tiny_registry: ModelRegistry):
    status = tiny_registry.status()
    assert status["tiny"].ready, status["tiny"].detail
    assert status["tiny-pose"].ready, status["tiny-pose"].detail


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_config_file_adds_and_overrides_models(tmp_path: Path):
    config = _write_config(
        tmp_path / "models.json",
        {
            "default_base": "hub-base",
            "models": [
                {"key": "hub-base", "kind": "base", "hub_id": "org/model", "dtype": "float16"},
                {"key": "tiny", "kind": "base", "path": "elsewhere"},
                {
                    "key": "edges",
                    "kind": "controlnet",
                    "path": "/abs/cn",
                    "controlnet_kind": "canny",
                },
            ],
        },
    )
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)
    assert registry.default_base == "hub-base"
    hub = registry.get("hub-base")
    assert (hub.source, hub.is_local, hub.dtype) == ("org/model", False, "float16")
    assert hub.family == "sd15"
    assert registry.get("tiny").source == tmp_path / "elsewhere"
    assert registry.get("edges").source == Path("/abs/cn")
    assert registry.keys() == [
        "edges",
        "hub-base",
        "tiny",
        "tiny-faceid",
        "tiny-identity",
        "tiny-pose",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        {"key": "x", "kind": "base"},
        {"key": "x", "kind": "base", "path": "a", "hub_id": "o/m"},
        {"key": "x", "kind": "vae", "path": "a"},
        {"key": "x", "kind": "controlnet", "path": "a"},
        {"key": "x", "kind": "base", "path": "a", "revision": "main"},
    ],
)
def test_invalid_config_entries(tmp_path: Path, entry: dict):
    config = _write_config(tmp_path / "models.json", {"models": [entry]})
    with pytest.raises(ConfigError, match="'x'"):
        ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)


def test_unreadable_config(tmp_path: Path):
    config = tmp_path / "models.json"
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="models.json"):
        ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)


def test_hub_model_ready_only_when_in_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    config = _write_config(
        tmp_path / "models.json",
        {"models": [{"key": "hub-base", "kind": "base", "hub_id": "org/model"}]},
    )
    registry = ModelRegistry.for_profile("tiny", models_dir=tmp_path, config_file=config)
    assert not registry.status()["hub-base"].ready

    snapshot = cache / "models--org--model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}", encoding="utf-8")
    status = registry.status()["hub-base"]
    assert status.ready, status.detail


@pytest.mark.parametrize(("profile", "family"), [("sd15-random", "sd15"), ("sdxl-random", "sdxl")])
def test_random_profiles_resolve(tmp_path: Path, profile: str, family: str):
    registry = ModelRegistry.for_profile(profile, models_dir=tmp_path)
    base = registry.get(registry.default_base)
    assert (base.key, base.kind, base.family, base.source) == (
        profile,
        "base",
        family,
        tmp_path / profile,
    )
    assert not registry.status()[profile].ready
    assert registry.models("controlnet") == []


def test_random_profile_configs_ship_with_the_package():
    from engine.registry import RANDOM_PROFILES, random_profile_config

    for profile, family in RANDOM_PROFILES.items():
        config = random_profile_config(profile)
        assert config["family"] == family
        assert {"unet", "vae", "text_encoder", "scheduler", "expected_params"} <= set(config)
    with pytest.raises(ConfigError, match="tiny"):
        random_profile_config("tiny")
