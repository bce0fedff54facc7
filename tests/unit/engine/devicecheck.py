"""A CPU-only harness that catches what only a GPU run would: tensors on two devices in one op.

Move the models to the ``meta`` device (no memory, no data) and run an engine code path inside
`strict_devices`. Two checks then fail on any device mix:

- the meta device itself rejects most mixes ("Tensor on device cpu is not on the expected
  device meta"), exactly where CUDA would fail;
- `DeviceCheck`, a ``TorchDispatchMode``, looks at every ATen op's tensor arguments and
  records a violation when they live on more than one device. It also catches the ops the
  meta device lets through (``mm``/``linear``, ``convolution``, ``embedding``, indexing with a
  CPU index: on meta these silently return meta tensors). Copies (``.to(device)``) are the one
  legitimate mix; CPU scalar tensors (0-d) mix with any device, as they do on CUDA.

Meta tensors hold no data, so a path stops at its first data-dependent op (``.item()``,
``nonzero``, a copy back to the CPU): the scheduler's step index, the loss check, the export of
trained weights. Such a stop is *after* the points where the engine builds its tensors and
mixes them with the model's (latents, noise, timesteps, prompt embeddings, LoRA layers, the
UNet forward); `strict_devices` accepts it as the end of the run and the test then asserts
that the run got far enough (the UNet forward happened, the loss was computed...).

The same tests run on a real accelerator by listing it in ``ENGINE_TEST_DEVICES`` (e.g.
``meta,cuda``): there the paths run to the end and the dispatch check stays on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Device transfers: the one place two devices legitimately meet.
_TRANSFERS = {
    "aten._to_copy.default",
    "aten.copy_.default",
    "aten._copy_from.default",
    "aten._copy_from_and_resize.default",
    "aten.lift_fresh.default",
}
# What a data-dependent op on a meta tensor raises (besides NotImplementedError).
_META_DATA_ERRORS = ("cannot be called on meta tensors", "Cannot copy out of meta tensor")
_DEVICE_MIX_ERRORS = (
    "is not on the expected device",
    "Expected all tensors to be on the same device",
    "to have the same device",
    "device mix",
)


def test_devices() -> list[str]:
    """Devices the device-discipline tests run on: ``ENGINE_TEST_DEVICES`` (default meta)."""
    names = [d.strip() for d in os.environ.get("ENGINE_TEST_DEVICES", "meta").split(",")]
    return [d for d in names if d]


test_devices.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


class DeviceCheck(TorchDispatchMode):
    """Records every ATen op whose tensor arguments live on more than one device."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[str] = []
        self.ops: set[str] = set()
        self.devices: set[str] = set()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        name = str(func)
        self.ops.add(name)
        if name not in _TRANSFERS:
            devices = {
                str(arg.device)
                for arg in tree_flatten((args, kwargs))[0]
                if isinstance(arg, torch.Tensor)
                and not (arg.device.type == "cpu" and arg.dim() == 0)
            }
            if len(devices) > 1:
                # Recorded as well as raised: library code may catch the exception (a failed
                # hot-swap falls back to a full reload), the record stays.
                self.violations.append(f"{name}: {sorted(devices)}")
                raise DeviceMixError(f"device mix in {name}: {sorted(devices)}")
            self.devices |= devices
        return func(*args, **kwargs)


class DeviceMixError(AssertionError):
    """Tensors of two devices met in one op (never taken for a data-dependent stop)."""


def is_data_dependent_stop(exc: BaseException) -> bool:
    """True for the errors a meta tensor raises at a data-dependent op, never for a mix."""
    text = str(exc)
    if isinstance(exc, DeviceMixError) or any(m in text for m in _DEVICE_MIX_ERRORS):
        return False
    return isinstance(exc, NotImplementedError) or any(m in text for m in _META_DATA_ERRORS)


@dataclass
class StrictRun:
    device: str
    check: DeviceCheck
    stopped: BaseException | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.stopped is None


@contextlib.contextmanager
def strict_devices(
    device: str, *, expected: tuple[type[BaseException], ...] = ()
) -> Iterator[StrictRun]:
    """Run the block under `DeviceCheck`; on ``meta`` a data-dependent stop ends it quietly.

    ``expected``: exceptions the block raises on purpose on any device (e.g. a cancel after
    the first step); they end the run like a data stop. Afterwards the run must have seen no
    device mix (asserted here, even if a library swallowed the error).
    """
    run = StrictRun(device, DeviceCheck())
    try:
        with run.check:
            yield run
    except expected as exc:
        run.stopped = exc
    except (RuntimeError, NotImplementedError) as exc:
        if device != "meta" or not is_data_dependent_stop(exc):
            raise
        run.stopped = exc
    assert not run.check.violations, run.check.violations


def on_device(pipeline: Any, device: str) -> Any:
    """Move a (CPU-loaded) pipeline to ``device``; returns it."""
    pipeline.to(device)
    return pipeline
