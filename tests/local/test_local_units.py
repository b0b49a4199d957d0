"""Local runtime pieces without starting workers.

Cases: the baselines' static plans (argus.policy.baselines; ha: all full quality; ht: all on the fastest
level that needs no cache hit;
nirvana: GPUs split over cache levels, step-level prompts run in full) give valid policy
documents within the GPU budget; an unknown mode is an error naming the choices; the
local Prometheus config passes `promtool check config`; file_sd targets carry the level.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from argus.control.profiles import service_profiles
from argus.local import prometheus
from argus.policy.baselines import BaselineError, fastest_without_hit, fixed_plan
from argus.policy.profile import load_default_profile
from argus.spec import parse_spec

LEVELS = ["cache-k0", "cache-k5", "cache-k10", "steps-10", "steps-5"]
DATA_PLANE = {"quality_floor": 90.0, "latency_slo_s": 30.0, "image_size": "64x64"}


def profiles(levels=LEVELS):
    """What `argus up` plans with for a 20-step service of these levels (the demo's derivation)."""
    spec = parse_spec({"model": {"steps": 20}, "levels": levels, "throughputTarget": 1, "gpus": 3})
    return service_profiles(spec, load_default_profile())


@pytest.mark.parametrize("mode,expect", [
    ("ha", {"cache-k0": 3}),
    ("ht", {"steps-5": 3}),
    ("nirvana", {"cache-k0": 1, "cache-k5": 1, "cache-k10": 1}),
])
def test_static_plans(mode, expect):
    alloc, doc = fixed_plan(mode, "svc", profiles(), 3, DATA_PLANE)
    assert alloc == expect
    assert sum(alloc.values()) <= 3
    assert doc.allocation == expect and set(doc.redirection) == set(LEVELS)
    for row in doc.redirection.values():
        assert abs(sum(row.values()) - 1) < 1e-9 and set(row) <= set(alloc)


def test_unknown_mode():
    with pytest.raises(BaselineError, match="ha, ht, nirvana"):
        fixed_plan("fast", "svc", profiles(), 2, DATA_PLANE)


def test_clipper_ht_runs_the_fastest_level_any_prompt_can_use():
    assert fastest_without_hit(profiles()) == "steps-5"
    assert fastest_without_hit(profiles(["cache-k0", "cache-k10"])) == "cache-k0"  # cache-k10 needs a hit


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool comes with the Debian prometheus package")
def test_prometheus_config_passes_promtool(tmp_path):
    targets = tmp_path / "targets.json"
    prometheus.write_targets(targets, {"w1": ("cache-k0", "127.0.0.1:9000")})
    cfg = tmp_path / "prometheus.yml"
    prometheus.write_config(cfg, prometheus.build_config(router="127.0.0.1:1", envoy_stats="127.0.0.1:2",
                                                         targets_file=targets))
    out = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(targets.read_text()) == [{"targets": ["127.0.0.1:9000"],
                                                "labels": {"level": "cache-k0", "replica": "w1"}}]


def test_each_run_plans_in_its_own_epoch(tmp_path):
    """A new `argus up` in a used workdir restarts policy versions at 1: its own epoch keeps the router
    from holding on to the previous run's higher-versioned policy file."""
    from types import SimpleNamespace

    from argus.local.controller import LocalController
    from argus.tools.experiment import default_profile
    from argus.spec import parse_spec

    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "levels": LEVELS, "model": {"steps": 20}})
    system = SimpleNamespace(service="svc", spec=spec, workdir=tmp_path, start_s=[])
    runs = [LocalController(system, default_profile(spec), source=None) for _ in range(2)]
    assert runs[0].epoch != runs[1].epoch
    assert all(c._plan(None).policy.epoch == c.epoch for c in runs)
    _, doc = fixed_plan("ha", "svc", profiles(), 2, DATA_PLANE, epoch=runs[0].epoch)
    assert doc.epoch == runs[0].epoch


def test_the_loop_plans_reloads_at_the_replica_start_times_measured_here(tmp_path):
    from types import SimpleNamespace

    from argus.control.loop import with_measured_reloads
    from argus.control.profiles import service_profiles
    from argus.local.controller import LocalController
    from argus.spec import parse_spec
    from argus.tools.experiment import default_profile

    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "levels": LEVELS, "model": {"steps": 20}})
    system = SimpleNamespace(service="svc", spec=spec, workdir=tmp_path, start_s=[])
    ctl = LocalController(system, default_profile(spec), source=None)

    def planned_load_times():
        ctl._plan(None)  # one period's planning, without metrics
        return {p.level: p.load_time for p in with_measured_reloads(service_profiles(spec, ctl.profile), ctl.state)}
    profiled = planned_load_times()
    assert all(v < 31 for v in profiled.values())  # the profile's load time
    system.start_s += [31.0, 12.5, 19.0]  # Triton's start-up and the model load, as measured by the runtime
    assert planned_load_times() == {lv: 31.0 for lv in profiled}
    assert ctl.state.reload_times == (31.0, 12.5, 19.0)  # the core's own list: each start counted once
    planned_load_times()
    assert ctl.state.reload_times == (31.0, 12.5, 19.0)
    system.start_s += [12.0] * 5  # only the recent starts count
    assert planned_load_times() == {lv: max(12.0, v) for lv, v in profiled.items()}


def _burst_at(capacity: int, service_s: float = 1.0, timeout_s: float = 10.0):
    """A fake burst: a machine that answers `capacity` requests per `service_s`, one after the other, and a
    router that gives up (504) on any request not answered within `timeout_s`; the sizes it was asked for."""
    from argus.tools.loadgen import Record

    sizes = []

    def burst(n, seed):
        sizes.append(n)
        done = [(i // capacity + 1) * service_s for i in range(n)]
        return [Record(0.0, t, 200) if t <= timeout_s else Record(0.0, timeout_s, 504) for t in done]
    return burst, sizes


def test_saturation_probe_halves_the_burst_until_it_is_served_whole():
    from argus.tools.experiment import probe_rate

    # 2 req/s, 10 s timeout: a burst of 64 times out; 32 -> 16 s, still partly; 16 -> 8 s: served whole
    burst, sizes = _burst_at(2)
    rate = probe_rate(burst, requests=64, rounds=2, attempts=4, pause_s=0, least=2, sleep=lambda s: None)
    assert sizes == [64, 32, 16, 16] and rate == 2.0


def test_saturation_probe_fails_clearly_when_nothing_is_served():
    from argus.tools.experiment import probe_rate

    burst, sizes = _burst_at(1, service_s=20.0)  # every request outlasts the timeout
    with pytest.raises(RuntimeError, match=r"no request served in 3 bursts down to 4 requests \(statuses \[504"):
        probe_rate(burst, requests=16, rounds=2, attempts=3, pause_s=0, least=4, sleep=lambda s: None)
    assert sizes == [16, 8, 4]


@pytest.mark.parametrize("mode", ["argus", "proteus", "ha"])
def test_initial_policy_carries_the_service_settings(tmp_path, mode):
    """Before the router serves, the service's policy document (version 0) is written with the spec's floor,
    SLO and image size: the router has no per-service defaults of its own."""
    from types import SimpleNamespace

    from argus.local.controller import LocalController
    from argus.tools.experiment import default_profile
    from argus.policy.document import parse_policy
    from argus.spec import parse_spec

    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "levels": LEVELS, "latencySLO": 7.5, "qualityFloor": 93,
                       "model": {"steps": 20, "height": 32, "width": 48}})
    (tmp_path / "policy").mkdir()
    system = SimpleNamespace(service="svc", spec=spec, workdir=tmp_path, start_s=[])
    ctl = LocalController(system, default_profile(spec), source=None, mode=mode)
    alloc = ctl.initial_allocation()
    doc = parse_policy((tmp_path / "policy" / "svc.json").read_text())
    assert (doc.version, doc.epoch, doc.allocation) == (0, ctl.epoch, alloc)
    assert (doc.quality_floor, doc.latency_slo_s, doc.image_size) == (93.0, 7.5, "48x32")
    # proteus runs the control loop prompt-agnostic: its document tells the router to ignore predictions
    assert (doc.agnostic_key is not None) == (mode == "proteus")


def test_a_benchmark_starts_once_the_loop_has_planned_from_metrics_and_its_replicas_are_ready():
    from argus.control.state import ControlState
    from argus.policy.demand import DemandState
    from argus.tools.experiment import wait_settled

    # boot: the no-metrics plan (for the target) runs; the loop then sees the load and moves back, the
    # moved replica loads, and only then is the system at its steady state
    steps = [({"cache-k0": 1, "steps-10": 1}, {"cache-k0": 1, "steps-10": 1}, None),
             ({"cache-k0": 2}, {"cache-k0": 1}, 0.2),
             ({"cache-k0": 2}, {"cache-k0": 2}, 0.2)]
    polls = []

    class System:
        def counts(self, ready_only=False):
            if ready_only:
                polls.append(1)  # one poll of wait_settled
            started, ready, _ = steps[min(len(polls) - 1, len(steps) - 1)]
            return ready if ready_only else started

    class Ctl:
        mode = "argus"

        @property
        def state(self):
            started, _, rate = steps[min(len(polls) - 1, len(steps) - 1)]
            return ControlState(allocation=dict(started), demand=DemandState(rate=rate))

    assert wait_settled(System(), Ctl(), timeout_s=5, quiet_s=0.0, poll_s=0.0) is not None
    assert len(polls) == 3  # neither at boot (no metrics yet) nor while the moved replica loaded
    # a loop that never sees metrics never settles: None at the timeout
    polls.clear()
    steps[1:] = []
    assert wait_settled(System(), Ctl(), timeout_s=0.05, quiet_s=0.0, poll_s=0.01) is None


def test_the_loop_keeps_a_trail_of_the_policies_it_applied(tmp_path):
    """Every policy document a period applies is kept compactly (version, allocation, prices, shares): what
    `bench_local.py` writes out to show how the router was steered."""
    from types import SimpleNamespace

    from argus.control.observed import MetricsUnavailable
    from argus.local.controller import LocalController
    from argus.tools.experiment import default_profile

    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "levels": LEVELS, "model": {"steps": 20}})

    class NoMetrics:
        def snapshot(self, url, service):
            raise MetricsUnavailable("PrometheusUnreachable", "not running in this test")
    system = SimpleNamespace(service="svc", spec=spec, workdir=tmp_path, start_s=[], replicas={}, ready=set(),
                             prometheus_url="http://127.0.0.1:9", counts=lambda ready_only=False: {},
                             down=lambda: [], write_state=lambda: None)
    clock = iter(range(100, 200, 5))
    ctl = LocalController(system, default_profile(spec), source=NoMetrics(), clock=lambda: float(next(clock)))
    applied = []
    ctl.actuator = SimpleNamespace(apply=lambda service, spec, p, full: applied.append(p.policy))
    for _ in range(3):
        ctl.period()
    changed = [doc for doc in applied if doc.version > 0]
    assert ctl.policies and len(ctl.policies) <= len(applied)
    first = ctl.policies[0]
    assert first["version"] == changed[0].version and first["allocation"] == changed[0].allocation
    assert set(first["shares"]) <= set(LEVELS) and set(first["prices"]) <= set(LEVELS)
    assert [p["version"] for p in ctl.policies] == sorted({p["version"] for p in ctl.policies})  # one per version


def test_the_actuator_switches_surplus_replicas_in_place_within_a_model_and_starts_only_other_weights(tmp_path):
    from types import SimpleNamespace

    from argus.contract import TritonPorts
    from argus.local.actuator import ProcessActuator
    from argus.local.runtime import Replica

    class System:
        def __init__(self):
            self.replicas = {f"w{i}": Replica(f"w{i}", "cache-k0", TritonPorts(1, 7000 + i, 3)) for i in range(4)}
            self.ready, self.workdir, self.log = {"w0", "w1", "w2"}, tmp_path, []
            (tmp_path / "policy").mkdir()

        def counts(self, ready_only=False):
            out = {}
            for n, r in self.replicas.items():
                if not ready_only or n in self.ready:
                    out[r.serves] = out.get(r.serves, 0) + 1
            return out

        def switch_worker(self, name, level):
            self.replicas[name].serving = level
            self.log.append(("switch", name, level))

        def stop_workers(self, names, drain_s, sleep):
            for n in names:
                self.replicas.pop(n)
            self.log.append(("stop", *names))

        def start_worker(self, level, wait):
            self.log.append(("start", level))

    system = System()
    spec = parse_spec({"throughputTarget": 1, "gpus": 4, "levels": [*LEVELS, "model-tiny"], "model": {"steps": 20}})
    plan = SimpleNamespace(allocation={"cache-k0": 1, "steps-5": 2, "model-tiny": 1}, policy_changed=False)
    ProcessActuator(system, sleep=lambda s: None).apply("svc", spec, plan, full=False)
    # ready replicas switch (they serve at once); the not-ready one stops and its slot loads the other weights
    assert system.log == [("switch", "w1", "steps-5"), ("switch", "w0", "steps-5"), ("stop", "w3"),
                          ("start", "model-tiny")]
    assert system.counts() == {"cache-k0": 1, "steps-5": 2}
    assert system.replicas["w1"].endpoint == "127.0.0.1:7001@cache-k0" and system.replicas["w2"].endpoint == "127.0.0.1:7002"
    replacement = Replica("w9", "steps-5", TritonPorts(1, 7009, 3), streak=2)  # a dead replica's replacement
    assert (replacement.serves, replacement.endpoint) == ("steps-5", "127.0.0.1:7009")


def test_status_says_which_worker_serves_a_level_switched_in_place(tmp_path, capsys):
    from argus import cli
    from argus.local.runtime import STATE_FILE

    procs = {"worker-cache-k0-1": {"pid": 11, "state": "running", "restarts": 0, "level": "steps-5", "loaded": "cache-k0"},
             "worker-cache-k0-2": {"pid": 12, "state": "running", "restarts": 0, "level": "cache-k0", "loaded": "cache-k0"}}
    (tmp_path / STATE_FILE).write_text(json.dumps({"service": "svc", "url": "http://x", "processes": procs,
                                                   "status": {"allocation": {"cache-k0": 1, "steps-5": 1}}}))
    assert cli.main(["status", "--workdir", str(tmp_path)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("worker-")}
    assert "serves steps-5 (switched in place from the cache-k0 it loaded)" in lines["worker-cache-k0-1"]
    assert "serves" not in lines["worker-cache-k0-2"]
