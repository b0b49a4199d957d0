"""Policies: what each baseline deploys and how it keys prompts; the optimizer-backed ones call solve.

Cases: Clipper-HA puts every GPU and prompt on cache-k0; Clipper-HT on the fastest level that
needs no cache hit; NIRVANA-like splits GPUs over cache levels only, in proportion to the hit
distribution's work, and keys each prompt at its deepest allowed cache level; Proteus-like keys
every prompt alike and plans only levels that need no hit; static splits key by the predictor;
Argus's tick runs the production control period (argus.control.loop.plan) on the lagged observation
and applies what it decides; argus-u<x> checks its utilization.
"""

import numpy as np
import pytest

from argus.control.loop import demand_settings, plan as loop_plan, smooth_class_shares
from argus.control.observed import MetricsSnapshot
from argus.control.state import ControlState
from argus.policy.demand import DemandState
from argus.policy.profile import load_default_profile
from argus.policy.baselines import proportional
from argus.sim.policies import Observation, PolicyError, Service, make_policy
from argus.sim.prompts import PromptModel, draw

PROFILE = load_default_profile()
NAMES = [lp.level for lp in PROFILE.levels]
SVC = Service(gpus=8, levels=PROFILE.levels)
MODEL = PromptModel()
PROMPTS = draw(MODEL, PROFILE.levels, 90.0, 5000, np.random.default_rng(0))
OBS = Observation(now=0.0, rate=0.0, keys={}, queues={}, replicas={})


def _used(plan):
    return {k: v for k, v in plan.replicas.items() if v}


def test_clipper_ha_and_ht():
    ha, ht = make_policy("clipper-ha", SVC, MODEL), make_policy("clipper-ht", SVC, MODEL)
    assert _used(ha.tick(OBS)) == {"cache-k0": 8}
    assert set(ha.keys(PROMPTS).tolist()) == {NAMES.index("cache-k0")}
    assert _used(ht.tick(OBS)) == {"steps-20": 8}
    assert set(ht.keys(PROMPTS).tolist()) == {NAMES.index("steps-20")}


def test_nirvana_uses_cache_levels_only():
    pol = make_policy("nirvana", SVC, MODEL)
    used = _used(pol.tick(OBS))
    assert sum(used.values()) == 8 and all(k.startswith("cache-k") for k in used)
    keys = pol.keys(PROMPTS)
    k = np.array([int(NAMES[j].removeprefix("cache-k")) for j in keys])
    assert np.all(k <= PROMPTS.kmax)
    assert np.all(k[PROMPTS.kmax == 0] == 0)


def test_proportional_split_keeps_full_quality():
    assert proportional({"cache-k0": 0.01, "cache-k5": 0.99}, 8) == {"cache-k0": 1, "cache-k5": 7}
    assert proportional({"cache-k5": 1.0, "cache-k10": 1.0}, 3) == {"cache-k5": 1, "cache-k10": 1, "cache-k0": 1}


def test_proteus_is_prompt_agnostic_over_levels_without_hits():
    pol = make_policy("proteus", SVC, MODEL)
    assert len(set(pol.keys(PROMPTS).tolist())) == 1
    plan = pol.tick(Observation(now=15.0, rate=6.0, keys={"steps-20": 360.0}, queues={}, replicas={}))
    assert all(not k.startswith("cache-k") or k == "cache-k0" for k in _used(plan))
    assert plan.solve_s > 0


def test_static_split_keys_by_predictor():
    pol = make_policy("static:cache-k0=2,steps-20=6", SVC, MODEL)
    assert _used(pol.tick(OBS)) == {"cache-k0": 2, "steps-20": 6}
    assert np.array_equal(pol.keys(PROMPTS), PROMPTS.optimal)


def test_argus_tick_runs_the_production_control_period():
    pol = make_policy("argus", SVC, MODEL)
    keys = {n: float(c) for n, c in zip(NAMES, np.bincount(PROMPTS.optimal, minlength=len(NAMES))) if c}
    obs = Observation(now=15.0, rate=1.0, keys=keys, queues={}, replicas={"cache-k0": 8})
    plan = pol.tick(obs)
    assert plan.solve_s > 0 and plan.doc.version == 1 and pol.state.policy_version == 1
    # what argus.control.loop.plan decides for the same spec, observation and state, the simulator applies
    want = loop_plan("sim", SVC.spec(), SVC.levels, MetricsSnapshot(demand=1.0, h=keys), ControlState(
        allocation={n: (8 if n == "cache-k0" else 0) for n in NAMES}), 15.0,
        classes=smooth_class_shares(DemandState(), {}, pol.table, NAMES, 15.0, demand_settings(SVC.spec()))[0])
    assert plan.replicas == want.allocation and pol.state.demand == want.state.demand
    assert sum(plan.replicas.values()) <= 8 and plan.replicas["cache-k0"] >= 1
    for row in plan.doc.redirection.values():
        assert sum(row.values()) == pytest.approx(1.0)
    assert np.array_equal(pol.keys(PROMPTS), PROMPTS.optimal)


@pytest.mark.parametrize("spec", ["argus-u0", "argus-u1.5", "argus-ux"])
def test_argus_utilization_must_be_in_range(spec):
    with pytest.raises(PolicyError, match="argus-u"):
        make_policy(spec, SVC, MODEL)
