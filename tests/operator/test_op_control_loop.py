"""The pure control period (argus.control.loop.plan), its state on the status, narration and profiles.

Cases:
- first plan without metrics: prior demand = target, every GPU within budget, policy version 1, a change;
- no metrics with a valid stored allocation: kept unchanged, no solve, no event, same policy version;
- no metrics after a spec edit (new generation): re-planned for the new spec;
- demand jump beyond capacity: reallocated, Event text carries demand, capacity, moves and quality;
- demand EWMA (argus.policy.demand) kept on the status: smoothed down, bursts followed, headroom applied;
- steady metrics: the policy version does not move (content hash), state round-trips through status;
- observed h_k of levels the spec no longer has is dropped and renormalized;
- narration table: moves pairing and message wording;
- unprofiled levels get derived profiles marked as assumptions;
- stored state that no longer fits the spec (levels changed, budget cut) is not reused;
- reloads are measured: a change that adds replicas starts the clock, the first period with none loading
  records the time (kept on the status), and the next plans weigh reloads at no less than it; replicas
  that stay unready past the patience no longer hold the allocation.
"""

from __future__ import annotations

import pytest

from argus.control.loop import LOAD_PATIENCE, allocation_fits, plan, with_measured_reloads
from argus.control.narrate import moves, reallocation_message
from argus.control.observed import MetricsSnapshot as M
from argus.control.profiles import service_profiles
from argus.control.state import ControlState
from argus.policy.demand import DemandState
from argus.policy.profile import load_default_profile
from argus.spec import parse_spec

LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25"]
PROFILE = load_default_profile()


def spec(**over):
    raw = {"throughputTarget": 3, "gpus": 4, "levels": LEVELS, "controlPeriod": 1, "qualityFloor": 90}
    raw.update(over)
    return parse_spec(raw)


def run(s, observed, state, now, gen=1):
    return plan("svc", s, service_profiles(s, PROFILE), observed, state, now, gen)


def test_first_plan_without_metrics_uses_target():
    p = run(spec(), None, ControlState(), 100.0)
    assert p.changed and p.decision is not None and p.policy.version == 1
    assert sum(p.allocation.values()) <= 4 and p.allocation["cache-k0"] >= 1
    assert set(p.allocation) == set(LEVELS)
    assert p.status["demand"] == 3.0 and p.state.last_change == 100.0 and p.state.observed_generation == 1
    assert p.event is None  # nothing moved: there was no allocation before


def test_no_metrics_keeps_valid_allocation():
    first = run(spec(), None, ControlState(), 100.0)
    p = run(spec(), None, first.state, 110.0)
    assert not p.changed and p.decision is None and p.event is None
    assert p.allocation == first.allocation and p.policy.version == first.policy.version
    assert p.state.last_change == 100.0 and p.state.last_decision == 110.0


def test_no_metrics_after_spec_edit_replans():
    first = run(spec(), None, ControlState(), 100.0)
    p = run(spec(gpus=8), None, first.state, 110.0, gen=2)
    assert p.decision is not None and sum(p.allocation.values()) > 4
    assert p.state.observed_generation == 2 and p.policy.version == first.policy.version + 1


def test_allocation_kept_while_a_replica_of_it_loads():
    # without late rungs: with them, the full-quality replicas ride this burst on their steps-25 rung and the
    # weighing holds (tests/policy/test_moves_loop.py), where this test is about the re-plan once loaded
    s = spec(lateRungs=False)
    st = run(s, M(demand=0.5, h={"cache-k0": 1.0}), run(s, None, ControlState(), 100.0).state, 250.0).state
    burst = M(demand=2.5, h={"cache-k20": 1.0})
    held = plan("svc", s, service_profiles(s, PROFILE), burst, st, 251.0, 1, loading=1)
    assert held.progressing and not held.changed and not held.policy_changed and held.decision is None
    assert held.allocation == st.allocation and "1 replica(s) still loading" in held.reason
    assert held.state.demand == st.demand  # the loading period's queues are not read as demand
    moved = plan("svc", s, service_profiles(s, PROFILE), burst, held.state, 256.0, 1, loading=0)
    assert moved.changed and not moved.progressing  # once loaded, the same numbers re-plan
    assert not plan("svc", s, service_profiles(s, PROFILE), burst, ControlState(), 256.0, 1, loading=2).progressing


def test_demand_jump_reallocates_with_numbers():
    s = spec(lateRungs=False)  # with late rungs the full-quality slots ride this jump (tests/policy/test_moves_loop.py)
    st = run(s, M(demand=0.5, h={"cache-k0": 1.0}), run(s, None, ControlState(), 100.0).state, 250.0).state
    assert st.allocation["cache-k0"] >= 2
    p = run(s, M(demand=2.5, h={"cache-k20": 1.0}), st, 251.0)  # within dwell, but the old mix is overloaded
    assert p.changed and p.allocation != st.allocation and p.policy.version == st.policy_version + 1
    assert p.event.startswith("demand 3 req/s > capacity ")  # 2.5 observed x 1.2 headroom (policy.demand)
    assert "cache-k0 → " in p.event and "quality 100.0% → " in p.event
    assert p.state.last_change == 251.0


def test_demand_is_smoothed_on_the_way_down_and_followed_on_the_way_up():
    s = spec(scaleDownHalfLife=2)
    st = run(s, M(demand=2.0, h={"cache-k0": 1.0}), ControlState(), 100.0).state
    assert st.demand.rate == 2.0
    down = run(s, M(demand=0.0, h={}), st, 102.0)  # one half-life later
    assert down.state.demand.rate == pytest.approx(1.0) and down.status["demand"] == pytest.approx(1.2)
    up = run(s, M(demand=5.0, h={"cache-k0": 1.0}), down.state, 102.5)
    assert up.state.demand.rate == 5.0
    assert ControlState.from_status(up.state.to_status()).demand == up.state.demand


def test_capacity_is_given_back_with_the_specs_scale_down_half_life():
    s = spec()  # scaleDownHalfLife default: 300 s (argus.policy.demand.RELEASE_HALF_LIFE_S)
    assert s.scale_down_half_life == 300.0
    st = run(s, M(demand=2.0, h={"cache-k0": 1.0}), ControlState(), 100.0).state
    slow = run(s, M(demand=0.0, h={}), st, 130.0)  # 30 s later: a tenth of a half-life
    assert slow.state.demand.rate == pytest.approx(2.0 * 0.5 ** 0.1)
    fast = run(spec(scaleDownHalfLife=30), M(demand=0.0, h={}), st, 130.0)
    assert fast.state.demand.rate == pytest.approx(1.0)
    # h_k still follows within two control periods: a new prompt mix must switch strategies quickly
    mix = run(s, M(demand=2.0, h={"cache-k20": 1.0}), st, 102.0)
    assert mix.state.demand.shares["cache-k20"] == pytest.approx(0.5)


def test_a_prior_planned_allocation_is_not_held_by_the_dwell():
    s = spec()
    first = run(s, None, ControlState(), 100.0)  # no metrics: planned for the target with the prior h_k
    assert first.state.demand.rate is None
    low = run(s, M(demand=0.5, h={"cache-k0": 1.0}), first.state, 101.0)  # first numbers, 1 s later
    assert low.changed and low.allocation["cache-k0"] == 4 and low.state.last_change == 101.0
    kept = run(spec(throughputTarget=0.6), M(demand=0.5, h={"cache-k0": 1.0}), low.state, 102.0, gen=1)
    assert kept.state.last_change == 101.0  # observed plans start the dwell


def test_dwell_covers_several_reloads():
    from dataclasses import replace

    from argus.control.loop import DWELL_RELOADS, dwell_s

    prof = service_profiles(spec(), PROFILE)  # SDXL: 47 s loads
    assert dwell_s(15.0, prof) == DWELL_RELOADS * 47.0
    fast = tuple(replace(p, load_time=1.0) for p in prof)
    assert dwell_s(15.0, fast) == 60.0  # four control periods
    # A plan made within 3 x 47 s of the last change keeps a working mix (the default dwell, 4 periods of
    # 1 s here, would have let it go).
    s = spec(scaleDownHalfLife=1)
    st = run(s, M(demand=2.5, h={"cache-k20": 1.0}), run(s, None, ControlState(), 100.0).state, 110.0).state
    held = run(s, M(demand=0.5, h={"cache-k0": 1.0}), st, 110.0 + 60.0)
    assert held.allocation == st.allocation and "dwell" in held.reason
    moved = run(s, M(demand=0.5, h={"cache-k0": 1.0}), st, 110.0 + 3 * 47.0 + 1.0)
    assert moved.allocation != st.allocation


def test_steady_metrics_keep_version_and_state_round_trips():
    s = spec()
    obs = M(demand=1.0, h={"cache-k0": 0.5, "cache-k10": 0.5}, throughput={"cache-k0": 1.0}, quality=97.0,
            slo_violations=0.1)
    a = run(s, obs, run(s, None, ControlState(), 100.0).state, 110.0)
    b = run(s, obs, ControlState.from_status(a.state.to_status()), 120.0)
    assert b.policy.version == a.policy.version and not b.changed
    assert b.status["averageQuality"] == 97.0 and b.status["sloViolationRate"] == pytest.approx(0.1)
    assert ControlState.from_status(b.state.to_status()) == b.state


def test_observed_h_of_unknown_levels_dropped():
    s = spec()
    p = run(s, M(demand=1.0, h={"cache-k0": 0.5, "cache-k45": 0.5}), ControlState(), 100.0)
    assert p.decision is not None  # the snapshot validated: h renormalized to the spec's levels


@pytest.mark.parametrize("old,new,expected", [
    ({"a": 3, "b": 0}, {"a": 1, "b": 2}, [(2, "a", "b")]),
    ({"a": 2, "b": 2, "c": 0}, {"a": 0, "b": 1, "c": 3}, [(2, "a", "c"), (1, "b", "c")]),
    ({"a": 1}, {"a": 1}, []),
    ({"a": 1}, {"a": 1, "b": 2}, []),
])
def test_moves(old, new, expected):
    assert moves(old, new) == expected


def test_message_wording():
    msg = reallocation_message({"cache-k0": 4, "cache-k15": 0}, {"cache-k0": 2, "cache-k15": 2}, demand=6.2,
                               old_capacity=5.1, new_capacity=7.0, old_quality=96.1, new_quality=94.8)
    assert msg == ("demand 6.2 req/s > capacity 5.1: moved 2 GPUs cache-k0 → cache-k15, capacity → 7 req/s, "
                   "quality 96.1% → 94.8%")
    assert reallocation_message({"a": 2}, {"a": 1}, demand=0.0, old_capacity=1.0, new_capacity=0.5,
                                old_quality=None, new_quality=None) == \
        "no demand, capacity 1 req/s: released 1 GPU, capacity → 0.5 req/s, quality n/a → n/a"
    # A backlog-driven overload move says so: the rate alone fit the old capacity.
    assert reallocation_message({"cache-k0": 2, "steps-10": 0}, {"cache-k0": 1, "steps-10": 1}, demand=0.947,
                                old_capacity=1.17, new_capacity=1.71, old_quality=100.0, new_quality=91.9,
                                queued=8, degraded=0.81, shed=0.0) == \
        ("demand 0.947 req/s <= capacity 1.17, 8 queued: moved 1 GPU cache-k0 → steps-10, capacity → 1.71 req/s, "
         "quality 100.0% → 91.9%; OVERLOAD: 0.81 req/s served below their prompts' floor")


def test_unprofiled_levels_are_derived_and_marked():
    s = parse_spec({"throughputTarget": 1, "gpus": 2, "model": {"steps": 20}, "levels": ["steps-10", "cache-k0"]})
    prof = service_profiles(s, PROFILE)
    assert [p.level for p in prof] == ["cache-k0", "steps-10"]
    assert prof[1].peak_throughput == pytest.approx(prof[0].peak_throughput * 2)
    assert prof[1].quality < 100 and prof[1].note.startswith("assumption")


@pytest.mark.parametrize("alloc,over,fits", [
    ({"cache-k0": 1, "cache-k10": 1, "cache-k20": 1, "steps-25": 1}, {}, True),
    ({"cache-k0": 1, "cache-k10": 1, "cache-k20": 1, "steps-25": 1}, {"gpus": 3}, False),
    ({"cache-k0": 1, "cache-k10": 3}, {}, False),
    ({"cache-k0": 0, "cache-k10": 1, "cache-k20": 1, "steps-25": 1}, {}, False),
    ({}, {}, False),
])
def test_allocation_fits(alloc, over, fits):
    assert allocation_fits(alloc, spec(**over)) is fits


def _after_burst(queues=None, **over):
    """Two GPUs left as 1 full + 1 cheapest after a burst; the demand has fallen to what one full replica serves."""
    s = parse_spec({"throughputTarget": 1.0, "gpus": 2, "levels": ["cache-k0", "steps-20"], "controlPeriod": 5,
                    "qualityFloor": 90, **over})  # SDXL loads take 47 s: the dwell is 3 x 47 = 141 s
    state = ControlState(allocation={"cache-k0": 1, "steps-20": 1}, policy_version=3, last_change=100.0,
                         last_decision=100.0, demand=DemandState(rate=0.05, at=100.0))
    obs = M(demand=0.05, h={"cache-k0": 1.0}, throughput={"cache-k0": 0.05}, queues=queues or {})
    return s, state, obs


def test_idle_approximate_replica_stays_warm_until_moving_it_back_pays():
    s, state, obs = _after_burst()
    early = run(s, obs, state, 230.0, gen=None)  # 130 s after the move: within the dwell
    assert early.allocation == {"cache-k0": 1, "steps-20": 1} and not early.changed
    # After the dwell the idle replica is proposed back to full quality, but it serves nothing there either:
    # the reload would gain no quality, so it stays, loaded for the next burst (issue 19: moves that pay).
    idle = run(s, obs, early.state, 245.0, gen=None)
    assert idle.allocation == {"cache-k0": 1, "steps-20": 1} and not idle.changed
    assert idle.reason.startswith("held: the move saves no violations and gains less than 1% quality")
    # Once the full-quality replica cannot take the load alone, moving it back serves more quality: it moves.
    more = M(demand=0.5, h={"cache-k0": 1.0}, throughput={"cache-k0": 0.39, "steps-20": 0.11})
    late = run(s, more, idle.state, 260.0, gen=None)
    assert late.allocation == {"cache-k0": 2, "steps-20": 0} and late.changed
    assert late.reason.startswith("move pays: more quality served")
    assert "moved 1 GPU steps-20 → cache-k0" in late.event
    assert late.policy.allocation == late.allocation
    steady = run(s, more, late.state, 265.0, gen=None)  # and it stays there: no flapping
    assert steady.allocation == late.allocation and not steady.changed
    assert steady.policy.version == late.policy.version


def test_idle_approximate_replica_goes_back_to_full_quality_after_keep_warm():
    """keepWarm (default 30 minutes) bounds how long the idle replica stays warm: past it since the last change,
    the release is made although it serves no more quality (it adds no violations), and it stays made."""
    s, state, obs = _after_burst()
    assert s.keep_warm == 1800.0
    warm = run(s, obs, state, 1890.0, gen=None)  # 1,790 s after the move: still kept warm
    assert warm.allocation == {"cache-k0": 1, "steps-20": 1} and not warm.changed
    back = run(s, obs, warm.state, 1905.0, gen=None)
    assert back.allocation == {"cache-k0": 2, "steps-20": 0} and back.changed
    assert back.reason.startswith("move pays: idle replicas kept warm long enough go back to full quality")
    assert "released idle replicas of steps-20" in back.reason
    # requests waiting at the warm replica (a burst it served without a move) restart the clock
    s, state, obs = _after_burst()
    busy = run(s, _after_burst(queues={"steps-20": 3.0})[2], state, 1000.0, gen=None)
    assert busy.allocation == {"cache-k0": 1, "steps-20": 1} and busy.state.approx_busy == 1000.0
    assert busy.state.last_change == 100.0
    assert ControlState.from_status(busy.state.to_status()) == busy.state  # kept on the status
    still = run(s, obs, busy.state, 1905.0, gen=None)
    assert still.allocation == {"cache-k0": 1, "steps-20": 1} and still.state.approx_busy == 1000.0
    assert run(s, obs, still.state, 2805.0, gen=None).allocation == {"cache-k0": 2, "steps-20": 0}
    s, state, obs = _after_burst(keepWarm=0)  # 0: as soon as the dwell allows
    early = run(s, obs, state, 230.0, gen=None)
    assert early.allocation == {"cache-k0": 1, "steps-20": 1}  # within the dwell
    now = run(s, obs, early.state, 245.0, gen=None)
    assert now.allocation == {"cache-k0": 2, "steps-20": 0} and now.changed
    steady = run(s, obs, now.state, 260.0, gen=None)
    assert steady.allocation == now.allocation and not steady.changed


def test_a_replica_with_queued_requests_is_not_released():
    s, state, obs = _after_burst(queues={"steps-20": 3.0})
    p = run(s, obs, state, 245.0, gen=None)
    assert p.allocation["steps-20"] == 1


def test_policy_carries_the_epoch_it_was_planned_in():
    s = spec()
    p = plan("svc", s, service_profiles(s, PROFILE), None, ControlState(), 100.0, 1, epoch="uid-1")
    assert p.policy.epoch == "uid-1"
    kept = plan("svc", s, service_profiles(s, PROFILE), None, p.state, 110.0, 1, epoch="uid-1")
    assert kept.decision is None and kept.policy.epoch == "uid-1"


def test_policy_carries_the_planned_quality_of_every_level():
    s = spec()
    profiles = service_profiles(s, PROFILE)
    p = plan("svc", s, profiles, None, ControlState(), 100.0, 1)
    assert p.policy.level_quality == {lp.level: lp.quality for lp in profiles}
    assert p.policy.level_quality["cache-k0"] == 100.0 and p.policy.level_quality["steps-25"] < 100.0


def test_prompt_agnostic_plan_keys_every_prompt_at_the_most_approximate_level():
    """Proteus-like (`argus up --mode proteus`): the same optimizer, every prompt keyed at the highest-throughput
    level whatever the observed optimal levels, and a policy that tells the router to ignore predictions."""
    from argus.policy.profile import agnostic_key

    s = spec()
    profiles = service_profiles(s, PROFILE)
    key = agnostic_key(profiles)
    assert key == max(profiles, key=lambda lp: lp.peak_throughput).level
    observed = M(demand=2.5, h={"cache-k0": 1.0})  # every prompt's own optimal level is full quality
    argus = plan("svc", s, profiles, observed, ControlState(), 100.0, 1)
    agnostic = plan("svc", s, profiles, observed, ControlState(), 100.0, 1, agnostic=True)
    assert argus.policy.agnostic_key is None and agnostic.policy.agnostic_key == key
    assert not agnostic.policy.prices and len(agnostic.policy.redirection[key]) >= 2
    assert sum(agnostic.policy.redirection[key].values()) == pytest.approx(1.0)
    # every prompt is drawn from the key's row, over the levels the plan gives replicas
    assert {lv for lv, p in agnostic.policy.redirection[key].items() if p > 0} <= {
        lv for lv, n in agnostic.allocation.items() if n > 0}
    kept = plan("svc", s, profiles, None, agnostic.state, 101.0, 1, agnostic=True)
    assert kept.policy.agnostic_key == key


def test_reload_time_is_measured_and_planned_with():
    s = spec()
    first = run(s, None, ControlState(), 100.0)
    assert first.state.reload_started == 100.0  # its replicas load
    low = M(demand=0.5, h={"cache-k0": 1.0})
    state = first.state
    for t in range(101, 170):  # a period a second (the spec's controlPeriod), replicas loading
        still = plan("svc", s, service_profiles(s, PROFILE), low, state, float(t), 1, loading=2)
        state = still.state
    assert still.progressing and still.state.reload_started == 100.0 and still.state.reload_times == ()
    done = plan("svc", s, service_profiles(s, PROFILE), low, state, 170.0, 1, loading=0)
    assert done.state.reload_times == (70.0,)
    assert done.changed and done.state.reload_started == 170.0  # it moves replicas to full quality: a new reload
    # a loop that did not run while the replicas loaded cannot tell when they became ready: nothing recorded
    gap = plan("svc", s, service_profiles(s, PROFILE), low, first.state, 170.0, 1, loading=0)
    assert gap.state.reload_times == ()
    back = ControlState.from_status(done.state.to_status())
    assert back.reload_times == (70.0,) and back.reload_started == 170.0
    assert done.state.to_status()["measuredReloadSeconds"] == [70.0]
    profs = with_measured_reloads(service_profiles(s, PROFILE), back)
    assert all(p.load_time >= 70.0 for p in profs)
    assert with_measured_reloads(service_profiles(s, PROFILE), ControlState()) == service_profiles(s, PROFILE)


def test_unready_replicas_hold_only_within_the_patience():
    s = spec()
    first = run(s, None, ControlState(), 100.0)
    burst = M(demand=2.5, h={"cache-k20": 1.0})
    slowest = max(p.load_time for p in service_profiles(s, PROFILE))
    patience = max(2 * s.control_period, LOAD_PATIENCE * slowest)
    held = plan("svc", s, service_profiles(s, PROFILE), burst, first.state, 100.0 + patience - 1, 1, loading=1)
    assert held.progressing
    late = plan("svc", s, service_profiles(s, PROFILE), burst, first.state, 100.0 + patience + 1, 1, loading=1)
    assert not late.progressing and late.decision is not None  # unschedulable or crash-looping: plan anyway
