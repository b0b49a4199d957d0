"""solve(): behaviour on hand-built SDXL snapshots.

Cases:
- light load: every request at full quality, spare GPUs kept at cache-k0, no overload;
- heavier load: the GPU budget binds and load moves to approximate levels only within floors;
- strategy switching: the same demand with cache hits fills cache levels; a burst of new prompts
  (no hits) moves the capacity to step reduction;
- overload: explicit flag, shed rate and degraded rate, and a reason that says so;
- at least minFullQualityReplicas of cache-k0, and none when the spec says 0;
- Little's law: a queue at a level reserves capacity to drain it within the SLO; a level whose
  service time exceeds the SLO gets no replicas; latency per level stays within the SLO;
- demand above the target is planned at the target;
- hysteresis: a working allocation is kept within its dwell time, also one that serves everything but
  degrades some of it (more quality can wait); a change that gains little is skipped; a current
  allocation that sheds load is replaced at once;
- redirection: rows sum to 1 and excess demand of a level goes to a safer level first;
- redirection at the paper plateau (regression): applied to the actual h_k at the actual demand
  (the plan's demand over the 1.2 headroom) no level is filled beyond capacity, and at the planned
  demand every level is equally full; demand beyond the throughput target lands on spare capacity,
  on safe levels only unless overload is declared;
- the decision turns into a valid PolicyDocument.
"""

from __future__ import annotations

import pytest
from tests.support.snapshots import snap

from argus.policy.decision import to_policy_document
from argus.policy.document import parse_policy
from argus.policy.optimizer import solve
from argus.policy.redirection import violations
from argus.policy.snapshot import Hysteresis

HITS = {"cache-k0": 0.1, "cache-k10": 0.2, "cache-k20": 0.3, "cache-k25": 0.4}
NO_HITS = {"cache-k0": 0.1, "steps-35": 0.2, "steps-25": 0.3, "steps-20": 0.4}


def _demand_by_level(s):
    planned = min(s.demand, s.throughput_target)
    return {k: planned * v for k, v in s.h.items()}


def test_light_load_is_served_at_full_quality():
    d = solve(snap(demand=1.0))
    assert d.replicas["cache-k0"] == 8 and sum(d.replicas.values()) == 8
    assert d.quality == pytest.approx(100.0) and not d.overload and d.shed_rate == 0
    assert d.throughput == pytest.approx(1.0)
    assert "full quality" in d.reason


def test_budget_binds_and_floors_hold():
    s = snap(demand=3.5)
    d = solve(s)
    assert sum(d.replicas.values()) <= 8 and not d.overload
    assert 91.52 < d.quality < 100
    assert violations(s.levels, d.redirection, _demand_by_level(s)) == []
    assert "GPU budget binds" in d.reason


def test_strategy_switches_with_cache_hits():
    hits = solve(snap(demand=4.0, h=HITS))
    burst = solve(snap(demand=4.0, h=NO_HITS))
    cache_gpus = sum(hits.replicas[k] for k in ("cache-k5", "cache-k10", "cache-k15", "cache-k20", "cache-k25"))
    step_gpus = sum(burst.replicas[k] for k in ("steps-35", "steps-25", "steps-20"))
    assert cache_gpus >= 3 and sum(hits.replicas[k] for k in NO_HITS if k != "cache-k0") == 0
    assert step_gpus >= 3 and sum(burst.replicas[k] for k in HITS if k != "cache-k0") == 0
    assert not hits.overload and not burst.overload
    assert "step reduction 0%" in hits.reason and "approximate caching 0%" in burst.reason


def test_overload_is_explicit():
    s = snap(demand=12.0, h=NO_HITS)  # 8 GPUs at steps-20 serve at most ~7.9 req/s
    d = solve(s)
    assert d.overload and d.shed_rate > 3.0
    assert d.throughput + d.shed_rate == pytest.approx(12.0, rel=1e-6)
    assert d.reason.startswith("OVERLOAD") or "OVERLOAD" in d.reason
    assert "must be shed or queued" in d.reason


def test_overload_degrades_before_shedding():
    # Only full-quality prompts; 8 GPUs at cache-k0 serve 3.15 req/s, at steps-20 7.86 req/s.
    d = solve(snap(demand=5.0, h={"cache-k0": 1.0}))
    assert d.overload and d.shed_rate == 0 and d.degraded_rate > 0
    assert d.throughput == pytest.approx(5.0)


@pytest.mark.parametrize("m", [0, 1, 3])
def test_full_quality_replicas_floor(m):
    d = solve(snap(demand=7.0, h=NO_HITS, min_full_quality=m))
    assert d.replicas["cache-k0"] >= m
    if m == 0:
        assert d.replicas["cache-k0"] == 0  # every GPU is needed elsewhere


def test_queue_reserves_capacity_by_littles_law():
    base = solve(snap(demand=2.0, h={"cache-k0": 1.0}, gpus=24))
    queued = solve(snap(demand=2.0, h={"cache-k0": 1.0}, gpus=24, queues={"cache-k0": 200.0}))
    # 200 requests in flight at cache-k0 (SLO 30 s, service 4.2 s: slack 25.8 s). Each replica holds a
    # batch of 8 in service; the other 200 - 8x drain within the slack on top of the 2 req/s arriving:
    # 0.3933 x >= 2 + (200 - 8x) / 25.8 needs x >= 10.2, so 11 full-quality replicas carry load.
    assert not queued.overload
    x = queued.replicas["cache-k0"]
    assert x >= 11 and x * (23.6 / 60) >= queued.served_by_level["cache-k0"] + max(0.0, 200 - 8 * x) / 25.8 - 1e-6
    assert base.latency["cache-k0"] == pytest.approx(4.2)
    assert "Little's law" in queued.reason or x * 8 >= 200
    over = solve(snap(demand=2.0, h={"cache-k0": 1.0}, gpus=8, queues={"cache-k0": 200.0}))
    assert over.overload and "backlog" in over.reason  # 8 replicas: 2 + 136 / 25.8 = 7.3 req/s > 3.1


def test_requests_in_service_are_not_backlog():
    # 2 req/s need 6 full-quality replicas (0.3933 req/s each). 40 requests in flight fit in their
    # batches (6 x 8 = 48 in service): they finish within their service time and need no capacity beyond
    # the arrivals'. Counting them as backlog reserved 40 / 25.8 = 1.55 req/s and declared overload.
    d = solve(snap(demand=2.0, h={"cache-k0": 1.0}, gpus=6, queues={"cache-k0": 40.0}))
    assert not d.overload and d.backlog_excess == 0.0 and d.replicas["cache-k0"] == 6
    assert "Little's law" not in d.reason
    # 100 in flight: 52 beyond the batches drain at 52 / 25.8 = 2.0 req/s, which 6 replicas do not have.
    assert solve(snap(demand=2.0, h={"cache-k0": 1.0}, gpus=6, queues={"cache-k0": 100.0})).overload


def test_level_slower_than_slo_is_not_used():
    # SLO 3 s: cache levels (>= 2.1 s only for K=25) and steps-35 (2.94 s) are close; cache-k0 (4.2 s) is out.
    d = solve(snap(demand=1.0, latency_slo=3.0, h={"steps-25": 1.0}, min_full_quality=0))
    assert d.replicas["cache-k0"] == 0 and not d.overload
    assert all(lat is None or lat <= 3.0 for lat in d.latency.values())
    assert sum(d.replicas.values()) == 8  # spare GPUs go to the safest level that meets the SLO


def test_demand_above_target_is_planned_at_target():
    d = solve(snap(demand=50.0, throughput_target=2.0))
    assert d.planned == 2.0 and d.throughput == pytest.approx(2.0) and not d.overload
    assert "exceeds the target" in d.reason


def test_dwell_keeps_a_working_allocation():
    first = solve(snap(demand=3.5))  # an approximate mix; then demand drops and it still serves safely
    cheap = Hysteresis(min_dwell_s=60.0, min_gain=0.0, amortize_s=1e9)  # only the dwell time holds it
    s = snap(demand=2.8, current=first.replicas, last_change=990.0, hysteresis=cheap)
    kept = solve(s)
    assert kept.replicas == first.replicas and not kept.changed and "dwell" in kept.reason
    later = solve(s.with_(last_change=800.0))
    assert later.changed and later.quality > kept.quality


def test_small_gain_is_not_worth_a_change():
    mix = solve(snap(demand=3.5)).replicas  # an approximate mix that still serves 3.0 req/s safely
    fresh = solve(snap(demand=3.0))
    assert fresh.replicas != mix and fresh.quality == pytest.approx(100.0)
    # Switching cost: two reloads of 47 s outweigh the quality the move would buy.
    kept = solve(snap(demand=3.0, current=mix, last_change=0.0))
    assert kept.replicas == mix and not kept.changed and kept.quality < fresh.quality
    # Without switching cost, the relative-gain threshold holds it, and the reason says so.
    free = Hysteresis(min_dwell_s=0.0, min_gain=0.05, amortize_s=1e9)
    held = solve(snap(demand=3.0, current=mix, last_change=0.0, hysteresis=free))
    assert held.replicas == mix and "hysteresis: kept current allocation" in held.reason
    moved = solve(snap(demand=3.0, current=mix, last_change=0.0, hysteresis=Hysteresis(0.0, 0.0, 1e9)))
    assert moved.replicas == fresh.replicas and moved.changed


def test_overloaded_current_allocation_is_replaced_within_dwell():
    s = snap(demand=4.5, h=NO_HITS, current={"cache-k0": 8}, last_change=995.0)
    d = solve(s)
    assert d.changed and not d.overload


def test_degraded_but_serving_allocation_is_kept_within_dwell():
    # Every prompt keyed at full quality (a router without a predictor): the burst's mix served part of
    # it at steps-20 (degraded: an overload plan). The burst is over, 8 x cache-k0 serves it all at full
    # quality, but the move waits for the dwell time: moving back at once is how a loop flaps.
    burst = {"cache-k0": 4, "steps-20": 4}
    cheap = Hysteresis(min_dwell_s=60.0, min_gain=0.0, amortize_s=1e9)
    s = snap(demand=2.5, h={"cache-k0": 1.0}, current=burst, last_change=990.0, hysteresis=cheap)
    kept = solve(s)
    assert {k: v for k, v in kept.replicas.items() if v} == burst and not kept.changed and "dwell" in kept.reason
    assert kept.degraded_rate > 0 and kept.shed_rate == 0
    later = solve(s.with_(last_change=900.0))
    assert later.changed and later.replicas["cache-k0"] >= 7 and later.quality == pytest.approx(100.0)


def test_excess_goes_to_a_safer_level_first():
    s = snap(demand=4.0, h={"cache-k0": 0.2, "cache-k10": 0.2, "cache-k25": 0.6})
    d = solve(s)
    for row in d.redirection.values():
        assert sum(row.values()) == pytest.approx(1.0)
    # Load whose optimal level is cache-k25 is served at cache-k25 or safer, never more approximate.
    assert set(d.redirection["cache-k25"]) <= {"cache-k0", "cache-k5", "cache-k10", "cache-k15",
                                                "cache-k20", "cache-k25"}
    assert violations(s.levels, d.redirection, _demand_by_level(s)) == []


def test_policy_document_from_decision():
    s = snap(demand=3.5)
    d = solve(s)
    doc = to_policy_document(d, service="svc", version=3, quality_floor=s.quality_floor,
                             latency_slo_s=s.latency_slo, image_size="64x64", generated_at=s.now)
    again = parse_policy(doc.to_json())
    assert again.allocation == d.replicas and again.levels == s.levels and again.version == 3


# The simulator's prompt mix at the 390 q/min plateau (bench_sim.redirection_check, 100k prompts).
PLATEAU_H = {"cache-k0": 0.0353, "cache-k5": 0.0651, "cache-k10": 0.0283, "cache-k15": 0.0356,
             "cache-k20": 0.0177, "cache-k25": 0.0127, "steps-35": 0.1847, "steps-25": 0.1258,
             "steps-20": 0.4948}


def _routed(s, d, rate):
    out = dict.fromkeys(s.levels, 0.0)
    for k, share in s.h.items():
        for dst, p in d.redirection[k].items():
            out[dst] += rate * share * p
    return out


def _capacity(s, d):
    return {lp.level: d.replicas[lp.level] * lp.peak_throughput for lp in s.profiles}


def test_plateau_matrix_does_not_overfill_cache_k0():
    """Regression: 390 q/min x 1.2 headroom on 8 GPUs; the plan sheds 0.53 req/s with no spare capacity.

    The old matrix sent the shed share of the cache-hit rows along their served level, cache-k0:
    0.768 req/s at the actual 6.5 req/s onto a capacity of 0.393 while steps-20 had 0.7 spare.
    """
    actual = 390 / 60
    s = snap(demand=actual * 1.2, h=PLATEAU_H, current={"cache-k0": 1, "steps-20": 7}, last_change=0.0)
    d = solve(s)
    assert d.overload and d.shed_rate > 0.4
    cap = _capacity(s, d)
    at_actual = _routed(s, d, actual)
    assert all(at_actual[k] <= cap[k] * (1 + 1e-9) for k in s.levels), (at_actual, cap)
    at_planned = _routed(s, d, s.demand)
    t = s.demand / sum(cap.values())  # every row may reach both levels: equal utilization is the best
    for k in s.levels:
        if cap[k] > 0:
            assert at_planned[k] / cap[k] == pytest.approx(t, rel=1e-6)


def test_demand_beyond_target_goes_to_spare_capacity():
    """Planned at the target (0.9 req/s); the other 0.4 still arrives and must not overfill cache-k0."""
    s = snap(gpus=2, levels=["cache-k0", "steps-20"], demand=1.3, h={"steps-20": 1.0}, throughput_target=0.9)
    d = solve(s)
    assert d.planned == pytest.approx(0.9) and d.replicas == {"cache-k0": 1, "steps-20": 1}
    cap = _capacity(s, d)
    routed = _routed(s, d, s.demand)
    # The plan fills cache-k0 (best quality) at the target; the rest belongs on steps-20's spare capacity
    # (the served proportions alone would send 0.57 req/s to cache-k0's 0.39).
    assert routed["cache-k0"] == pytest.approx(cap["cache-k0"])
    assert all(routed[k] <= cap[k] * (1 + 1e-9) for k in s.levels)


def test_demand_beyond_target_stays_on_safe_levels_without_overload():
    """No declared overload: load beyond the target keeps its prompts' floor even when only a more
    approximate level has spare capacity (cache-k0 gets it all, overfilled; steps-20 gets none)."""
    s = snap(gpus=3, levels=["cache-k0", "steps-20"], demand=1.0, h={"cache-k0": 1.0}, throughput_target=0.5,
             current={"cache-k0": 2, "steps-20": 1}, last_change=990.0)
    d = solve(s)
    assert not d.overload and d.replicas == {"cache-k0": 2, "steps-20": 1}
    assert violations(s.levels, d.redirection, {"cache-k0": s.demand}) == []
    assert d.redirection["cache-k0"] == {"cache-k0": 1.0}
