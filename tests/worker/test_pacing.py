"""argus.worker.pacing: the worker's measured seconds per step, and the rung a late group runs at.

Cases: no estimate before any run; a measured batch size is scaled by steps; an unmeasured size takes the
nearest measured one, scaled up by the batch ratio only when larger; the average moves toward new timings;
a group with no deadline, or an unknown time, stays at its own level; a group whose earliest deadline no
rung can make takes the first rung that makes the next deadline; nothing saveable runs at the fastest rung.
Arrivals: the meter's rate spans about its window and needs two samples a second apart; Triton's counters
are summed for this model only; a surge past 1.5x the level's timed full batches picks the rung that keeps
up, and nothing moves before a full batch is timed or without a rate.
"""

from __future__ import annotations

import pytest

from argus.levels import level_named
from argus.worker.pacing import ArrivalMeter, StepClock, arrived_from_metrics, group_rung, rung_for, surge_rung


def test_clock_estimates_from_measured_steps():
    c = StepClock()
    assert c.estimate(1, 10) is None
    c.record(2, 10, 4.0)  # 0.4 s per step at batch 2
    assert c.estimate(2, 5) == pytest.approx(2.0)
    assert c.estimate(1, 5) == pytest.approx(2.0)  # a smaller batch costs no more
    assert c.estimate(4, 5) == pytest.approx(4.0)  # a larger one at most proportionally more
    c.record(2, 10, 8.0)
    assert 0.4 < c.per_step[2] < 0.8
    c.record(0, 10, 1.0)
    c.record(2, 0, 1.0)
    assert set(c.per_step) == {2}


def test_rung_for_skips_requests_no_rung_can_save():
    times = [10.0, 5.0, 2.0]
    assert rung_for(0.0, [], times) == 0
    assert rung_for(0.0, [3.0], [10.0, None]) == 0
    assert rung_for(0.0, [20.0], times) == 0
    assert rung_for(0.0, [6.0, 30.0], times) == 1
    assert rung_for(0.0, [1.0, 6.0], times) == 1  # the 1 s deadline is lost whatever runs; the 6 s one is not
    assert rung_for(0.0, [1.0, 1.5], times) == 2  # nothing saveable: the fastest rung frees the worker soonest


def test_group_rung_uses_the_levels_steps():
    c = StepClock()
    c.record(1, 50, 50.0)  # 1 s per step
    rungs = [level_named("steps-30"), level_named("steps-10")]
    assert group_rung(c, 0.0, [60.0], level_named("cache-k0"), rungs, 50, 1) == 0
    assert group_rung(c, 0.0, [40.0], level_named("cache-k0"), rungs, 50, 1) == 1
    assert group_rung(c, 0.0, [20.0], level_named("cache-k0"), rungs, 50, 1) == 2
    assert group_rung(StepClock(), 0.0, [20.0], level_named("cache-k0"), rungs, 50, 1) == 0


def test_arrival_meter_rates_over_about_its_window():
    m = ArrivalMeter(window=10.0)
    assert m.rate() is None
    m.observe(100.0, 50)
    m.observe(100.5, 60)
    assert m.rate() is None  # half a second says too little
    m.observe(102.0, 70)
    assert m.rate() == pytest.approx(10.0)
    m.observe(110.0, 90)
    m.observe(115.0, 190)  # samples before 105 but the newest of them are dropped
    assert m.samples[0] == (102.0, 70)
    assert m.rate() == pytest.approx(120 / 13)


def test_arrivals_sum_this_models_answered_failed_and_queued_requests():
    text = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
nv_inference_request_success{model="cache-k0",version="1"} 40
nv_inference_request_failure{model="cache-k0",version="1",reason="REJECTED"} 3
nv_inference_pending_request_count{model="cache-k0",version="1"} 7
nv_inference_request_success{model="steps-20",version="1"} 999
nv_inference_count{model="cache-k0",version="1"} 40
"""
    assert arrived_from_metrics(text, "cache-k0") == 50
    assert arrived_from_metrics(text, "cache-k5") is None


def test_a_surge_runs_at_the_rung_whose_timed_full_batches_keep_up():
    lv, rungs = level_named("cache-k0"), [level_named("steps-25"), level_named("steps-10")]
    c = StepClock()
    c.record(4, 50, 2.0)  # batch of 4: 0.04 s per step; 2 s at cache-k0 (2/s), 1 s at steps-25, 0.4 s at steps-10
    assert surge_rung(c, 2.9, lv, rungs, 50, 8) == 0  # no full batch (8) timed yet
    assert surge_rung(c, 2.9, lv, rungs, 50, 4) == 0  # within 1.5 x 2/s
    assert surge_rung(c, 3.5, lv, rungs, 50, 4) == 1  # steps-25 serves 4/s
    assert surge_rung(c, 20.0, lv, rungs, 50, 4) == 2
    assert surge_rung(c, None, lv, rungs, 50, 4) == 0
