"""Likeness re-ranking of candidates and the "more like me" refinement schedule.

Pure data, no torch: the web process can compute the next refinement of a spec cheaply.

Re-ranking (`rank_candidates`): with the avatar owner's reference embedding, every candidate
is scored with `engine.faces.likeness` (1 - face-embedding distance, in [0, 1]; ``None`` when
no face is found) and the best ``keep`` are returned, best first; candidates without a face
rank last, ties keep seed order.

"More like me" (`refine_spec`), one level at a time (level ``n`` = ``n`` applications of one
step, so ``refine_spec(refine_spec(s, 1), 1) == refine_spec(s, 2)``):

==========================  ===================================================
avatar weight               + 0.10 per level, capped at 1.30
identity scale (instant)    + 0.10 per level, capped at 1.20
style LoRA weights          x 0.80 per level (0.7 -> 0.56 -> 0.45 -> 0.36 ...)
face refinement (if on)     strength + 0.05 per level, capped at 0.60;
                            avatar boost + 0.05 per level, capped at 0.50
seeds                       unchanged: the same compositions, more like the user
refine_level                + 1 per level (capped at MAX_REFINE_LEVEL)
==========================  ===================================================

Likeness grows with the avatar weight until the image starts to show LoRA artefacts (burnt
colours, stiff expression) around 1.2-1.4 on real avatars, hence the cap; style weights fall so
the style LoRA's own faces stop pulling the identity away. The identity adapter's scale (the
instant tier, `engine.identity`) rises the same way; past about 1.2 an IP-Adapter-style
adapter starts to override the prompt (pose, clothing), hence its lower cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from engine.errors import SpecError
from engine.spec import MAX_REFINE_LEVEL, RenderSpec

AVATAR_STEP = 0.10
AVATAR_CAP = 1.30
IDENTITY_STEP = 0.10
IDENTITY_CAP = 1.20
STYLE_FACTOR = 0.80
FACE_STRENGTH_STEP = 0.05
FACE_STRENGTH_CAP = 0.60
FACE_BOOST_STEP = 0.05
FACE_BOOST_CAP = 0.50


def rank_candidates(scores: Sequence[float | None], keep: int) -> list[int]:
    """Indices of the ``keep`` best scores, best first; ``None`` (no face) last; stable."""
    order = sorted(
        range(len(scores)),
        key=lambda i: (scores[i] is None, -(scores[i] or 0.0), i),
    )
    return order[:keep]


def _one_step(spec: RenderSpec) -> RenderSpec:
    avatar = spec.avatar
    if avatar is not None:
        weight = min(round(avatar.weight + AVATAR_STEP, 4), max(AVATAR_CAP, avatar.weight))
        avatar = dataclasses.replace(avatar, weight=weight)
    identity = spec.identity
    if identity is not None:
        scale = min(round(identity.scale + IDENTITY_STEP, 4), max(IDENTITY_CAP, identity.scale))
        identity = dataclasses.replace(identity, scale=scale)
    face = spec.face_refine
    if face is not None:
        face = dataclasses.replace(
            face,
            strength=min(
                round(face.strength + FACE_STRENGTH_STEP, 4), max(FACE_STRENGTH_CAP, face.strength)
            ),
            avatar_boost=min(
                round(face.avatar_boost + FACE_BOOST_STEP, 4),
                max(FACE_BOOST_CAP, face.avatar_boost),
            ),
        )
    return dataclasses.replace(
        spec,
        refine_level=min(spec.refine_level + 1, MAX_REFINE_LEVEL),
        avatar=avatar,
        identity=identity,
        style_loras=tuple(
            dataclasses.replace(lora, weight=round(lora.weight * STYLE_FACTOR, 4))
            for lora in spec.style_loras
        ),
        face_refine=face,
    )


def refine_spec(spec: RenderSpec, level: int = 1) -> RenderSpec:
    """``spec`` refined ``level`` more times toward likeness (schedule in the module doc)."""
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise SpecError("level", f"must be a non-negative integer, got {level!r}")
    if spec.refine_level + level > MAX_REFINE_LEVEL:
        raise SpecError(
            "refine_level",
            f"at most {MAX_REFINE_LEVEL} refinements, asked for {spec.refine_level + level}",
        )
    for _ in range(level):
        spec = _one_step(spec)
    return spec
