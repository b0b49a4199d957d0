"""The burst sweep's clairvoyant reference (bench/bench_sweep.py): full quality until a burst's first second,
Clipper-HT's allocation, switched in place, through the burst and its drain; with reloads, the best count of
replicas switched at that second."""

import sys
from pathlib import Path

import pytest

from argus.policy.profile import load_default_profile
from argus.sim.engine import SimConfig, simulate
from argus.sim.policies import Observation, Service, make_policy
from argus.sim.prompts import PromptModel
from argus.sim.trace import Workload, bursty, poisson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_sweep  # noqa: E402

PROFILE = load_default_profile()


def _at(policy, now):
    plan = policy.tick(Observation(now=now, rate=0.0, keys={}, queues={}, replicas={}))
    return {k: v for k, v in plan.replicas.items() if v}, plan.doc


def test_full_quality_until_the_burst_starts_then_the_fastest_level_through_its_drain():
    svc = Service(gpus=8, levels=PROFILE.levels, in_place=True)
    cv = bench_sweep.Clairvoyant(svc, starts=[600.0], length=120.0)
    assert _at(cv, 585.0)[0] == {"cache-k0": 8}
    rep, doc = _at(cv, 600.0)
    assert rep == {"steps-20": 8} and doc.late_rungs and doc.redirection == {"steps-20": {"steps-20": 1.0}}
    assert _at(cv, 600.0 + 120 + 3 * 30 - 15)[0] == {"steps-20": 8}  # the queue's drain, 3 SLOs
    rep, doc = _at(cv, 600.0 + 120 + 3 * 30)
    assert rep == {"cache-k0": 8} and doc.redirection == {"steps-20": {"cache-k0": 1.0}}


def test_with_reloads_some_replicas_switch_and_the_router_splits_by_capacity():
    svc = Service(gpus=8, levels=PROFILE.levels, in_place=False)
    cv = bench_sweep.Clairvoyant(svc, starts=[600.0], length=120.0, switched=3)
    assert _at(cv, 585.0)[0] == {"cache-k0": 8}
    rep, doc = _at(cv, 600.0)
    speed = {lp.level: lp.peak_throughput for lp in PROFILE.levels}
    fast, full = 3 * speed["steps-20"], 5 * speed["cache-k0"]
    assert rep == {"steps-20": 3, "cache-k0": 5}
    assert doc.redirection["steps-20"] == pytest.approx({"steps-20": fast / (fast + full), "cache-k0": full / (fast + full)})


def test_with_reloads_the_cell_keeps_the_count_switched_with_the_fewest_violations():
    svc = Service(gpus=8, levels=PROFILE.levels, in_place=False)
    cap = 8 * next(lp.peak_throughput for lp in PROFILE.levels if lp.level == "cache-k0")
    model, trace, starts = PromptModel(), poisson(20_000), [1200.0]
    c = bench_sweep.cell(trace, svc, model, 3.0, 300.0, 1, cap, ["clairvoyant"])["clairvoyant"]
    wl = Workload(trace, bursty(bench_sweep.BASE * cap, 3.0 / bench_sweep.BASE, plateau=300, gap=1200, plateaus=1))
    each = {k: bench_sweep._runs(wl, svc, lambda: bench_sweep.Clairvoyant(svc, starts, 300.0, k), model, starts,
                                 300.0, 1, 1) for k in (0, c["switched"], 8)}
    assert {k: v for k, v in c.items() if k != "switched"} == each[c["switched"]]
    assert c["violations_per_burst_min"] <= min(r["violations_per_burst_min"] for r in each.values())
    assert each[8]["starts"] == 16 and each[0]["starts"] == 0  # every replica there and back; none


def test_knowing_the_burst_it_serves_a_2x_burst_with_fewer_violations_than_full_quality_and_better_quality_than_ht():
    svc = Service(gpus=8, levels=PROFILE.levels, in_place=True)
    model, cap = PromptModel(), 8 * next(lp.peak_throughput for lp in PROFILE.levels if lp.level == "cache-k0")
    curve = bursty(0.4 * cap, 2.0 / 0.4, plateau=120, gap=600, plateaus=1)
    wl = Workload(poisson(20_000), curve)
    out = {}
    for name, policy in (("cv", bench_sweep.Clairvoyant(svc, [600.0], 120.0)),
                         ("ha", make_policy("clipper-ha", svc, model)), ("ht", make_policy("clipper-ht", svc, model))):
        out[name] = simulate(wl, svc, policy, model, SimConfig(seed=0)).summary
    assert out["cv"].violations_per_min < 0.2 * out["ha"].violations_per_min
    assert out["cv"].quality > out["ht"].quality + 5


def test_a_cell_over_seeds_is_the_mean_of_its_runs_and_keeps_each():
    svc = Service(gpus=8, levels=PROFILE.levels, in_place=True)
    cap = 8 * next(lp.peak_throughput for lp in PROFILE.levels if lp.level == "cache-k0")
    one = bench_sweep.cell(poisson(20_000), svc, PromptModel(), 2.0, 60.0, 1, cap, ["clipper-ht"])
    two = bench_sweep.cell(poisson(20_000), svc, PromptModel(), 2.0, 60.0, 1, cap, ["clipper-ht"], seeds=2)
    runs = two["clipper-ht"]["runs"]
    assert len(runs) == 2 and "runs" not in one["clipper-ht"]
    assert runs[0] == one["clipper-ht"]  # seed 0 is the single run
    assert runs[0]["burst_quality"] != runs[1]["burst_quality"]  # another draw of the prompts
    for k in ("violations_per_burst_min", "burst_quality", "quality"):
        assert two["clipper-ht"][k] == pytest.approx((runs[0][k] + runs[1][k]) / 2)
