"""The combinatorial evaluation of fixed allocations (argus.policy.solver.fixed) against HiGHS on the same model.

Cases:
- random snapshots (1-64 GPUs, 1-12 levels, with and without queues, cold and with a running
  allocation so switching costs count): every random allocation within the budget gets the same
  objective as the safe model's LP with replicas fixed, or is infeasible in both;
- the rounded LP relaxation (floor, ceil, nearest), which sits at the feasibility edge, agrees too;
- a level too slow for the latency SLO: demand that can only go there makes every allocation infeasible;
- the allocation listing (argus.policy.solver.allocations) counts and lists exactly the box points within
  budget, in boxes small enough to list at once and in larger ones (listed level by level);
- the LP cuts of bnb.outer_approximation and of the branch and bound's pruning (objective + reduced
  costs of x, from the relaxation and from fixed allocations) never exceed the objective of any
  allocation, at a point or over a box, in both models, with queues (overload) and switching costs.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from tests.support.snapshots import snap

from argus.policy.solver import allocations, milp
from argus.policy.solver.bnb import _Cuts
from bench.synthetic import random_snapshot


def _check(f: milp.Formulation, xs: list[np.ndarray]) -> int:
    """Assert agreement on every allocation; return how many are feasible."""
    values = f.evaluator().values(np.array(xs))
    feasible = 0
    for x, v in zip(xs, values):
        sol = milp.run(f, fixed_x=x)
        if sol is None:
            assert v == -np.inf, x
        else:
            feasible += 1
            assert v == pytest.approx(sol.objective, abs=1e-6), x
    return feasible


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_fixed_replica_lp(seed):
    rng = random.Random(seed)
    feasible = total = 0
    for _ in range(25):
        gpus, n = rng.choice([1, 3, 8, 16, 64]), rng.choice([1, 2, 3, 4, 5, 6, 9, 12])
        s = random_snapshot(rng, gpus, n, queues=rng.random() < 0.5)
        if rng.random() < 0.5:
            s = s.with_(current={k: rng.randint(0, 3) for k in s.levels})
        f = milp.build(s, overload=False)
        hi = np.where(f.usable, np.minimum(f.bounds_hi[:n] + 2, gpus), 0.0)
        xs = [np.array([rng.randint(int(f.bounds_lo[j]), int(max(hi[j], f.bounds_lo[j]))) for j in range(n)],
                       dtype=float) for _ in range(12)]
        relaxed = milp.run(f, relax=True)
        if relaxed is not None:
            xs += [np.floor(relaxed.x + 1e-9), np.ceil(relaxed.x - 1e-9), np.round(relaxed.x)]
        xs = [x for x in xs if x.sum() <= gpus and np.all(x >= f.bounds_lo[:n])]
        if xs:
            feasible += _check(f, xs)
            total += len(xs)
    assert 0 < feasible < total  # both outcomes exercised


def test_demand_only_a_too_slow_level_may_serve_is_infeasible():
    # cache-k25 prompts may go to cache-k0 and cache-k25; a 2 s SLO rules out both (slower than that).
    s = snap(gpus=4, levels=["cache-k0", "cache-k25", "steps-20"], demand=0.5, latency_slo=2.0,
             h={"cache-k25": 1.0})
    f = milp.build(s, overload=False)
    assert _check(f, [np.array([1.0, 0.0, 3.0]), np.array([4.0, 0.0, 0.0])]) == 0


def _within(lo, hi, budget):
    """Every integer point of the box with sum <= budget, lexicographic, by recursion (no box product)."""
    if not len(lo):
        return [()]
    top = min(int(hi[0]), budget - int(sum(lo[1:])))
    return [(v,) + rest for v in range(int(lo[0]), top + 1) for rest in _within(lo[1:], hi[1:], budget - v)]


# (levels, lower bound, span, budget) ranges: small boxes are listed at once, large ones level by level
BOXES = {"small": ((1, 5), (0, 2), (0, 4), (0, 12)), "large": ((6, 7), (0, 1), (4, 9), (4, 10))}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("size", sorted(BOXES))
def test_listing_is_every_box_point_within_budget(seed, size):
    rng = random.Random(seed)
    levels, low, span, budgets = BOXES[size]
    for _ in range(30):
        n = rng.randint(*levels)
        lo = np.array([rng.randint(*low) for _ in range(n)], dtype=float)
        hi = lo + np.array([rng.randint(*span) for _ in range(n)])
        budget = rng.randint(*budgets)
        assert (np.prod(hi - lo + 1) > allocations.BOX_LIMIT) == (size == "large")
        brute = _within(lo, hi, budget)
        assert allocations.count(lo, hi, budget) == len(brute)
        assert [tuple(r) for r in allocations.listing(lo, hi, budget).astype(int)] == brute


@pytest.mark.parametrize("seed, overload", [(0, True), (1, True), (2, False), (3, True), (4, False)])
def test_lp_cuts_bound_every_allocation(seed, overload):
    rng = random.Random(seed)
    s = random_snapshot(rng, 4, 4, load=None if overload else 0.8, queues=overload and seed % 2 == 0)
    if seed >= 3:
        s = s.with_(current={k: 1 for k in s.levels})
    f = milp.build(s, overload=overload)
    lp = f.lp()
    xs = allocations.listing(lp.lo0, lp.hi0, f.gpus)
    exact = np.array([np.inf if r is None else r[0] for r in (lp.solve(x, x) for x in xs)])
    assert np.isfinite(exact).any()
    cuts = [(lp.lo0, lp.hi0)] + [(x, x) for x, v in zip(xs, exact) if np.isfinite(v)]
    for lo, hi in cuts:
        obj, cols = lp.solve(lo, hi)
        lower = obj + (xs - cols[:f.n]) @ lp.slope(lo, hi)
        assert np.all(lower <= exact + 1e-6)
    # The branch and bound's use of them: at a point, and over a box (its left half on the first level).
    root = lp.solve(lp.lo0, lp.hi0)
    kept = _Cuts(root[1][:f.n], lp.slope(lp.lo0, lp.hi0), root[0])
    for lo, hi in cuts[1:]:
        obj, cols = lp.solve(lo, hi)
        kept.add(cols[:f.n], lp.slope(lo, hi), obj)
    assert all(kept.at(x) <= v + 1e-6 for x, v in zip(xs, exact))
    half = lp.hi0.copy()
    half[0] = (lp.lo0[0] + lp.hi0[0]) // 2
    inside = np.all(xs <= half, axis=1)
    assert kept.over_box(lp.lo0, half) <= exact[inside].min() + 1e-6
