"""Drop two library log lines that are expected in this engine and say nothing actionable.

- transformers warns once per processor class that torchvision is missing and that it falls
  back to the PIL image processor. torchvision is left out on purpose (its registry build does
  not import beside the CPU torch wheel) and the PIL processor is the one we want.
- diffusers' ``load_lora_weights`` tries every LoRA on the text encoder too and warns when the
  state dict has no text-encoder keys. Avatar LoRAs train the UNet only, so every render that
  loads one would print it.

Only these exact messages are dropped; every other warning of those loggers still shows.
"""

from __future__ import annotations

import logging

_DROPPED = {
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
    "diffusers.loaders.lora_base": ("No LoRA keys associated to CLIPTextModel",),
    "diffusers.loaders.peft": ("No LoRA keys associated to CLIPTextModel",),
}


class _DropExpected(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def install() -> None:
    """Idempotent: attach the filters to their loggers (before or after the libraries load)."""
    for name, fragments in _DROPPED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected(fragments))
