"""Optimality of solve() against independent references.

Cases:
- small instances (<= 8 GPUs, <= 6 levels): the objective equals exhaustive enumeration of every
  allocation with sum <= GPUs (each scored by the same model with replicas fixed), and the overload
  flag agrees with "no allocation serves everything safely"; within the search tolerance;
- the same with prompt classes (per-class qualities, cache-hit depths), where the search is outer
  approximation from the root's rounding with the capacity bound;
- the capacity bound (milp.Formulation.capacity_bound) never exceeds the LP value of an allocation, in
  either model, with and without classes, queues and running allocations;
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
from bench.synthetic import random_classes, random_snapshot


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


CLASS_CASES = [(0, 3, 3), (1, 4, 5), (2, 5, 5), (3, 6, 4), (4, 5, 6), (5, 8, 3)]


@pytest.mark.parametrize("seed, gpus, n, classes", [c + (0,) for c in CASES] + [c + (6,) for c in CLASS_CASES])
def test_small_instances_match_exhaustive_enumeration(seed, gpus, n, classes):
    s = random_snapshot(random.Random(seed), gpus, n, queues=seed % (2 if classes else 3) == 0)
    if classes:  # per-class qualities and hit depths: outer approximation from the root's rounding, capacity bound
        s = random_classes(s, classes, np.random.default_rng(seed))
    d = solve(s)
    best = exhaustive(s, overload=False)
    overload = best is None
    if overload:
        best = exhaustive(s, overload=True)
    assert d.overload == overload
    assert d.objective == pytest.approx(best, abs=d.tolerance + 1e-7)


def test_capacity_bound_is_below_every_lp_value():
    rng, nrng = random.Random(7), np.random.default_rng(7)
    checked = 0
    for _ in range(40):
        s = random_snapshot(rng, rng.choice([3, 8]), rng.choice([3, 5, 6]), queues=rng.random() < 0.5)
        if rng.random() < 0.5:
            s = random_classes(s, rng.choice([3, 12]), nrng)
        if rng.random() < 0.5:
            s = s.with_(current={k: 1 for k in s.levels[:2]})
        for overload in (False, True):
            f = milp.build(s, overload=overload)
            xs = f.listing()
            xs = xs[nrng.choice(len(xs), size=min(15, len(xs)), replace=False)]
            for x, low in zip(xs, f.capacity_bound(xs)):
                r = f.lp().solve(x, x)
                if r is not None:
                    checked += 1
                    assert low <= r[0] + 1e-7 * (1 + abs(r[0]))
    assert checked > 300


def test_beyond_capacity_proves_the_safe_relaxation_infeasible():
    """The test without an LP says infeasible only where the safe LP relaxation is, and catches the
    capacity-short snapshots (with queues, budgets and classes alike)."""
    rng, nrng = random.Random(11), np.random.default_rng(11)
    caught = infeasible = 0
    for _ in range(120):
        s = random_snapshot(rng, rng.choice([2, 3, 8]), rng.choice([3, 5, 6]), queues=rng.random() < 0.5)
        if rng.random() < 0.5:
            s = random_classes(s, rng.choice([3, 12, 24]), nrng)
        f, lp_only = milp.build(s, overload=False), milp.build(s, overload=False)
        relaxed = lp_only.lp().solve(lp_only.lp().lo0, lp_only.lp().hi0)
        infeasible += relaxed is None
        if f.beyond_capacity:
            caught += 1
            assert relaxed is None
            assert milp.run(f, relax=True) is None and milp.run(f) is None
        assert not milp.build(s, overload=True).beyond_capacity  # the overload model is always feasible
    assert caught >= 0.8 * infeasible and caught >= 20, (caught, infeasible)


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
