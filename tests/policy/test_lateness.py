"""argus.policy.lateness: the ladder a late batch may run at, and the rung it runs at.

Cases: a cache or steps level's ladder is the steps-* levels of the main weights that run fewer steps, most
steps first; cache levels (a prompt's own hit) and model levels (other weights) are never rungs, and a model
level has no ladder; the rung is the first whose time finishes within the aim (a share of the SLO) after the
oldest arrival, else the fastest if it makes the SLO, else -1.
"""

from __future__ import annotations

import pytest

from argus.policy.lateness import aimed_rung, elastic_full_quality, kept_rung, ladder

LEVELS = ["cache-k0", "cache-k10", "cache-k30", "steps-10", "steps-30", "steps-20", "model-small"]


def test_ladder_is_fewer_steps_of_the_same_weights_most_steps_first():
    assert ladder("cache-k0", LEVELS) == ["steps-30", "steps-20", "steps-10"]
    assert ladder("cache-k30", LEVELS) == ["steps-10"]  # runs 20 steps: steps-20 is no faster
    assert ladder("steps-20", LEVELS) == ["steps-10"]
    assert ladder("steps-10", LEVELS) == []
    assert ladder("model-small", LEVELS) == []
    assert ladder("cache-k0", ["cache-k0", "cache-k10"]) == []


def test_with_the_whole_slo_as_aim_the_first_rung_that_makes_it():
    times = [10.0, 6.0, 3.0]
    assert aimed_rung(100.0, 95.0, 30.0, 1.0, times) == 0  # waited 5 s: 15 s at its own level is in time
    assert aimed_rung(100.0, 78.0, 30.0, 1.0, times) == 1  # waited 22 s: 32 s late, 28 s in time
    assert aimed_rung(100.0, 74.0, 30.0, 1.0, times) == 2
    assert aimed_rung(100.0, 70.0, 30.0, 1.0, times) == -1
    assert aimed_rung(100.0, 110.0, 0.0, 1.0, times) == 0  # the worker's form: a deadline, nothing more
    assert aimed_rung(100.0, 105.0, 0.0, 1.0, times) == 2


def test_aimed_rung_finishes_by_the_aim_else_the_fastest_within_the_slo():
    times = [10.0, 6.0, 3.0]
    assert aimed_rung(100.0, 95.0, 30.0, 0.5, times) == 0  # done 15 s after arrival: within 0.5 x 30
    assert aimed_rung(100.0, 91.0, 30.0, 0.5, times) == 1  # 19 s at its level; 15 s at rung 1
    assert aimed_rung(100.0, 80.0, 30.0, 0.5, times) == 2  # no rung makes 15 s; the fastest makes 30 s
    assert aimed_rung(100.0, 72.0, 30.0, 0.5, times) == -1  # 31 s even at the fastest: the oldest is lost
    assert aimed_rung(100.0, 80.0, 30.0, 0.5, [10.0]) == 0  # no ladder: its own level while it makes the SLO


def test_kept_rung_answers_a_surge_past_the_levels_speed_with_the_rung_that_keeps_up():
    times = [4.0, 2.0, 1.0]  # full batches of 4: 1, 2 and 4 requests/s
    assert kept_rung(1.4, 4, times, 1.5) == 0  # within 1.5 x its own level's speed: no surge
    assert kept_rung(1.6, 4, times, 1.5) == 1  # a surge: the first rung that keeps up
    assert kept_rung(3.0, 4, times, 1.5) == 2
    assert kept_rung(9.0, 4, times, 1.5) == 2  # none keeps up: the fastest
    assert kept_rung(9.0, 4, [4.0], 1.5) == 0  # no ladder


def test_past_every_replicas_fastest_rung_the_shares_follow_the_fastest_rungs():
    from argus.policy.lateness import overload_shares
    levels = ["cache-k0", "steps-25", "steps-20", "model-small"]
    thr = {"cache-k0": 0.4, "steps-25": 0.8, "steps-20": 1.0, "model-small": 2.0}
    alloc = {"cache-k0": 1, "steps-20": 7, "steps-25": 0}
    # 0.4 + 7 = 7.4 req/s at their own levels, 8 at their fastest rungs (cache-k0's is steps-20)
    assert overload_shares(alloc, thr, levels, 7.4) == {"cache-k0": round(0.4 / 7.4, 6), "steps-20": round(7 / 7.4, 6)}
    # between the two, the excess goes where rungs are left: steps-20 (no faster rung) gets what it serves, 7 req/s,
    # and cache-k0's time-shared rungs the rest (at own shares steps-20 got 7.47 req/s, its queue overflowed) ...
    shares = overload_shares(alloc, thr, levels, 7.55)
    assert shares["steps-20"] * 7.55 == pytest.approx(7.0, abs=1e-4)
    assert shares["cache-k0"] * 7.55 == pytest.approx(0.55, abs=1e-4)
    # ... up to 1.5 x cache-k0's own 0.4 req/s (past it the surge rule runs every batch there at a rung)
    assert overload_shares(alloc, thr, levels, 7.9) == {"cache-k0": round(0.6 / 7.6, 6), "steps-20": round(7 / 7.6, 6)}
    assert overload_shares(alloc, thr, levels, 8.0) == {"cache-k0": 0.125, "steps-20": 0.875}
    # a level with no ladder (other weights) keeps its own speed
    assert overload_shares({"cache-k0": 1, "model-small": 1}, thr, levels, 9.0) == {
        "cache-k0": round(1.0 / 3.0, 6), "model-small": round(2.0 / 3.0, 6)}
    assert overload_shares({}, thr, levels, 9.0) == {}


def test_in_flight_limits_are_what_a_replica_finishes_within_the_slo_at_its_fastest_rung():
    from argus.policy.lateness import in_flight_limits
    from argus.policy.profile import LevelProfile

    profiles = (LevelProfile("cache-k0", {1: 0.25, 8: 0.4}, 4.0, 100.0, "m", load_time=40.0),
                LevelProfile("steps-20", {1: 0.5, 8: 1.0}, 2.0, 88.0, "m", load_time=40.0),
                LevelProfile("model-small", {1: 1.0, 4: 2.0}, 1.0, 80.0, "s", load_time=10.0))
    limits = in_flight_limits(profiles, [p.level for p in profiles], 30.0)
    # cache-k0's fastest rung is steps-20: 1 req/s, a full batch of 8 in 8 s, so 22 finish within 30 s
    assert limits == {"cache-k0": 22.0, "steps-20": 22.0, "model-small": 56.0}


def test_the_elastic_floor_keeps_the_full_quality_replicas_whose_rungs_carry_the_headroom():
    # The paper setup's shape: full quality 0.4 req/s per replica, its fastest rung (steps-20) 1.0, 8 replicas.
    tput = {"cache-k0": 0.4, "steps-30": 0.6, "steps-20": 1.0}
    levels = list(tput)

    def floor(rate, headroom=1.2):
        return elastic_full_quality(8, tput, levels, rate, headroom * rate, "cache-k0")

    # at 6.5 req/s: 3 x 0.4 + 5 x 1.0 = 6.2 < 6.5, 2 x 0.4 + 6 x 1.0 = 6.8 serves it at the levels' own speeds
    assert floor(6.5) == 2
    assert floor(5.0) == 5  # 5 x 0.4 + 3 = 5.0
    assert floor(3.0) is None  # every replica at full quality serves it (3.2): the plan's own business
    assert floor(6.5, headroom=1.3) is None  # 8.45 planned: past what every replica serves at steps-20
    assert floor(7.9, headroom=1.0) == 0  # 1 x 0.4 + 7 = 7.4: no room for one (the spec's minimum decides)
    assert elastic_full_quality(8, {"cache-k0": 0.4, "cache-k10": 0.5}, ["cache-k0", "cache-k10"], 3.5, 3.5,
                                "cache-k0") is None  # no rung: a cache level is not one
