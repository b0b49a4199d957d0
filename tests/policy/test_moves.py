"""Moves that pay (argus.policy.moves): the fluid outlook, the verdict, partial moves, the horizon."""

import pytest

from argus.policy import moves
from argus.policy.moves import Option, horizon, outlook, steps_toward, weigh
from argus.policy.profile import LevelProfile


def option(during, after=None, transition=0.0, q_before=100.0, q_after=None, service=1.0):
    return Option(during=during, after=during if after is None else after, transition_s=transition,
                  quality_before=q_before, quality_after=q_before if q_after is None else q_after, service_s=service)


def test_a_queue_that_drains_has_no_violations():
    o = outlook(option(2.0), rate=1.5, backlog=10, slo_s=12, horizon_s=100)
    assert o.violations == 0 and o.backlog_end == pytest.approx(0, abs=1e-6)
    assert o.served == pytest.approx(10 + 150, rel=1e-3)


def test_a_steady_overload_violates_at_the_excess_rate_once_the_queue_is_full():
    # capacity 1, arrivals 1.5: the queue fills the 11 s of slack after 22 s, then 0.5 req/s miss the SLO
    o = outlook(option(1.0), rate=1.5, backlog=0, slo_s=12, horizon_s=122)
    assert o.violations == pytest.approx(0.5 * (122 - 22), rel=0.03)
    assert o.served == pytest.approx(122, rel=0.02)


def test_a_backlog_beyond_what_the_slo_allows_violates_at_once():
    o = outlook(option(1.0), rate=0.0, backlog=30, slo_s=12, horizon_s=10)
    assert o.violations == pytest.approx(30 - 11, rel=1e-6)


def test_reload_capacity_loss_costs_violations_while_loading():
    hold = outlook(option(1.0), rate=1.0, backlog=0, slo_s=6, horizon_s=60)
    move = outlook(option(0.5, after=2.0, transition=20), rate=1.0, backlog=0, slo_s=6, horizon_s=60)
    assert hold.violations == 0 and move.violations > 1
    v = weigh(option(1.0), [option(0.5, after=2.0, transition=20, q_after=80)], rate=1.0, backlog=0, slo_s=6,
              horizon_s=60)
    assert not v.move and v.reason.startswith("held: the move would add")


def test_a_short_mild_overload_is_ridden_out_and_a_large_one_is_not():
    # two slots at 1 req/s each, one switches to a level twice as fast in 20 s; 12 s SLO
    hold = option(2.0)
    move = option(1.0, after=3.0, transition=20, q_after=85)
    mild = weigh(hold, [move], rate=2.2, backlog=0, slo_s=12, horizon_s=60)
    assert not mild.move and mild.hold.violations == 0  # 10 % over capacity for a minute: the queue stays short
    large = weigh(hold, [move], rate=4.0, backlog=0, slo_s=12, horizon_s=60)
    assert large.move and large.reason.startswith("move pays: saves")
    assert large.hold.violations > large.change.violations + 10


def test_a_move_onto_a_spare_gpu_costs_nothing_while_loading():
    hold = option(2.0)
    spare = option(2.0, after=3.0, transition=47, q_after=90)  # make-before-break: nothing stops serving
    v = weigh(hold, [spare], rate=2.6, backlog=0, slo_s=30, horizon_s=120)
    assert v.move and v.change.violations < v.hold.violations


def test_without_violations_either_way_the_move_must_serve_more_quality():
    hold = option(1.0, q_before=90)
    better = option(0.5, after=1.0, transition=10, q_before=90, q_after=100)
    assert weigh(hold, [better], rate=0.3, backlog=0, slo_s=30, horizon_s=120).move
    same = option(0.5, after=1.0, transition=10, q_before=90, q_after=90.5)  # +0.5 %: not worth a reload
    v = weigh(hold, [same], rate=0.3, backlog=0, slo_s=30, horizon_s=120)
    assert not v.move and "gains less than 1% quality" in v.reason


def test_the_best_partial_move_is_chosen():
    hold = option(2.0)
    one = option(1.5, after=2.6, transition=47, q_after=95)
    whole = option(0.4, after=4.0, transition=47, q_after=85)
    v = weigh(hold, [one, whole], rate=2.5, backlog=0, slo_s=30, horizon_s=120)
    assert v.choice == 0 and "partial move 1 of 2" in v.reason


P = (LevelProfile("cache-k0", {1: 0.4}, 2.5, 100.0, "sdxl", load_time=47.0),
     LevelProfile("steps-20", {1: 0.9}, 1.1, 88.0, "sdxl", load_time=47.0),
     LevelProfile("cache-k5", {1: 0.5}, 2.0, 95.0, "sdxl", load_time=40.0))


def test_partial_moves_switch_the_least_useful_replica_first_and_end_at_the_whole_move():
    cur = {"cache-k0": 6, "steps-20": 0, "cache-k5": 1}
    prop = {"cache-k0": 2, "steps-20": 4, "cache-k5": 1}
    steps = steps_toward(cur, prop, P)
    assert steps[-1] == prop and len(steps) == 4
    assert steps[0] == {"cache-k0": 5, "steps-20": 1, "cache-k5": 1}
    assert all(sum(a.values()) == 7 for a in steps)
    # spare GPUs are used first: adding one replica on a free GPU removes none
    assert steps_toward({"cache-k0": 6, "steps-20": 0, "cache-k5": 1}, {"cache-k0": 5, "steps-20": 3, "cache-k5": 1},
                        P)[0] == {"cache-k0": 6, "steps-20": 1, "cache-k5": 1}


def test_the_move_option_counts_only_kept_replicas_while_loading():
    o = moves.move_option({"cache-k0": 4, "steps-20": 0}, {"cache-k0": 2, "steps-20": 2}, P[:2], 100, 90)
    assert o.during == pytest.approx(0.8) and o.after == pytest.approx(2.6) and o.transition_s == 47


def test_a_replica_switched_in_place_to_a_level_of_its_model_serves_at_once():
    light = LevelProfile("model-tiny", {1: 2.0}, 0.5, 70.0, "tiny", load_time=10.0)
    cur, new = {"cache-k0": 4, "steps-20": 0, "model-tiny": 0}, {"cache-k0": 1, "steps-20": 2, "model-tiny": 1}
    assert moves.switched_in_place(cur, new, (*P[:2], light)) == {"steps-20": 2}  # model-tiny must load
    o = moves.move_option(cur, new, (*P[:2], light), 100, 90, in_place=True)
    assert o.during == pytest.approx(0.4 + 1.8) and o.after == pytest.approx(4.2) and o.transition_s == 10
    same = moves.move_option({"cache-k0": 4, "steps-20": 0}, {"cache-k0": 2, "steps-20": 2}, P[:2], 100, 90,
                             in_place=True)
    assert same.during == same.after == pytest.approx(2.6) and same.transition_s == 0


def test_the_horizon_stretches_with_an_ongoing_overload_up_to_ten_times_the_setting():
    assert horizon(120, None, 1000) == 120
    assert horizon(120, 900, 1000) == 120
    assert horizon(120, 500, 1000) == 500
    assert horizon(120, 0, 5000) == 1200


def test_with_late_rungs_a_replica_counts_at_its_fastest_rung():
    # a full-quality replica's late and surge batches run at steps-20: as fast as a replica reloaded there
    assert moves.rung_capacity({"cache-k0": 4, "steps-20": 0}, P[:2]) == pytest.approx(3.6)
    assert moves.rung_capacity({"cache-k0": 1, "steps-20": 2}, P[:2]) == pytest.approx(2.7)
    assert moves.capacity({"cache-k0": 4}, P[:2]) == pytest.approx(1.6)


def test_the_rungs_quality_is_the_plans_until_the_levels_fall_behind_then_the_rungs_that_keep_up():
    four = {"cache-k0": 4, "steps-20": 0}
    assert moves.rung_quality(four, P[:2], 1.5, 99.0) == 99.0  # within the level's own 1.6 req/s: the plan's
    # 2 req/s, 1.25x the level's speed: a fifth of the time at steps-20 serves the 0.4 req/s it leaves
    assert moves.rung_quality(four, P[:2], 2.0, 99.0) == pytest.approx((0.8 * 1.6 * 100 + 0.2 * 3.6 * 88) / 2.0)
    assert moves.rung_quality(four, P[:2], 3.0, 99.0) == pytest.approx(88.0)  # past 1.5x: the surge rule, all of it
    assert moves.rung_quality(four, P[:2], 5.0, 99.0) == pytest.approx(88.0)  # past the rungs: what is served


def test_with_late_rungs_a_burst_the_rungs_serve_is_held_rather_than_reloaded():
    four, two = {"cache-k0": 4, "steps-20": 0}, {"cache-k0": 2, "steps-20": 2}
    hold = moves.hold_option(four, P[:2], 100.0, rate=2.0)
    assert hold.during == hold.after == pytest.approx(3.6) and hold.quality_after == pytest.approx(95.68)
    move = moves.move_option(four, two, P[:2], 100.0, 94.0, rate=2.0)
    assert move.during == pytest.approx(1.8) and move.after == pytest.approx(3.6) and move.transition_s == 47
    assert move.quality_before == pytest.approx(88.0)  # the 2 kept replicas surge at steps-20 while 2 reload
    # 2.4 req/s, a 12 s SLO: the rungs serve it all; the reload leaves 1.8 req/s for 47 s
    v = weigh(moves.hold_option(four, P[:2], 100.0, rate=2.4), [moves.move_option(four, two, P[:2], 100.0, 94.0,
                                                                                  rate=2.4)], 2.4, 0, 12, 120)
    assert not v.move and v.hold.violations == 0 and v.change.violations == pytest.approx(3.0, abs=0.1)
    # counted at their own levels, the same burst looked worth the reload
    plain = weigh(moves.hold_option(four, P[:2], 100.0), [moves.move_option(four, two, P[:2], 100.0, 94.0)],
                  2.4, 0, 12, 120)
    assert plain.move and plain.hold.violations > 80
    # at 2.5 req/s every replica surges at steps-20 (88 %) anyway, and a move to better levels serves more
    # quality without violations in the fluid model; made for quality alone, though, it must keep up with the
    # arrivals while it loads: the whole move (1.8 req/s meanwhile) is not made, one replica at a time (2.7) is
    one = {"cache-k0": 3, "steps-20": 1}
    hold = moves.hold_option(four, P[:2], 100.0, rate=2.5)
    whole = moves.move_option(four, two, P[:2], 100.0, 94.0, rate=2.5)
    part = moves.move_option(four, one, P[:2], 100.0, 92.0, rate=2.5)
    v = weigh(hold, [whole], 2.5, 0, 30, 120)
    assert not v.move and v.change.violations == 0 and "leaves less than the 2.5 req/s arriving while it loads" in v.reason
    v = weigh(hold, [part, whole], 2.5, 0, 30, 120)
    assert v.choice == 0 and v.reason.startswith("move pays: more quality served")
