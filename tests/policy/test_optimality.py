"""Optimality of solve() against independent references.

Cases:
- small instances (<= 8 GPUs, <= 6 levels): the objective equals exhaustive enumeration of every
  allocation with sum <= GPUs (each scored by the same model with replicas fixed), and the overload
  flag agrees with "no allocation serves everything safely"; within the search tolerance;
- HiGHS's own MIP solver on the same model agrees on a few small instances;
- large instances (1024 GPUs and 64 GPUs, 12 levels): the objective is within 1% of the LP
  relaxation bound.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from argus.policy.solver import milp
from argus.policy.optimizer import lp_bound, solve
from bench.synthetic import random_snapshot


def allocations(gpus: int, n: int):
    """Every x in N^n with sum(x) <= gpus (stars and bars)."""
    for bars in itertools.combinations(range(gpus + n), n):
        prev, x = -1, []
        for b in bars:
            x.append(b - prev - 1)
            prev = b
        yield x


def exhaustive(s, overload: bool) -> float | None:
    """Best objective over all allocations with the model's flows solved for each; None if none fits."""
    f = milp.build(s, overload=overload)
    best = None
    for x in allocations(s.gpus, len(s.levels)):
        sol = milp.run(f, fixed_x=np.array(x, dtype=float))
        if sol is not None and (best is None or sol.objective > best):
            best = sol.objective
    return best


CASES = [(seed, gpus, n) for seed, (gpus, n) in enumerate(
    [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (6, 4), (8, 2), (8, 3), (4, 6), (5, 5), (6, 5), (7, 4)])]


@pytest.mark.parametrize("seed, gpus, n", CASES)
def test_small_instances_match_exhaustive_enumeration(seed, gpus, n):
    s = random_snapshot(random.Random(seed), gpus, n, queues=seed % 3 == 0)
    d = solve(s)
    best = exhaustive(s, overload=False)
    overload = best is None
    if overload:
        best = exhaustive(s, overload=True)
    assert d.overload == overload
    tol = d.tolerance + 1e-7
    assert d.objective == pytest.approx(best, abs=tol)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_highs_mip(seed):
    s = random_snapshot(random.Random(100 + seed), 8, 6)
    d = solve(s)
    ref = milp.run_highs_milp(milp.build(s, overload=d.overload))
    assert ref is not None
    assert d.objective == pytest.approx(ref.objective, abs=d.tolerance + 1e-7)


@pytest.mark.parametrize("gpus, seed", [(1024, 0), (1024, 1), (1024, 2), (64, 3), (64, 4)])
def test_large_instances_within_one_percent_of_lp_bound(gpus, seed):
    s = random_snapshot(random.Random(seed), gpus, 12)
    d = solve(s)
    bound = lp_bound(s, overload=d.overload)
    assert bound is not None and bound >= d.objective - 1e-6
    assert (bound - d.objective) <= 0.01 * abs(bound)
