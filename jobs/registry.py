"""The job-kind registry: what each kind of job is, declared by the app that owns it.

The queue of record knows lanes, priorities, leases and fairness; it does not know what a
preview or an avatar is. Each app registers its kinds in `AppConfig.ready()`:

    jobs.registry.register(JobKindSpec(name="preview", lane=Lane.RENDER,
                                       priority=PRIORITY_STUDIO, on_finished=preview_finished))

A kind either renders (its spec is an engine RenderSpec; the runner renders it, screens and
stores the images) or names its own `run` (e.g. avatar training). Terminal hooks run once a
job reaches a terminal state, each in its own savepoint: one that raises is logged, recorded
on the job (`pending_hooks`) and retried by the sweeper, and never undoes the stored result.
`register_finished_hook` adds a hook for every kind (refunds, webhooks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import RenderJob


@dataclass(frozen=True)
class RunOutcome:
    """What a kind's own `run` reports; the runner records it on the job."""

    succeeded: bool
    code: str = ""
    message: str = ""
    # Structured reasons for a failure (recorded as the job's `error_details`).
    details: tuple[dict[str, str], ...] = ()


FinishedHook = Callable[["RenderJob"], None]
RunFunction = Callable[["RenderJob"], RunOutcome]


class UnknownJobKind(LookupError):
    """A job row names a kind that no installed app registered."""


@dataclass(frozen=True)
class JobKindSpec:
    name: str
    lane: str
    priority: int
    # None: the job's spec is an engine RenderSpec and the runner renders it.
    run: RunFunction | None = None
    # Compatible jobs of this kind may share one forward pass (engine.batching).
    batchable: bool = True
    # Seen by consumers: engine errors are replaced by a plain sentence.
    consumer_facing: bool = False
    # Outputs carry the AIGC labels (visible text, XMP, watermark).
    labelled: bool = True
    on_finished: tuple[FinishedHook, ...] = field(default_factory=tuple)

    @property
    def renders(self) -> bool:
        return self.run is None


_KINDS: dict[str, JobKindSpec] = {}
_GLOBAL_HOOKS: list[FinishedHook] = []


def register(spec: JobKindSpec) -> JobKindSpec:
    """Registers a kind. Registering the same spec again (a re-run `ready()`) is harmless; a
    different spec under a taken name is a programming error."""
    existing = _KINDS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"job kind {spec.name!r} is already registered differently")
    _KINDS[spec.name] = spec
    return spec


def register_finished_hook(hook: FinishedHook) -> None:
    """A hook for jobs of every kind (it decides itself which jobs concern it)."""
    if hook not in _GLOBAL_HOOKS:
        _GLOBAL_HOOKS.append(hook)


def unregister(name: str) -> None:
    """For tests that register a kind of their own."""
    _KINDS.pop(name, None)


def get(name: str) -> JobKindSpec:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownJobKind(f"no app registered the job kind {name!r}") from None


def registered() -> dict[str, JobKindSpec]:
    return dict(_KINDS)


def hook_name(hook: FinishedHook) -> str:
    return f"{hook.__module__}.{hook.__qualname__}"


def finished_hooks(name: str) -> list[FinishedHook]:
    """The kind's own hooks, then those for every kind."""
    spec = _KINDS.get(name)
    return [*(spec.on_finished if spec else ()), *_GLOBAL_HOOKS]
