from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.adapters import (
    BASE_SAMPLE,
    SLOT_ADAPTER,
    AdapterCache,
    AdapterError,
    AvatarSlot,
    avatar_adapter_name,
    avatar_slot,
    load_adapter,
    loaded_adapter_names,
    loaded_adapters,
    per_sample_adapters,
    unload_adapters,
)
from engine.errors import SpecError
from engine.training import TrainedLora

PROMPT = "a photo of sks person"
TARGETS = ("to_k", "to_q", "to_v", "to_out.0")


def _random_lora(unet, *, rank: int, seed: int, targets=TARGETS) -> dict[str, torch.Tensor]:
    """A diffusers-format LoRA with random (non-zero) up weights: a strong, distinct effect."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name.endswith("." + t) for t in targets):
            down = torch.randn(rank, module.in_features, generator=generator) * 0.3
            up = torch.randn(module.out_features, rank, generator=generator) * 0.3
            state[f"unet.{name}.lora.down.weight"] = down
            state[f"unet.{name}.lora.up.weight"] = up
    return state


@pytest.fixture(scope="module")
def loras(tiny_registry):
    from engine.runtime import load_pipeline

    unet = load_pipeline(
        tiny_registry.get("tiny"), device=torch.device("cpu"), dtype=torch.float32
    ).unet
    return {
        "A": _random_lora(unet, rank=4, seed=1),
        "B": _random_lora(unet, rank=8, seed=2),  # another rank: padded on hot-swap
        "C": _random_lora(unet, rank=16, seed=3),
        "style": _random_lora(unet, rank=4, seed=4, targets=("to_k", "to_v")),
    }


def _render(pipe, seeds=(11,), *, prompt=PROMPT) -> np.ndarray:
    return pipe(
        prompt=prompt,
        num_inference_steps=2,
        guidance_scale=5.0,
        width=64,
        height=64,
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        output_type="np",
    ).images


def _fresh_render(tiny_registry, adapters: dict[str, tuple[dict, float]], seeds=(11,)):
    """Render on a brand-new pipeline with plain (non-hot-swap) loads: the reference."""
    from engine.runtime import load_pipeline

    pipe = load_pipeline(tiny_registry.get("tiny"), device=torch.device("cpu"), dtype=torch.float32)
    for name, (state, _) in adapters.items():
        pipe.load_lora_weights(dict(state), adapter_name=name)
    pipe.set_adapters(list(adapters), [weight for _, weight in adapters.values()])
    return _render(pipe, seeds)


def _same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(first[k] is second[k] for k in first)


def _close(first: np.ndarray, second: np.ndarray, atol: float = 1e-4) -> bool:
    # A batch and a single render take different CPU kernels (oneDNN picks by batch size and
    # processor): measured up to 1.1e-5 apart on AMD EPYC, 0 on others. A wrong or missing
    # adapter moves pixels by ~1e-1, so 1e-4 still tells them apart by three orders.
    return first.shape == second.shape and float(np.abs(first - second).max()) <= atol


# ------------------------------------------------------------------------------ cache


def test_cache_evicts_least_recently_used(loras):
    cache = AdapterCache(max_items=2)
    loads: list[str] = []

    def loader(key):
        def load():
            loads.append(key)
            return loras[key]

        return load

    assert _same(cache.get_or_load("A", loader("A")), loras["A"])
    cache.get_or_load("B", loader("B"))
    assert _same(cache.get_or_load("A", loader("A")), loras["A"])  # hit: A is now most recent
    cache.get_or_load("C", loader("C"))  # evicts B, the least recently used
    assert cache.keys() == ["A", "C"]
    assert "B" not in cache and len(cache) == 2
    cache.get_or_load("B", loader("B"))  # evicts A
    assert cache.keys() == ["C", "B"]
    assert loads == ["A", "B", "C", "B"]
    assert cache.stats() == {"items": 2, "max_items": 2, "hits": 1, "misses": 4, "evictions": 2}
    assert cache.evict("C") and not cache.evict("C")
    cache.put("A", TrainedLora(state_dict=loras["A"], metadata={}))
    assert cache.keys() == ["B", "A"]
    with pytest.raises(ValueError):
        AdapterCache(max_items=0)


def test_cache_loader_may_return_a_trained_lora(loras):
    cache = AdapterCache()
    trained = TrainedLora(state_dict=loras["A"], metadata={"rank": 4})
    assert _same(cache.get_or_load("A", lambda: trained), loras["A"])
    assert _same(cache.get_or_load("A", lambda: pytest.fail("loaded twice")), loras["A"])


# ------------------------------------------------------------------------------ slot


def test_weight_zero_and_deactivate_equal_the_base_exactly(tiny_pipeline, loras):
    base = _render(tiny_pipeline)
    slot = AvatarSlot(tiny_pipeline, max_rank=16)
    assert np.array_equal(_render(tiny_pipeline), base)  # the empty slot changes nothing
    assert slot.activate("A", loras["A"]) is True
    with_avatar = _render(tiny_pipeline)
    assert np.abs(with_avatar - base).max() > 1e-2
    assert slot.activate("A", weight=0.0) is False
    assert np.array_equal(_render(tiny_pipeline), base)
    slot.activate("A", weight=1.0)
    assert np.array_equal(_render(tiny_pipeline), with_avatar)
    slot.deactivate()
    assert np.array_equal(_render(tiny_pipeline), base)
    slot.activate(None)  # no avatar, no styles: the base model
    assert np.array_equal(_render(tiny_pipeline), base)


def test_hotswap_a_b_a_equals_fresh_loads(tiny_pipeline, tiny_registry, loras):
    slot = AvatarSlot(tiny_pipeline, max_rank=16)
    originals = {key: {k: v.clone() for k, v in loras[key].items()} for key in "ABC"}
    renders = {}
    for avatar in ("A", "B", "A", "C"):
        slot.activate(avatar, loras[avatar], weight=0.8)
        renders.setdefault(avatar, []).append(_render(tiny_pipeline))
    assert (slot.loads, slot.hotswaps, slot.full_reloads) == (4, 4, 0)
    assert np.array_equal(renders["A"][0], renders["A"][1])
    for avatar in ("A", "B", "C"):
        fresh = _fresh_render(tiny_registry, {"fresh": (loras[avatar], 0.8)})
        assert _close(renders[avatar][0], fresh), avatar
    assert not np.array_equal(renders["A"][0], renders["B"][0])
    assert loaded_adapter_names(tiny_pipeline) == {SLOT_ADAPTER}  # swapped, never added
    for key in "ABC":  # the caller's (cached) state dicts are never written to
        assert all(torch.equal(loras[key][k], v) for k, v in originals[key].items())


def test_reactivating_the_same_avatar_loads_nothing(tiny_pipeline, loras):
    slot = AvatarSlot(tiny_pipeline, max_rank=8)
    calls: list[str] = []

    def loader():
        calls.append("A")
        return loras["A"]

    assert slot.activate("A", loader) is True
    first = _render(tiny_pipeline)
    assert slot.activate("A", loader) is False
    assert slot.activate("A", loader, weight=0.5) is False
    assert (slot.loads, calls, slot.current_avatar) == (1, ["A"], "A")
    slot.activate("A", loader)
    assert np.array_equal(_render(tiny_pipeline), first)
    with pytest.raises(AdapterError):
        slot.activate("B")  # not in the slot and no LoRA given
    slot.evict()
    slot.activate("A", loader)
    assert (slot.loads, calls) == (2, ["A", "A"])


def test_rank_above_max_falls_back_to_a_full_reload(tiny_pipeline, tiny_registry, loras):
    slot = AvatarSlot(tiny_pipeline, max_rank=4)
    slot.activate("A", loras["A"])
    slot.activate("C", loras["C"])  # rank 16 > 4: cannot be hot-swapped
    assert (slot.hotswaps, slot.full_reloads) == (1, 1)
    assert _close(_render(tiny_pipeline), _fresh_render(tiny_registry, {"f": (loras["C"], 1.0)}))


def test_styles_combine_with_the_avatar(tiny_pipeline, tiny_registry, loras, tmp_path):
    from safetensors.torch import save_file

    slot = AvatarSlot(tiny_pipeline, max_rank=16)
    save_file(loras["style"], str(tmp_path / "pytorch_lora_weights.safetensors"))
    assert slot.load_style("ink", tmp_path) == "style-ink"
    assert slot.styles == ["ink"]
    slot.activate("B", loras["B"], weight=0.9, styles={"ink": 0.6})
    expected = _fresh_render(tiny_registry, {"b": (loras["B"], 0.9), "ink": (loras["style"], 0.6)})
    assert _close(_render(tiny_pipeline), expected)
    slot.activate(None, styles={"ink": 0.6})
    assert _close(
        _render(tiny_pipeline), _fresh_render(tiny_registry, {"s": (loras["style"], 0.6)})
    )
    with pytest.raises(AdapterError):
        slot.activate("B", styles={"unknown": 1.0})
    slot.unload_style("ink")
    assert loaded_adapter_names(tiny_pipeline) == {SLOT_ADAPTER}


def test_slot_must_come_first_and_is_one_per_pipeline(tiny_pipeline, loras):
    slot = avatar_slot(tiny_pipeline, max_rank=8)
    assert avatar_slot(tiny_pipeline) is slot
    with pytest.raises(AdapterError):
        AvatarSlot(tiny_pipeline)  # the pipeline already holds LoRA layers
    with pytest.raises(SpecError):
        slot.activate("A", loras["A"], weight="high")


# ------------------------------------------------------------------------------ mixed batches


def test_mixed_batch_matches_single_adapter_renders(tiny_pipeline, loras):
    base = _render(tiny_pipeline, (21,))
    names = {avatar_adapter_name(key): loras[key] for key in ("A", "B")}
    with loaded_adapters(tiny_pipeline, names) as loaded:
        assert loaded == ["avatar-A", "avatar-B"]
        singles = {}
        for name, seed in [("avatar-A", 21), ("avatar-A", 22), ("avatar-A", 23)] + [
            ("avatar-B", 21),
            ("avatar-B", 22),
        ]:
            tiny_pipeline.set_adapters([name], [1.0])
            singles[name, seed] = _render(tiny_pipeline, (seed,))[0]
        # A leftover weight from an earlier set_adapters must not leak into the batch.
        tiny_pipeline.set_adapters(["avatar-A", "avatar-B"], [0.25, 0.5])
        after_set = _render(tiny_pipeline, (21,))

        for order in (["avatar-A", "avatar-B"], ["avatar-B", "avatar-A", "avatar-A"]):
            seeds = (21, 22, 23)[: len(order)]
            with per_sample_adapters(tiny_pipeline, order):
                batch = _render(tiny_pipeline, seeds)
            for i, (name, seed) in enumerate(zip(order, seeds, strict=True)):
                assert _close(batch[i], singles[name, seed]), (order, i)

        with per_sample_adapters(tiny_pipeline, [BASE_SAMPLE, "avatar-B"]):
            batch = _render(tiny_pipeline, (21, 22))
        assert _close(batch[0], base[0])
        assert _close(batch[1], singles["avatar-B", 22])

        with per_sample_adapters(tiny_pipeline, ["avatar-A", "avatar-B"], weights={"avatar-A": 0}):
            batch = _render(tiny_pipeline, (21, 22))
        assert _close(batch[0], base[0])

        # Hooks and weights are gone after the block: the earlier state renders as before.
        assert np.array_equal(_render(tiny_pipeline, (21,)), after_set)
    assert loaded_adapter_names(tiny_pipeline) == set()
    assert np.array_equal(_render(tiny_pipeline, (21,)), base)


def test_mixed_batch_next_to_the_avatar_slot(tiny_pipeline, loras):
    slot = AvatarSlot(tiny_pipeline, max_rank=16)
    slot.activate("A", loras["A"])
    slot_render = _render(tiny_pipeline, (31,))
    with loaded_adapters(tiny_pipeline, {"avatar-B": loras["B"]}):
        # Loading B changed nothing for the slot's renders.
        assert np.array_equal(_render(tiny_pipeline, (31,)), slot_render)
        with per_sample_adapters(tiny_pipeline, [SLOT_ADAPTER, "avatar-B"]):
            batch = _render(tiny_pipeline, (31, 32))
        assert _close(batch[0], slot_render[0])
        assert np.array_equal(_render(tiny_pipeline, (31,)), slot_render)
    # Unloading B leaves the slot active with the same avatar (peft would switch adapters).
    assert np.array_equal(_render(tiny_pipeline, (31,)), slot_render)
    slot.deactivate()
    with (
        loaded_adapters(tiny_pipeline, {"avatar-B": loras["B"]}),
        per_sample_adapters(tiny_pipeline, ["avatar-B"]),
    ):
        only_b = _render(tiny_pipeline, (32,))
    assert _close(only_b[0], batch[1])


def test_mixed_batch_errors(tiny_pipeline, loras):
    load_adapter(tiny_pipeline, "avatar-A", loras["A"])
    with pytest.raises(AdapterError):
        load_adapter(tiny_pipeline, "avatar-A", loras["A"])
    with pytest.raises(AdapterError), per_sample_adapters(tiny_pipeline, ["avatar-X"]):
        pass
    with pytest.raises(AdapterError), per_sample_adapters(tiny_pipeline, ["avatar-A"] * 2):
        _render(tiny_pipeline, (1, 2, 3))  # 3 images cannot take 2 per-sample adapters
    with pytest.raises(AdapterError), per_sample_adapters(tiny_pipeline, []):
        pass
    tiny_pipeline.set_adapters(["avatar-A"], [1.0])
    with_a = _render(tiny_pipeline, (5,))
    with per_sample_adapters(tiny_pipeline, [BASE_SAMPLE]):
        base_only = _render(tiny_pipeline, (5,))
    assert not np.array_equal(base_only, with_a)
    tiny_pipeline.disable_lora()
    assert np.array_equal(_render(tiny_pipeline, (5,)), base_only)
    with pytest.raises(SpecError):
        avatar_adapter_name("has.dot")
    unload_adapters(tiny_pipeline, ["avatar-A", "never-loaded"])
    assert loaded_adapter_names(tiny_pipeline) == set()


def test_unloading_the_active_adapter_activates_no_other(tiny_pipeline, loras):
    base = _render(tiny_pipeline)
    load_adapter(tiny_pipeline, "avatar-A", loras["A"])
    load_adapter(tiny_pipeline, "style-s", loras["style"])
    assert np.array_equal(_render(tiny_pipeline), base)  # loaded adapters start inactive
    tiny_pipeline.set_adapters(["avatar-A"], [1.0])
    assert not np.array_equal(_render(tiny_pipeline), base)
    unload_adapters(tiny_pipeline, ["avatar-A"])  # peft alone would activate style-s here
    assert np.array_equal(_render(tiny_pipeline), base)
