"""argus.worker.pacing: the worker's measured seconds per step, and the rung a late group runs at.

Cases: no estimate before any run; a measured batch size is scaled by steps; an unmeasured size takes the
nearest measured one, scaled up by the batch ratio only when larger; the average moves toward new timings;
a group with no deadline, or an unknown time, stays at its own level; a group whose earliest deadline no
rung can make takes the first rung that makes the next deadline; nothing saveable runs at the fastest rung.
"""

from __future__ import annotations

import pytest

from argus.levels import level_named
from argus.worker.pacing import StepClock, group_rung, rung_for


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
