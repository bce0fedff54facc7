"""Which models exist, where they live, and whether they are on this machine.

The registry is pure data and filesystem checks (no torch, no Django), so the web process can
list models and show their readiness cheaply; only `engine.runtime` loads weights.

A *profile* is a named starting set of models:

- ``tiny``: the random-weight test models written by ``python -m engine build-tiny DIR``
  (base ``tiny`` -> ``DIR/sd-tiny``, ControlNet ``tiny-pose`` -> ``DIR/controlnet-tiny``,
  identity adapters ``tiny-identity`` -> ``DIR/identity-tiny`` (CLIP image encoder kind, the
  default) and ``tiny-faceid`` -> ``DIR/faceid-tiny`` (128-d dlib face embedding kind)).
- ``sd15-random`` / ``sdxl-random``: the full-size SD1.5 / SDXL architectures with random
  weights (configs in ``engine/configs/``), written by
  ``python -m engine build-random --profile sd15-random DIR`` (base key = profile name ->
  ``DIR/sd15-random``). ``sd15-random`` also has an identity adapter of ``ip-adapter_sd15``'s
  size with a ViT-H/14 CLIP image encoder, random too (``sd15-random-identity`` ->
  ``DIR/sd15-random-identity``). No ControlNet; add one with a config file.

More profiles are added by registering a builder in `_PROFILES`.

An optional JSON config file adds models or overrides profile entries by key::

    {
      "default_base": "my-sd15",
      "models": [
        {"key": "my-sd15", "kind": "base", "family": "sd15",
         "hub_id": "some-org/some-model", "dtype": "float16"},
        {"key": "my-pose", "kind": "controlnet", "family": "sd15",
         "path": "controlnets/pose", "controlnet_kind": "pose"},
        {"key": "ip-face", "kind": "identity_adapter", "family": "sd15",
         "hub_id": "h94/IP-Adapter", "identity_kind": "image_encoder",
         "weight_name": "models/ip-adapter-plus-face_sd15.safetensors",
         "image_encoder": "models/image_encoder", "licence": "Apache-2.0"}
      ],
      "default_identity": "ip-face"
    }

Each model has exactly one of ``path`` (local; relative paths are resolved against
``models_dir``) or ``hub_id`` (a Hugging Face repo id, looked up in the local HF cache).
``family`` defaults to ``sd15`` and ``dtype`` to ``auto`` (float16 on CUDA, float32 elsewhere).

Identity adapters (kind ``identity_adapter``, IP-Adapter-style weights read by diffusers'
``load_ip_adapter``; see docs/identity-adapters.md) also take ``identity_kind``
(``image_encoder``: CLIP image embeddings of the face crops; ``face_embedding``: a face
recognition embedding), ``weight_name`` (the weights file inside the folder or repo, required),
``image_encoder`` (image_encoder kind: the CLIP vision encoder's folder relative to the adapter
folder, default ``image_encoder``) and ``face_encoder`` (face_embedding kind: ``dlib``, the
default, or the path of an ONNX face-recognition model). Any model may carry a free-text
``licence``. The top-level ``default_identity`` picks the identity adapter of its family (see
`ModelRegistry.identity_adapter`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from engine.errors import ConfigError, ModelNotFoundError

ModelKind = Literal["base", "controlnet", "lora", "identity_adapter"]
Family = Literal["sd15", "sdxl"]
ControlNetKind = Literal["pose", "canny", "depth"]
DTypeName = Literal["auto", "float32", "float16", "bfloat16"]
IdentityKind = Literal["image_encoder", "face_embedding"]

TINY_BASE_DIR = "sd-tiny"
TINY_CONTROLNET_DIR = "controlnet-tiny"
TINY_IDENTITY_DIR = "identity-tiny"
TINY_FACEID_DIR = "faceid-tiny"
TINY_IDENTITY_WEIGHTS = "ip-adapter.safetensors"
TINY_FACEID_WEIGHTS = "ip-adapter-faceid.safetensors"
DEFAULT_IMAGE_ENCODER = "image_encoder"
DLIB_FACE_ENCODER = "dlib"
# Fields only identity adapters have.
_IDENTITY_FIELDS = ("identity_kind", "weight_name", "image_encoder", "face_encoder")


@dataclass(frozen=True)
class ModelSpec:
    """One loadable model. ``source`` is a `Path` for local models and a `str` hub id otherwise.

    Keeping the two as different types (rather than guessing from the string) avoids mistaking
    a relative path like ``org/name`` for a hub id or the reverse.
    """

    key: str
    kind: ModelKind
    family: Family
    source: Path | str
    dtype: DTypeName = "auto"
    controlnet_kind: ControlNetKind | None = None
    identity_kind: IdentityKind | None = None
    weight_name: str | None = None
    image_encoder: str | None = None
    face_encoder: str | None = None
    licence: str = ""

    def __post_init__(self) -> None:
        _check_choice(self.key, "kind", self.kind, ModelKind)
        _check_choice(self.key, "family", self.family, Family)
        _check_choice(self.key, "dtype", self.dtype, DTypeName)
        if self.kind == "controlnet":
            _check_choice(self.key, "controlnet_kind", self.controlnet_kind, ControlNetKind)
        elif self.controlnet_kind is not None:
            raise ConfigError(f"model {self.key!r}: controlnet_kind is only for controlnets")
        if not isinstance(self.licence, str):
            raise ConfigError(f"model {self.key!r}: licence must be a string")
        if self.kind != "identity_adapter":
            given = [name for name in _IDENTITY_FIELDS if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"model {self.key!r}: {given} are only for identity adapters")
            return
        _check_choice(self.key, "identity_kind", self.identity_kind, IdentityKind)
        for name in ("weight_name", "image_encoder", "face_encoder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"model {self.key!r}: {name} must be a non-empty string")
        if self.weight_name is None:
            raise ConfigError(f"model {self.key!r}: identity adapters need a weight_name")
        if self.identity_kind == "image_encoder":
            if self.face_encoder is not None:
                raise ConfigError(f"model {self.key!r}: face_encoder is for face_embedding kind")
            if self.image_encoder is None:
                object.__setattr__(self, "image_encoder", DEFAULT_IMAGE_ENCODER)
        else:
            if self.image_encoder is not None:
                raise ConfigError(f"model {self.key!r}: image_encoder is for image_encoder kind")
            if self.face_encoder is None:
                object.__setattr__(self, "face_encoder", DLIB_FACE_ENCODER)

    @property
    def is_local(self) -> bool:
        return isinstance(self.source, Path)


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model can be loaded without the network, and a human-readable reason."""

    ready: bool
    detail: str


def _check_choice(key: str, name: str, value: object, allowed: Any) -> None:
    if value not in get_args(allowed):
        raise ConfigError(
            f"model {key!r}: {name} must be one of {get_args(allowed)}, got {value!r}"
        )


def _tiny_profile(models_dir: Path) -> list[ModelSpec]:
    return [
        ModelSpec("tiny", "base", "sd15", models_dir / TINY_BASE_DIR, dtype="float32"),
        ModelSpec(
            "tiny-pose",
            "controlnet",
            "sd15",
            models_dir / TINY_CONTROLNET_DIR,
            dtype="float32",
            controlnet_kind="pose",
        ),
        ModelSpec(
            "tiny-identity",
            "identity_adapter",
            "sd15",
            models_dir / TINY_IDENTITY_DIR,
            dtype="float32",
            identity_kind="image_encoder",
            weight_name=TINY_IDENTITY_WEIGHTS,
            image_encoder=DEFAULT_IMAGE_ENCODER,
            licence="random test weights (this repository)",
        ),
        ModelSpec(
            "tiny-faceid",
            "identity_adapter",
            "sd15",
            models_dir / TINY_FACEID_DIR,
            dtype="float32",
            identity_kind="face_embedding",
            weight_name=TINY_FACEID_WEIGHTS,
            face_encoder=DLIB_FACE_ENCODER,
            licence="random test weights (this repository)",
        ),
    ]


CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
RANDOM_PROFILES: dict[str, Family] = {"sd15-random": "sd15", "sdxl-random": "sdxl"}
# Random profile -> the key (and folder under models_dir) of its random identity adapter,
# written by ``python -m engine build-random`` with the base (`engine.random_models`).
RANDOM_IDENTITY_ADAPTERS: dict[str, str] = {"sd15-random": "sd15-random-identity"}
RANDOM_IDENTITY_WEIGHTS = "ip-adapter_sd15.safetensors"


def random_profile_config(profile: str) -> dict[str, Any]:
    """The architecture config of a random-weight profile (``engine/configs/<profile>.json``)."""
    if profile not in RANDOM_PROFILES:
        raise ConfigError(
            f"{profile!r} is not a random-weight profile; known: {sorted(RANDOM_PROFILES)}"
        )
    path = CONFIGS_DIR / f"{profile}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read profile config {path}: {exc}") from exc


def _random_profile(profile: str) -> Callable[[Path], list[ModelSpec]]:
    def build(models_dir: Path) -> list[ModelSpec]:
        family = RANDOM_PROFILES[profile]
        models = [ModelSpec(profile, "base", family, models_dir / profile)]
        identity = RANDOM_IDENTITY_ADAPTERS.get(profile)
        if identity is not None:
            models.append(
                ModelSpec(
                    identity,
                    "identity_adapter",
                    family,
                    models_dir / identity,
                    identity_kind="image_encoder",
                    weight_name=RANDOM_IDENTITY_WEIGHTS,
                    image_encoder=DEFAULT_IMAGE_ENCODER,
                    licence="random test weights (this repository)",
                )
            )
        return models

    return build


# profile name -> (builder of its models, default base key)
_PROFILES: dict[str, tuple[Callable[[Path], list[ModelSpec]], str]] = {
    "tiny": (_tiny_profile, "tiny"),
    **{name: (_random_profile(name), name) for name in RANDOM_PROFILES},
}


def _spec_from_config(entry: Any, models_dir: Path) -> ModelSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ConfigError(f"each model needs a string 'key', got {entry!r}")
    key = entry["key"]
    allowed = {"key", "kind", "family", "path", "hub_id", "dtype", "controlnet_kind", "licence"}
    allowed.update(_IDENTITY_FIELDS)
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"model {key!r}: unknown fields {sorted(unknown)}")
    if ("path" in entry) == ("hub_id" in entry):
        raise ConfigError(f"model {key!r}: give exactly one of 'path' or 'hub_id'")
    source: Path | str = (
        models_dir / Path(entry["path"]).expanduser() if "path" in entry else entry["hub_id"]
    )
    kind: Any = entry.get("kind")  # JSON: ModelSpec checks it against ModelKind
    face_encoder = entry.get("face_encoder")
    if isinstance(face_encoder, str) and face_encoder.strip() and face_encoder != DLIB_FACE_ENCODER:
        face_encoder = str(models_dir / Path(face_encoder).expanduser())  # an ONNX model file
    return ModelSpec(
        key=key,
        kind=kind,
        family=entry.get("family", "sd15"),
        source=source,
        dtype=entry.get("dtype", "auto"),
        controlnet_kind=entry.get("controlnet_kind"),
        identity_kind=entry.get("identity_kind"),
        weight_name=entry.get("weight_name"),
        image_encoder=entry.get("image_encoder"),
        face_encoder=face_encoder,
        licence=entry.get("licence", ""),
    )


@dataclass(frozen=True)
class _Config:
    models: list[ModelSpec]
    default_base: str | None
    default_identity: str | None


def _read_config(config_file: Path, models_dir: Path) -> _Config:
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read model config {config_file}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ConfigError(f"{config_file}: expected an object with a 'models' list")
    unknown = set(data) - {"models", "default_base", "default_identity"}
    if unknown:
        raise ConfigError(f"{config_file}: unknown top-level fields {sorted(unknown)}")
    models = [_spec_from_config(entry, models_dir) for entry in data.get("models", [])]
    return _Config(models, data.get("default_base"), data.get("default_identity"))


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, resolved like huggingface_hub does (env vars first)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    hf_home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


# The file whose presence says a model folder is complete enough to try loading.
_MARKER_FILE: dict[str, str] = {
    "base": "model_index.json",
    "controlnet": "config.json",
    "lora": "pytorch_lora_weights.safetensors",
}


def _marker(model: ModelSpec) -> str:
    if model.kind == "identity_adapter":
        assert model.weight_name is not None  # required by ModelSpec
        return model.weight_name
    return _MARKER_FILE[model.kind]


def _local_status(model: ModelSpec) -> ModelStatus:
    path = Path(model.source)
    marker = _marker(model)
    if model.kind == "lora" and path.is_file():
        return ModelStatus(True, f"local file {path}")
    if not path.is_dir():
        return ModelStatus(False, f"missing: {path} does not exist")
    if not (path / marker).is_file():
        return ModelStatus(False, f"incomplete: {path} has no {marker}")
    return ModelStatus(True, f"local {path}")


def _hub_status(model: ModelSpec, cache_dir: Path) -> ModelStatus:
    """Ready if some cached snapshot has the marker file (weights are not verified)."""
    snapshots = cache_dir / ("models--" + str(model.source).replace("/", "--")) / "snapshots"
    marker = _marker(model)
    if snapshots.is_dir():
        for snapshot in sorted(snapshots.iterdir()):
            if (snapshot / marker).is_file():
                return ModelStatus(True, f"hub {model.source} cached in {snapshot}")
    return ModelStatus(False, f"hub {model.source} not in the local cache {cache_dir}")


class ModelRegistry:
    """The models one engine process may load, by key."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        default_base: str,
        origin: str,
        default_identity: str | None = None,
    ) -> None:
        self._models = {model.key: model for model in models}
        self.origin = origin
        base = self._models.get(default_base)
        if base is None or base.kind != "base":
            raise ConfigError(f"default base {default_base!r} is not a registered base model")
        self.default_base = default_base
        if default_identity is not None:
            identity = self._models.get(default_identity)
            if identity is None or identity.kind != "identity_adapter":
                raise ConfigError(
                    f"default identity {default_identity!r} is not a registered identity adapter"
                )
        self.default_identity = default_identity

    @classmethod
    def for_profile(
        cls, profile: str, *, models_dir: Path, config_file: Path | None = None
    ) -> ModelRegistry:
        """Registry for a named profile, with models from ``config_file`` added or overriding."""
        if profile not in _PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; known: {sorted(_PROFILES)}")
        build, default_base = _PROFILES[profile]
        models_dir = Path(models_dir).expanduser()
        models = {model.key: model for model in build(models_dir)}
        default_identity = None
        if config_file is not None:
            config = _read_config(Path(config_file), models_dir)
            models.update({model.key: model for model in config.models})
            default_base = config.default_base or default_base
            default_identity = config.default_identity
        return cls(
            models.values(),
            default_base=default_base,
            origin=f"profile {profile!r}, models dir {models_dir}",
            default_identity=default_identity,
        )

    def get(self, key: str) -> ModelSpec:
        try:
            return self._models[key]
        except KeyError:
            raise ModelNotFoundError(
                f"model {key!r} is not registered ({self.origin}); known: {sorted(self._models)}"
            ) from None

    def keys(self) -> list[str]:
        return sorted(self._models)

    def models(self, kind: ModelKind | None = None) -> list[ModelSpec]:
        """Registered models sorted by key, optionally only those of one ``kind``."""
        return [m for _, m in sorted(self._models.items()) if kind is None or m.kind == kind]

    def identity_adapter(self, base_key: str | None = None) -> ModelSpec | None:
        """The identity adapter renders on base model ``base_key`` (default base if None) use:
        the config's ``default_identity`` if it is of the base's family, else the first
        registered identity adapter of that family with ``identity_kind`` ``image_encoder``,
        else the first of that family; None when the family has none."""
        base = self.get(base_key or self.default_base)
        if self.default_identity is not None:
            chosen = self._models[self.default_identity]
            if chosen.family == base.family:
                return chosen
        adapters = [
            model
            for model in self._models.values()  # registration order
            if model.kind == "identity_adapter" and model.family == base.family
        ]
        for model in adapters:
            if model.identity_kind == "image_encoder":
                return model
        return adapters[0] if adapters else None

    def status_of(self, key: str) -> ModelStatus:
        """Readiness of one model, from the filesystem only (nothing is loaded)."""
        model = self.get(key)
        return _local_status(model) if model.is_local else _hub_status(model, hf_hub_cache_dir())

    def status(self) -> dict[str, ModelStatus]:
        """Readiness of every model, from the filesystem only (nothing is loaded)."""
        cache_dir = hf_hub_cache_dir()
        return {
            key: _local_status(model) if model.is_local else _hub_status(model, cache_dir)
            for key, model in sorted(self._models.items())
        }
