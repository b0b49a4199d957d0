"""Moves that pay, in the control period (argus.control.loop.plan): the same rule the operator, the local
runtime and the simulator run. Two slots at full quality (1 req/s each), a level twice as fast, 20 s reloads,
a 12 s SLO: the local system's shape (bench/bench_local.py). The spec turns late rungs
(argus.policy.lateness) off; one case shows that they leave the weighing alone, the last what they do to the
router's shares past what every replica serves at its fastest rung."""

import pytest

from argus.control.loop import dwell_s, plan
from argus.control.observed import MetricsSnapshot as M
from argus.control.state import ControlState
from argus.policy.demand import DemandState
from argus.policy.profile import LevelProfile
from argus.spec import parse_spec

PROFILES = (LevelProfile("cache-k0", {1: 1.0}, 1.0, 100.0, "m", load_time=20.0),
            LevelProfile("steps-10", {1: 2.0}, 0.5, 85.0, "m", load_time=20.0))
RAW = {"throughputTarget": 10, "gpus": 2, "levels": ["cache-k0", "steps-10"], "controlPeriod": 5, "latencySLO": 12,
       "qualityFloor": 80, "model": {"steps": 20}, "lateRungs": False}
SPEC = parse_spec(RAW)  # burstHorizon 120 s (the default)
SHORT = parse_spec({**RAW, "burstHorizon": 60})  # a service whose bursts are expected to be short
FULL = {"cache-k0": 2, "steps-10": 0}


def steady(rate=1.0, at=1000.0):
    return ControlState(allocation=dict(FULL), policy_version=3, last_change=0.0, last_decision=at,
                        demand=DemandState(rate=rate, at=at, shares={"cache-k0": 1.0}, shares_at=at), queued=0.0)


def burst(rate, queued=0.0):
    return M(demand=rate, h={"cache-k0": 1.0}, queues={"cache-k0": queued} if queued else {})


def test_a_burst_just_over_capacity_is_ridden_out_when_bursts_are_short():
    p = plan("svc", SHORT, PROFILES, burst(2.2, queued=2), steady(), 1005.0)
    assert p.allocation == FULL and not p.changed
    assert p.reason.startswith("held: ") and "over 60 s" in p.reason and "hold 0.0 violations" in p.reason
    assert p.state.overload_since == 1005.0  # the overload is remembered: the horizon grows with it
    # expected to last two minutes, the same burst is worth a move: its queue would pass the SLO within them
    long = plan("svc", SPEC, PROFILES, burst(2.2, queued=2), steady(), 1005.0)
    assert long.changed and long.reason.startswith("move pays: saves ")


def test_a_burst_twice_capacity_moves_at_once_and_says_why_in_numbers():
    p = plan("svc", SPEC, PROFILES, burst(4.0, queued=2), steady(), 1005.0)
    assert p.changed and p.allocation["steps-10"] >= 1
    assert p.reason.startswith("move pays: saves ") and " SLO violations over 120 s at 4 req/s" in p.reason


def test_a_switch_that_needs_no_reload_is_weighed_without_the_loading_gap():
    # the same move, weighed as a reload (20 s at the kept replica's 1 req/s) and as an in-place switch
    reload = plan("svc", SHORT, PROFILES, burst(2.4, queued=2), steady(), 1005.0)
    switch = plan("svc", SHORT, PROFILES, burst(2.4, queued=2), steady(), 1005.0, in_place=True)
    assert "hold 4.0 violations" in reload.reason and "the whole move 2.8 violations (20 s at 1 req/s" in reload.reason
    assert "the whole move 0.0 violations (0 s at 3 req/s while loading)" in switch.reason
    assert switch.changed and switch.allocation == {"cache-k0": 1, "steps-10": 1}
    assert dwell_s(5, PROFILES) == 60 and dwell_s(5, PROFILES, in_place=True) == 20  # nothing reloads: 4 periods


def test_a_mild_overload_that_lasts_moves_once_its_horizon_has_grown():
    st, now, moved_at = steady(), 1000.0, None
    queued = 0.0
    for _ in range(120):  # 10 minutes at 1.1x, the queue growing by what capacity leaves
        now += 5.0
        queued = min(queued + 0.2 * 5, 2.0 * 11)  # the SLO caps what the queue can hold
        p = plan("svc", SHORT, PROFILES, burst(2.2, queued=queued), st, now)
        st = p.state
        if p.changed:
            moved_at = now
            break
    assert moved_at is not None and moved_at - 1000.0 > 60  # not at the start: it had to last first
    assert "move pays" in p.reason


def test_the_queue_growth_reveals_a_burst_before_the_windowed_rate_does():
    # The windowed rate still says 1 req/s, but the queue of a saturated allocation grew by 40 in 5 s.
    st = steady()
    st = ControlState(**{**st.__dict__, "queued": 10.0})
    p = plan("svc", SPEC, PROFILES, burst(1.0, queued=50), st, 1005.0)
    assert p.changed and "at 10 req/s" in p.reason


def test_the_queue_growth_counts_from_one_request_per_replica_when_the_last_queue_was_shorter():
    # A burst's first period: the queue was 1 (a slot idle), now 40. The growth past the 2 slots' worth shows
    # 9.6 req/s; read only once the last queue too was past one per replica, it went unseen for a period.
    st = ControlState(**{**steady().__dict__, "queued": 1.0})
    p = plan("svc", SPEC, PROFILES, burst(1.0, queued=40), st, 1005.0)
    assert p.changed and "at 9.6 req/s" in p.reason


def test_a_few_requests_arriving_together_are_not_read_as_a_burst():
    # 4 more requests in 5 s on 2 slots serving ~10 in that time: within Poisson noise (3 sigma ~ 10)
    st = ControlState(**{**steady().__dict__, "queued": 4.0})
    p = plan("svc", SHORT, PROFILES, burst(1.0, queued=8), st, 1005.0)
    assert not p.changed
    assert p.state.overload_since is None  # the windowed rate, 1 req/s, is within capacity


def test_an_allocation_in_force_the_optimizer_may_no_longer_run_is_left_without_weighing():
    # re-profiled: steps-10 now takes longer than the SLO, so the replica on it must go whatever the weighing
    slow = (PROFILES[0], LevelProfile("steps-10", {1: 0.05}, 20.0, 85.0, "m", load_time=20.0))
    st = ControlState(**{**steady().__dict__, "allocation": {"cache-k0": 1, "steps-10": 1}})
    p = plan("svc", SHORT, slow, burst(0.5), st, 1005.0)
    assert p.allocation == FULL and p.changed and not p.reason.startswith(("held", "move pays"))


def test_quality_weight_gives_the_headroom_to_quality():
    """The spec's qualityWeight: at 1.75 req/s (2.1 planned with the 1.2 headroom) two full-quality slots
    (2 req/s) leave the planned demand short; weight 1 keeps the faster mix, a large weight plans for quality
    (switched in place: the reload's amortized cost, weighed with the same weight, would hold either)."""
    mix = {"cache-k0": 1, "steps-10": 1}
    st = ControlState(allocation=dict(mix), policy_version=3, last_change=0.0, last_decision=1000.0,
                      demand=DemandState(rate=1.75, at=1000.0, shares={"cache-k0": 1.0}, shares_at=1000.0), queued=0.0)
    obs = M(demand=1.75, h={"cache-k0": 1.0}, queues={})
    assert plan("svc", SPEC, PROFILES, obs, st, 1005.0, in_place=True).allocation == mix
    heavy = parse_spec({**RAW, "qualityWeight": 1000})
    assert heavy.quality_weight == 1000
    p = plan("svc", heavy, PROFILES, obs, st, 1005.0, in_place=True)
    assert p.allocation == FULL and p.changed, p.reason


def test_with_late_rungs_a_burst_the_rungs_serve_is_held_rather_than_reloaded():
    """With late rungs (the default) the policy tells the router to send deadlines, and the weighing counts the
    rungs: the two full-quality slots serve 4 req/s at steps-10, so a 2.4x burst is served without the 20 s
    reload that would leave one slot to it (the reload sweep: 402 -> 214 violations per burst minute). Switched
    in place a move costs nothing and the rungs are not counted: it moves as without them. Prompt-agnostic plans (Proteus-like) and `lateRungs: false` leave the rungs off."""
    late = parse_spec({**RAW, "lateRungs": True})
    p = plan("svc", late, PROFILES, burst(2.4, queued=2), steady(), 1005.0)
    assert not p.changed and p.policy.late_rungs
    assert p.reason.startswith("held: ") and "hold 0.0 violations" in p.reason
    # the rungs' quality: a fifth of the batches run late at steps-10 (85 %), 0.8 of the 2.4 req/s
    assert "hold 0.0 violations, 290 served + 0 queued at 95.0 %" in p.reason
    assert plan("svc", SPEC, PROFILES, burst(2.4, queued=2), steady(), 1005.0).changed  # without rungs: moves
    switch = plan("svc", late, PROFILES, burst(2.4, queued=2), steady(), 1005.0, in_place=True)
    assert switch.changed and switch.allocation == plan("svc", SPEC, PROFILES, burst(2.4, queued=2), steady(), 1005.0,
                                                         in_place=True).allocation
    # past the rungs (5 req/s) a reload to steps-10 adds no capacity either (4 req/s both ways) and idles a slot
    past = plan("svc", late, PROFILES, burst(5.0, queued=2), steady(), 1005.0)
    assert not past.changed and past.reason.startswith("held: the move would add ")
    assert not plan("svc", late, PROFILES, burst(2.4, queued=2), steady(), 1005.0, agnostic=True).policy.late_rungs
    assert not plan("svc", SPEC, PROFILES, burst(2.4, queued=2), steady(), 1005.0).policy.late_rungs


def test_past_what_every_replica_serves_at_its_fastest_the_kept_full_quality_replica_gets_a_fair_share():
    # One slot is kept at full quality (minFullQualityReplicas 1) and one runs steps-10: 3 req/s at their own
    # levels, 4 at their fastest rungs. At 5 req/s the router gives the full-quality slot half the arrivals
    # (its late and surge rungs run them at steps-10); at 2.5 req/s its share stays its own capacity's.
    spec = parse_spec({**RAW, "lateRungs": True, "minFullQualityReplicas": 1})
    mixed = {"cache-k0": 1, "steps-10": 1}

    def at(rate):
        st = ControlState(allocation=dict(mixed), policy_version=3, last_change=0.0, last_decision=1000.0,
                          demand=DemandState(rate=rate, at=1000.0, shares={"cache-k0": 1.0}, shares_at=1000.0))
        return plan("svc", spec, PROFILES, burst(rate), st, 1005.0)

    over = at(5.0)
    assert over.allocation == mixed and over.policy.shares == {"cache-k0": 0.5, "steps-10": 0.5}
    fits = at(2.5)
    assert fits.policy.shares["cache-k0"] == pytest.approx(1 / 3, abs=1e-5)

    # between the two (3.5 req/s), steps-10 (no faster rung) gets the 2 req/s it serves, cache-k0's rungs the rest
    between = at(3.5)
    assert between.policy.shares["steps-10"] * 3.5 == pytest.approx(2.0, abs=1e-4)


def test_with_reloads_the_shares_follow_the_queues_growth_at_once():
    # A burst the smoothed rate (1 req/s) has not seen: the queue grew by 40 in 5 s (10 req/s). Held (the rungs
    # carry it, a reload would idle a slot), the router's shares follow the arrivals the growth shows: past what
    # both slots serve at their fastest rungs, an equal share each. In place the allocation itself follows the burst
    # and the shares the smoothed rate.
    spec = parse_spec({**RAW, "lateRungs": True, "minFullQualityReplicas": 1})
    mixed = {"cache-k0": 1, "steps-10": 1}
    st = ControlState(allocation=dict(mixed), policy_version=3, last_change=0.0, last_decision=1000.0, queued=10.0,
                      demand=DemandState(rate=1.0, at=1000.0, shares={"cache-k0": 1.0}, shares_at=1000.0))
    held = plan("svc", spec, PROFILES, burst(1.0, queued=50), st, 1005.0)
    assert held.allocation == mixed and held.policy.shares == {"cache-k0": 0.5, "steps-10": 0.5}
    switched = plan("svc", spec, PROFILES, burst(1.0, queued=50), st, 1005.0, in_place=True)
    assert switched.policy.shares["cache-k0"] == pytest.approx(1 / 3, abs=1e-5)


def test_in_place_the_plan_keeps_the_full_quality_replicas_whose_rungs_carry_the_headroom():
    # The paper setup's plateau (8 GPUs, SDXL profile, 6.5 req/s planned at 1.2x): sized on the planned 7.8 req/s
    # the plan runs one full-quality replica and seven steps-20; in place, with late rungs, it keeps the two whose
    # own capacity, with the rest at steps-20, still serves the 6.5 req/s (their rungs take the peaks). With
    # reloads (the weighing counts the rungs), without rungs, or within two periods of the last change, it does not.
    from argus.policy.profile import load_default_profile

    prof = load_default_profile().levels
    levels = [p.level for p in prof]
    raw = {"throughputTarget": 100, "gpus": 8, "levels": levels, "qualityFloor": 90}
    h = {"cache-k0": 0.3, "cache-k10": 0.2, "steps-35": 0.1, "steps-20": 0.4}
    one = {lv: 0 for lv in levels} | {"cache-k0": 1, "steps-20": 7}

    def at(spec, in_place=True, last_change=0.0):
        st = ControlState(allocation=dict(one), policy_version=3, last_change=last_change, last_decision=1000.0,
                          queued=0.0, demand=DemandState(rate=6.5, at=1000.0, shares=h, shares_at=1000.0))
        return plan("svc", parse_spec(spec), prof, M(demand=6.5, h=h, queues={}), st, 1005.0, in_place=in_place)

    kept = at(raw)
    assert kept.allocation["cache-k0"] == 2 and kept.allocation["steps-20"] == 6
    assert kept.reason.endswith("at least 2 cache-k0 replica(s): at 6.5 req/s their late rungs carry the headroom")
    assert at(raw, in_place=False).allocation == one
    assert at({**raw, "lateRungs": False}).allocation == one
    assert at(raw, last_change=990.0).allocation == one  # the allocation has stood 15 s: it keeps, adds none
