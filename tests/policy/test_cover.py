"""The covering search (argus.policy.solver.cover) and its dynamic program (argus.policy.solver.safe_dp) against HiGHS's MIP.

Cases:
- random snapshots (1-64 GPUs, 3-12 levels, with and without queues): the dynamic program and the
  covering search say a safe allocation exists exactly when HiGHS's MIP finds one for the safe
  model; every allocation they return is within the budget, the box, and feasible for the
  safe model's LP with replicas fixed;
- reaches that are not nested (at level 2, load that may go on to level 0 only competes with load that
  may go on to level 1 only): the dynamic program answers neither an allocation nor a proof;
- bench instances (64 GPUs x 12 levels, seed 1) whose short safe search gives up although HiGHS's MIP
  finds a safe allocation: solve() serves them safely (it declared overload before the covering search).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from argus.policy.solver import cover, milp
from argus.policy.solver.fixed import FEAS_TOL
from argus.policy.optimizer import solve
from argus.policy.solver.safe_dp import fewest_gpus
from bench.synthetic import random_snapshot


def _dp(f: milp.Formulation):
    ev = f.evaluator()
    lo = np.maximum(f.bounds_lo[:f.n], np.ceil((ev.backlog - FEAS_TOL) / (ev.throughput + ev.credit) - 1e-12))
    return fewest_gpus(ev.reach, ev.demand, ev.throughput, ev.backlog, lo, f.bounds_hi[:f.n], f.gpus,
                       credit=ev.credit)


def _assert_safe(f: milp.Formulation, x: np.ndarray) -> None:
    assert x.sum() <= f.gpus
    assert np.all(x >= f.bounds_lo[:f.n]) and np.all(x <= f.bounds_hi[:f.n])
    assert milp.run(f, fixed_x=x) is not None


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_the_highs_mip(seed):
    rng = random.Random(seed)
    decided = proofs = 0
    for _ in range(30):
        gpus, n = rng.choice([1, 3, 4, 8, 16, 64]), rng.choice([3, 4, 5, 6, 9, 12])
        s = random_snapshot(rng, gpus, n, load=rng.uniform(0.6, 2.0), queues=rng.random() < 0.5)
        f = milp.build(s, overload=False)
        if milp.run(f, relax=True) is None:
            continue  # not even fractional replicas: the optimizer never asks
        exists = milp.run_highs_milp(milp.build(s, overload=False)) is not None
        x, proven = _dp(f)
        if x is not None or proven:  # else past its state limit (a loose budget at 64 GPUs)
            assert (x is not None) == exists
            decided += 1
            proofs += proven
        if x is not None:
            _assert_safe(f, x)
        c = milp.safe_allocation(f)
        assert c.proven <= (not exists) and (c.x is not None) <= exists
        if c.x is not None:
            _assert_safe(f, c.x)
    assert decided >= 10 and proofs >= 1


def test_reaches_that_are_not_nested_get_no_answer():
    reach = {2: 0b0101, 3: 0b1110}  # optimal level 2 may use levels 0 and 2, level 3 may use 1-3
    one = np.ones(4)
    x, proven = fewest_gpus(reach, np.array([0.0, 0.0, 1.0, 1.0]), one, np.zeros(4), np.zeros(4), 4 * one, 4)
    assert x is None and not proven


@pytest.mark.parametrize("index", [42, 260, 377])
def test_safe_where_the_short_search_gave_up(index):
    rng = random.Random(1)
    snaps = [random_snapshot(rng, 64, 12) for _ in range(index + 1)]
    s = snaps[index]
    f = milp.build(s, overload=False)
    assert milp.run(f, give_up=32) is None  # the short safe search alone finds nothing
    assert milp.run_highs_milp(milp.build(s, overload=False)) is not None
    d = solve(s)
    assert not d.overload
    _assert_safe(f, np.minimum(np.array([d.replicas[k] for k in s.levels], dtype=float), f.bounds_hi[:f.n]))
