"""Property-based tests (hypothesis) of solve() over random synthetic snapshots.

Cases:
- the GPU budget is never exceeded and cache-k0 keeps its minimum replicas;
- redirection rows sum to 1, and no load goes to a level that breaks its prompts' floor unless
  the decision is flagged as overload;
- served + shed equals the planned demand;
- the matrix applied to h_k at the demand overfills no level unless overloaded, and then no level
  beyond the utilization the levels every row may reach must bear;
- more GPUs never lower the achievable quality at the same demand (without overload), and raise the
  shed rate by no more than the trade its price allows;
- regression: a level without replicas gets no route when HiGHS leaves 1e-7 of dust there (seed 6,
  1 GPU, 5 levels, a queue at steps-20);
- identical snapshots give identical decisions;
- under constant load the decision does not change from one period to the next (no flapping), within
  the dwell time and past it; two snapshots where a node-limited first search used to be improved on
  in the next period (regression).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argus.policy.optimizer import solve
from argus.policy.redirection import violations
from bench.synthetic import random_snapshot

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


SEEDS = st.integers(0, 2**32 - 1)
LEVELS = st.sampled_from([1, 2, 3, 4, 5, 6, 9])


def _snap(seed: int, gpus: int, n: int, queues: bool):
    """A random snapshot: load 0.2..2.6x full-quality capacity, random h_k (and queues)."""
    return random_snapshot(random.Random(seed), gpus, n, queues=queues)


def _demand(s):
    planned = min(s.demand, s.throughput_target)
    return {k: planned * v for k, v in s.h.items()}


@FAST
@given(SEEDS, st.integers(1, 16), LEVELS, st.booleans())
def test_budget_floor_and_rows(seed, gpus, n, queues):
    s = _snap(seed, gpus, n, queues)
    d = solve(s)
    assert sum(d.replicas.values()) <= s.gpus
    assert d.replicas["cache-k0"] >= s.min_full_quality
    for row in d.redirection.values():
        assert sum(row.values()) == pytest.approx(1.0)
    if not d.overload:
        assert violations(s.levels, d.redirection, _demand(s)) == []
        assert d.shed_rate == 0 and d.degraded_rate == 0
    assert d.throughput + d.shed_rate == pytest.approx(d.planned, rel=1e-6, abs=1e-9)
    _no_needless_overfill(s, d)


def test_no_route_to_a_level_without_replicas_from_lp_dust():
    s = _snap(6, 1, 5, True)
    d = solve(s)
    assert d.replicas["steps-20"] == 0 and d.served_by_level["steps-20"] == 0.0
    _no_needless_overfill(s, d)


def _no_needless_overfill(s, d):
    """The matrix applied to h_k at the snapshot's demand fills no level beyond capacity unless overloaded;
    then no level beyond max(1, demand / capacity of the levels every row may reach)."""
    cap = {p.level: d.replicas[p.level] * p.peak_throughput if p.service_time < s.latency_slo else 0.0
           for p in s.profiles}
    routed = dict.fromkeys(s.levels, 0.0)
    for k, share in s.h.items():
        for dst, p in d.redirection[k].items():
            routed[dst] += s.demand * share * p
    common = sum(c for k, c in cap.items() if not (k.startswith("cache-k") and k != "cache-k0"))
    if not d.overload and s.demand <= s.throughput_target:
        limit = 1.0
    elif common > 0:
        limit = max(1.0, s.demand / common)
    else:
        return
    for k in s.levels:
        assert routed[k] <= cap[k] * limit * (1 + 1e-6) + 1e-9, (k, routed, cap)


@FAST
@given(SEEDS, st.integers(1, 8), LEVELS, st.booleans(), st.integers(1, 4))
def test_more_gpus_never_lower_quality(seed, gpus, n, queues, extra):
    s = _snap(seed, gpus, n, queues)
    small, big = solve(s), solve(s.with_(gpus=s.gpus + extra))
    # Shedding is priced (milp.P_SHED), not forbidden: a new GPU may trade a sliver of shed load for
    # quality, bounded by the quality range over the price (~12 / 1100 of the planned load).
    assert big.shed_rate <= small.shed_rate + 0.012 * big.planned + 1e-9
    if not small.overload:
        assert not big.overload
        if small.quality is not None:
            assert big.quality >= small.quality - 1e-2  # percent; the search tolerance is 1e-4 relative


@FAST
@given(SEEDS, st.integers(1, 16), LEVELS, st.booleans())
def test_identical_snapshots_identical_decisions(seed, gpus, n, queues):
    s = _snap(seed, gpus, n, queues)
    assert solve(s).to_dict() == solve(s.with_()).to_dict()


def _assert_no_flap(s):
    d1 = solve(s)
    # Next period, within the dwell time, and later periods past it: the same allocation every time.
    now = s.now + 15.0
    assert solve(s.with_(current=d1.replicas, last_change=s.now, now=now)).replicas == d1.replicas
    for _ in range(3):
        now += 600.0
        assert solve(s.with_(current=d1.replicas, last_change=s.now, now=now)).replicas == d1.replicas


@FAST
@given(SEEDS, st.integers(1, 64), LEVELS, st.booleans())
def test_no_flapping_under_constant_load(seed, gpus, n, queues):
    _assert_no_flap(_snap(seed, gpus, n, queues))


@pytest.mark.parametrize("seed, gpus, n", [(204, 51, 9), (712, 38, 5)])
def test_no_flapping_where_a_node_limited_search_used_to_improve_next_period(seed, gpus, n):
    """Regression: the first search stopped at its node limit (one declared overload although a safe
    allocation existed); the next period's warm search found one better by more than the hysteresis
    threshold and moved. The first answer is now settled to within that threshold."""
    _assert_no_flap(_snap(seed, gpus, n, True))
