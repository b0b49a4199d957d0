"""Every integer allocation in a box under a GPU budget, when there are few enough to list (pure).

Small services (a handful of GPUs and levels) have a few thousand allocations in the optimizer's
box on x; scoring all of them with numpy (argus.policy.solver.fixed) or bounding all of them with LP cuts
(bnb.outer_approximation) proves the optimum with far fewer LPs than branch and bound.
"""

from __future__ import annotations

import numpy as np

BOX_LIMIT = 20_000  # box sizes listed in one go before the budget filter (faster below this, measured)


def count(lo: np.ndarray, hi: np.ndarray, budget: int) -> int:
    """How many integer x have lo <= x <= hi and sum(x) <= budget."""
    lo_i, hi_i = lo.astype(int), hi.astype(int)
    room = budget - int(lo_i.sum())
    if room < 0 or np.any(hi_i < lo_i):
        return 0
    ways = np.zeros(room + 1)
    ways[0] = 1.0  # ways[s]: allocations of the levels so far using s GPUs above their lower bounds
    for span in hi_i - lo_i:
        csum = np.cumsum(ways)
        shifted = np.concatenate((np.zeros(span + 1), csum[:room - span])) if span < room else np.zeros(room + 1)
        ways = csum - shifted[:room + 1]
    return int(round(ways.sum()))


def listing(lo: np.ndarray, hi: np.ndarray, budget: int) -> np.ndarray:
    """Those allocations, one per row (lexicographic order)."""
    lo_i, hi_i = lo.astype(int), hi.astype(int)
    spans = hi_i - lo_i + 1
    if np.prod(spans.astype(float)) <= BOX_LIMIT:  # the whole box at once, then the budget: fewer numpy calls
        rows = np.indices(tuple(spans)).reshape(len(spans), -1).T + lo_i
        return rows[rows.sum(axis=1) <= budget].astype(float)
    # Level by level, each partial allocation extended by exactly the values the budget leaves room for
    # (what the later levels' minimums need kept back): nothing is generated only to be filtered out.
    rest = np.concatenate((np.cumsum(lo_i[::-1])[::-1][1:], [0]))  # the later levels' minimums
    cols: list[np.ndarray] = []
    used = np.zeros(1, dtype=int)
    for j in range(len(lo_i)):
        top = np.minimum(hi_i[j], budget - used - rest[j])
        counts = np.maximum(top - lo_i[j] + 1, 0)
        parent = np.repeat(np.arange(len(used)), counts)
        vals = lo_i[j] + np.arange(len(parent)) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = [c[parent] for c in cols] + [vals]
        used = used[parent] + vals
    return np.stack(cols, axis=1).astype(float) if cols else np.zeros((1, 0))
