"""The demo's level profile and the report's quality accounting (no processes).

Cases: published-quality mapping by share of skipped work (cache-k10 of 20 = published cache-k25 of 50,
cache-k5 of 20 between published K=10 and K=15, steps-10 of 20 = the steps-25 estimate, steps-5 of 20
extends the step line below steps-20, full quality is 100); an unknown family is an error; the
demo profile keeps every measured throughput/service time/load time, replaces only quality and
states the assumption; with it the shared control loop keeps full quality at low demand and moves
replicas to cheaper levels when demand exceeds the full-quality capacity; summarize/timeline average the serving level's planned quality and
mark overload and Degraded bins.
"""

from __future__ import annotations

import pytest

from argus.control.loop import plan
from argus.control.observed import MetricsSnapshot
from argus.control.profiles import service_profiles
from argus.control.state import ControlState
from argus.local.defaults import TINY_MANIFEST
from argus.local.demo_profile import LOCAL_SWITCH_S, demo_profile, published_quality
from argus.policy.profile import rescaled
from argus.tools.experiment import MEASURED_PROFILE, default_profile
from argus.tools.loadgen import Record, Sample
from argus.policy.profile import Profile, load_default_profile, load_profile
from argus.tools.report import summarize, timeline
from argus.spec import parse_manifest

PUB = load_default_profile()


@pytest.mark.parametrize("level,n,expect", [
    ("cache-k0", 20, 100.0),
    ("cache-k10", 20, 91.52),  # 50% skipped = published cache-k25 of 50
    ("cache-k5", 20, round(95.81 + (94.38 - 95.81) * 0.5, 2)),  # K=12.5 of 50
    ("cache-k10", 50, 95.81),
    ("steps-10", 20, 90.5),  # half the steps = the steps-25-of-50 estimate
    ("steps-5", 20, 84.25),  # 12.5 of 50: the 25->20 line (0.5%/step) extended
    ("steps-35", 50, 94.0),
])
def test_published_quality(level, n, expect):
    assert published_quality(level, n, PUB) == pytest.approx(expect, abs=0.01)


def test_unknown_family():
    with pytest.raises(ValueError, match="no published quality"):
        published_quality("model-tiny", 20, PUB)


def test_demo_profile_keeps_measurements():
    measured = load_profile(MEASURED_PROFILE)
    demo = demo_profile(measured, PUB, 20)
    assert [lp.level for lp in demo.levels] == [lp.level for lp in measured.levels]
    for m, d in zip(measured.levels, demo.levels):
        assert (d.throughput, d.service_time, d.model) == (m.throughput, m.service_time, m.model)
        assert d.load_time == max(m.load_time, LOCAL_SWITCH_S)  # a local move is drain + exit + start + load
        assert "assumption" in d.note
    assert demo_profile(measured, PUB, 20, switch_s=0.0).levels[0].load_time == measured.levels[0].load_time
    assert any("replica move takes" in a for a in demo.assumptions)
    q = [lp.quality for lp in demo.levels]
    assert q[0] == 100.0 and len(set(q)) == len(q)  # distinct qualities: something to trade
    assert any("NOT measured" in a for a in demo.assumptions)


def _alloc(profile: Profile, demand: float, queues=None) -> dict:
    manifest = {**TINY_MANIFEST, "spec": {**TINY_MANIFEST["spec"], "throughputTarget": 3.0}}
    name, spec = parse_manifest(manifest)
    p = plan(name, spec, service_profiles(spec, profile), MetricsSnapshot(demand=demand, h={"cache-k0": 1.0},
                                                                          queues=queues or {}),
             ControlState(), 0.0, generation=1)
    return {k: v for k, v in p.allocation.items() if v}


def test_loop_trades_quality_for_throughput_with_demo_profile():
    _, spec = parse_manifest(TINY_MANIFEST)
    demo = default_profile(spec)
    assert _alloc(demo, 0.3) == {"cache-k0": 2}
    busy = _alloc(demo, 2.0)
    assert busy.get("cache-k0", 0) < 2 and sum(busy.values()) == 2  # capacity moved to cheaper levels


def test_report_level_quality_and_flags():
    lq = {"cache-k0": 100.0, "steps-5": 84.25}
    recs = [Record(1.0, 2.0, 200, "cache-k0", "cache-k0", 100.0), Record(12.0, 3.0, 200, "steps-5", "cache-k0", 0.0),
            Record(13.0, 30.0, 200, "steps-5", "cache-k0", 0.0), Record(14.0, 1.0, 503, error="busy")]
    s = summarize(recs, slo_s=10, duration=20, level_quality=lq)
    assert s["avg_level_quality"] == pytest.approx((100 + 84.25 * 2) / 3, abs=1e-3)
    assert s["slo_violations"] == 2 and s["ok"] == 3
    samples = [Sample(0.5, {"cache-k0": 2}, False, False), Sample(11.0, {"cache-k0": 1, "steps-5": 1}, True, True)]
    tl = timeline(recs, samples, slo_s=10, bin_s=10, duration=20, level_quality=lq)
    assert tl["level_quality"] == [100.0, 84.25]
    assert tl["overload"] == [False, True] and tl["degraded"] == [False, True]
    assert tl["allocation"] == {"cache-k0": [2, 1], "steps-5": [0, 1]}


def test_rescaled_scales_throughput_and_service_time_only():
    base = default_profile(parse_manifest(TINY_MANIFEST)[1])
    fast = rescaled(base, 2.5, "measured here")
    for a, b in zip(base.levels, fast.levels):
        assert b.throughput == pytest.approx({k: 2.5 * v for k, v in a.throughput.items()})
        assert b.service_time == pytest.approx(a.service_time / 2.5)
        assert (b.level, b.quality, b.load_time, b.model) == (a.level, a.quality, a.load_time, a.model)
    assert fast.assumptions[:-1] == base.assumptions
    assert "x 2.5: measured here" in fast.assumptions[-1]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="factor"):
            rescaled(base, bad, "x")


def test_profile_at_fewer_steps_keeps_the_share_of_skipped_work():
    from argus.local.demo_profile import at_steps
    from argus.tools.experiment import MEASURED_PROFILE, MEASURED_STEPS, default_profile
    from argus.policy.profile import load_profile
    from argus.spec import parse_spec

    measured = load_profile(MEASURED_PROFILE)
    four = at_steps(measured, MEASURED_STEPS, 4)
    assert [lp.level for lp in four.levels] == ["cache-k0", "cache-k1", "cache-k2", "steps-2", "steps-1"]
    assert four.get("steps-2").throughput == measured.get("steps-10").throughput
    assert [lp.level for lp in at_steps(measured, MEASURED_STEPS, 3).levels] == ["cache-k0"]  # 5/20 of 3: none
    spec = parse_spec({"model": {"steps": 4, "height": 32, "width": 32}, "levels": ["cache-k0", "steps-2"],
                       "throughputTarget": 1, "gpus": 2, "latencySLO": 30, "qualityFloor": 90})
    p = default_profile(spec)  # was a LevelError (cache-k5 of a 4-step model)
    assert p.get("steps-2").quality == default_profile(parse_spec({**spec.model_dump(by_alias=True), "model": {
        "steps": 20, "height": 32, "width": 32}, "levels": ["cache-k0", "steps-10"]})).get("steps-10").quality
