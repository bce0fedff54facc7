"""Batching different users' render requests into one forward pass (`Engine.render_batch`).

Two specs can share a denoising batch when everything that is the same for every row of the
batch agrees: base model, size, steps, guidance, sampler, the ControlNets (kind, model, scale,
start, end), the style LoRAs with their weights, and whether an identity is given and its scale
(the identity adapter's scale is one per pipeline call). What may differ per sample: the prompt
(and the avatar trigger in it), the negative prompt (empty or not must agree, see
`batch_key`), the seed, the control images, the avatar (each sample gets its own LoRA through
the avatar pool or `engine.adapters.per_sample_adapters`) and the identity embedding.

Only plain text-to-image specs (optionally with ControlNets) are batchable: img2img / inpaint
(``reference``), light maps (``lighting``) and the face pass (``face_refine``) keep to
`Engine.render`. A spec with several candidates (``num_images`` / ``seeds``) puts each
candidate in the batch as its own sample; its candidates are then ranked and kept as its own
render would.

This module imports no torch at import time: `batch_key` is meant for the dispatcher too.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from engine.spec import RenderSpec

BatchKey = tuple[Hashable, ...]


def batch_key(spec: RenderSpec) -> BatchKey | None:
    """The compatibility key of ``spec``: specs with equal keys can be rendered in one call
    of `Engine.render_batch`. None when the spec cannot be batched at all (see module doc).

    ``base_model`` is compared as written (None and the default base's key differ), and style
    LoRAs as written (key or path, weight, in order): a conservative key never batches specs
    that would render differently, it may only miss a batch. The negative prompt itself may
    differ per sample, but whether it is empty must agree: SDXL encodes an absent negative
    prompt as zeros, a per-sample list of texts cannot express that for some rows only.
    """
    if spec.lighting is not None or spec.reference is not None or spec.face_refine is not None:
        return None
    controls = tuple(
        (c.kind, c.model, float(c.conditioning_scale), float(c.start), float(c.end))
        for c in spec.controls
    )
    styles = tuple((lora.key, lora.path, float(lora.weight)) for lora in spec.style_loras)
    identity = (spec.identity is not None, float(spec.identity.scale) if spec.identity else None)
    return (
        "txt2img+controlnet" if controls else "txt2img",
        spec.base_model,
        spec.width,
        spec.height,
        spec.steps,
        float(spec.guidance),
        spec.sampler,
        bool(spec.negative_prompt),
        controls,
        styles,
        identity,
    )


def group_by_key(specs: Sequence[RenderSpec]) -> dict[BatchKey | None, list[int]]:
    """Indices of ``specs`` grouped by `batch_key` (key None: render those one by one)."""
    groups: dict[BatchKey | None, list[int]] = {}
    for index, spec in enumerate(specs):
        groups.setdefault(batch_key(spec), []).append(index)
    return groups


def combined_lora(pipeline: Any, parts: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """One peft-format LoRA state dict equal to the weighted sum of loaded adapters.

    ``parts`` is ``[(adapter name, weight), ...]`` of adapters loaded in ``pipeline``; in every
    LoRA layer holding any of them the result stacks the ranks: ``A = [A_1; A_2; ...]`` and
    ``B = [w_1 s_1 B_1, w_2 s_2 B_2, ...]`` (``s`` the adapter's own ``alpha / rank``
    scaling), so ``B A = sum w_i s_i B_i A_i`` and the combination loads with scale 1. This is
    how one sample of a mixed batch gets its avatar *and* the style LoRAs: peft's mixed batch
    applies one adapter per sample.
    """
    import torch
    from peft.tuners.lora import LoraLayer

    from engine.adapters import AdapterError

    state: dict[str, Any] = {}
    for component in ("unet", "text_encoder", "text_encoder_2"):
        model = getattr(pipeline, component, None)
        if model is None:
            continue
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            downs, ups = [], []
            for adapter, weight in parts:
                if adapter not in module.lora_A:
                    continue
                if module.use_dora.get(adapter):
                    raise AdapterError(f"adapter {adapter!r} uses DoRA: it cannot be combined")
                scale = float(weight) * float(module.scaling[adapter])
                a_weight = module.lora_A[adapter].weight
                b_weight = module.lora_B[adapter].weight
                # Module attribute access is typed Tensor | Module; these are Parameters.
                assert isinstance(a_weight, torch.Tensor) and isinstance(b_weight, torch.Tensor)
                downs.append(a_weight.detach())
                ups.append(b_weight.detach() * scale)
            if not downs:
                continue
            try:
                down, up = torch.cat(downs, dim=0), torch.cat(ups, dim=1)
            except RuntimeError as exc:
                where = f"{component}.{name}"
                raise AdapterError(f"cannot combine the LoRAs of {where}: {exc}") from exc
            state[f"{component}.{name}.lora_A.weight"] = down.clone()
            state[f"{component}.{name}.lora_B.weight"] = up
    return state
