"""Exceptions raised by the engine.

They live in their own torch-free module so that callers (the web process, Celery tasks, the
CLI) can catch them without importing the rendering stack.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class SpecError(EngineError, ValueError):
    """A render request is invalid; ``field`` names the offending input so a UI can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(EngineError):
    """A registry profile or model config file is unknown or malformed."""


class ModelNotFoundError(EngineError, LookupError):
    """A model key is not registered, or a registered local model is not on disk."""


class ModelLoadError(EngineError):
    """A registered model exists but could not be loaded into a pipeline."""


class RenderCanceled(EngineError):
    """The caller asked to stop a render between two denoising steps."""
