"""Named prompt sets drawn from the world's grammar, for `argus profile` and `argus load`.

`world-train` and `world-held-out` name the grammar's fixed splits; a set is `n` prompts drawn with
`grammar.sample` (every task equally often), deterministic per seed.
"""

from __future__ import annotations

import numpy as np

from argus.world.grammar import Split, sample

WORLD_SETS: dict[str, Split] = {"world-train": "train", "world-held-out": "held_out"}


def is_world_set(name: object) -> bool:
    """Whether `name` (e.g. a --prompts argument) names a world prompt set."""
    return str(name) in WORLD_SETS


def world_prompts(name: str, n: int, seed: int = 0) -> list[str]:
    """`n` prompt texts of the named set, tasks evenly spread."""
    if name not in WORLD_SETS:
        raise ValueError(f"unknown world prompt set {name!r}: expected one of {', '.join(WORLD_SETS)}")
    if n < 1:
        raise ValueError(f"{name}: need at least one prompt, got {n}")
    return [p.text for p in sample(np.random.default_rng(seed), WORLD_SETS[name], n)]


def unscorable(prompts: list[str]) -> list[int]:
    """Indices of prompts outside the grammar (the exact scorer cannot score them)."""
    from argus.world.grammar import parse

    return [i for i, p in enumerate(prompts) if parse(p) is None]
