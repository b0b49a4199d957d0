"""Faults in the whole local system (real Prometheus, Envoy, router, Triton workers, the control loop)
during a replay at a steady off-peak rate.

Cases:
- a worker process killed (SIGKILL) while it holds requests (frozen with SIGSTOP as they arrive): every accepted request still
  succeeds (the router retried at least one on the other replica), and the runtime starts a
  replacement that becomes ready, so the allocation is whole again;
- Prometheus stopped: the loop holds its allocation, reports Degraded (PrometheusUnreachable) in the
  status file and in `argus status`; Prometheus started again: Degraded clears while the replay runs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import signal

import numpy as np
import pytest

from argus import cli
from argus.local.defaults import TINY_MANIFEST
from argus.tools.experiment import Action, boot, replay_report, wait_for_ready
from argus.local.runtime import read_state
from argus.spec import parse_manifest
from argus.tools.workload import read_prompts

pytestmark = pytest.mark.skipif(not (shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")),
                                reason="needs the prometheus binary (scripts/setup.sh installs it)")

KILL_AT, PROM_DOWN, PROM_UP, END = 10.0, 25.0, 45.0, 85.0


def _victim(system) -> str:
    return sorted(n for n, r in system.replicas.items() if r.level == "cache-k0")[0]


def freeze_worker(system):
    """SIGSTOP one full-quality worker: what the router sends it from now on stays in flight (however fast the
    machine serves a 4-step image) until it is killed; its name."""
    name = _victim(system)
    os.killpg(system.supervisor.children[name].popen.pid, signal.SIGSTOP)
    return name


def kill_busy_worker(system):
    """SIGKILL the process group of the frozen full-quality worker; its name."""
    name = _victim(system)
    os.killpg(system.supervisor.children[name].popen.pid, signal.SIGKILL)
    return name


def seen_alloc(system) -> dict:
    """The allocation the control loop wants now."""
    return read_state(system.workdir)["status"]["allocation"]


def status_output(system):
    """The loop's conditions and what `argus status` prints, now."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["status", "--workdir", str(system.workdir)])
    return {"conditions": read_state(system.workdir)["status"]["conditions"],
            "allocation": read_state(system.workdir)["status"]["allocation"], "rc": rc, "text": buf.getvalue()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One replay with the faults injected on time; the report and what the actions saw."""
    m = copy.deepcopy(TINY_MANIFEST)
    m["spec"].update(levels=["cache-k0", "steps-2"], latencySLO=30, controlPeriod=3, gpus=2, throughputTarget=1.0)
    # 4 steps, 32x32: with other jobs on the 2 cores a 20-step 64x64 image took 13-60 s, and the off-peak
    # rate below overloaded the system (every request timed out).
    m["spec"]["model"].update(steps=4, height=32, width=32)
    name, spec = parse_manifest(m)
    # Off-peak 0.25 req/s, plus six requests just before the kill, while the victim is frozen.
    steady = np.arange(1.0, END, 4.0)
    arrivals = np.sort(np.concatenate([steady, np.full(6, KILL_AT - 1.5) + np.arange(6) * 0.05]))
    system, ctl = boot(name, spec, tmp_path_factory.mktemp("faults"), mode="argus", window="10s")
    seen = {}
    actions = (
        Action(KILL_AT - 2, "freeze worker", freeze_worker),
        Action(KILL_AT, "kill worker", kill_busy_worker),
        Action(PROM_DOWN - 1, "before outage", status_output),
        Action(PROM_DOWN, "stop prometheus", lambda s: s.supervisor.stop("prometheus")),
        Action(PROM_UP - 2, "during outage", status_output),
        Action(PROM_UP, "start prometheus", lambda s: s.start_prometheus()),
        Action(END - 3, "after outage", status_output),
    )
    try:
        doc = replay_report(system, arrivals, read_prompts(), label="faults", trace="steady+faults", slo_s=30,
                            actions=actions, bin_s=5, progress=False)
        # The replacement loads the model: 10-40 s here with one other job, over 75 s (the rest of the replay)
        # beside a nice -10 training job and five other sessions' tests.
        seen["replaced_after_s"] = wait_for_ready(system, {k: v for k, v in seen_alloc(system).items() if v},
                                                  timeout_s=300)
        seen["replicas"] = dict(system.replicas)
        seen["ready"] = system.counts(ready_only=True)
    finally:
        ctl.stop()
        system.stop()
    seen["actions"] = {a.name: a.result for a in actions}
    return doc, seen


def test_killed_worker_loses_no_request_and_is_replaced(run):
    doc, seen = run
    records = doc["records"]
    assert records and all(r["status"] == 200 for r in records), [r for r in records if r["status"] != 200]
    assert sum(r["retries"] or 0 for r in records) >= 1  # the kill hit requests in flight
    killed = seen["actions"]["kill worker"]
    assert killed not in seen["replicas"]
    assert seen["ready"] == {k: v for k, v in seen["actions"]["after outage"]["allocation"].items() if v}


def test_prometheus_outage_holds_allocation_and_reports_degraded(run):
    doc, seen = run
    before, during, after = (seen["actions"][k] for k in ("before outage", "during outage", "after outage"))
    assert not before["conditions"]["Degraded"], before
    assert during["conditions"]["Degraded"] and during["conditions"]["DegradedReason"] == "PrometheusUnreachable"
    assert "Degraded=True PrometheusUnreachable" in during["text"] and during["rc"] == 0
    assert during["allocation"] == before["allocation"]
    held = [s["allocation"] for s in doc["allocation"] if PROM_DOWN + 5 <= s["t"] < PROM_UP]
    assert held and all(a == held[0] for a in held)
    assert seen["actions"]["start prometheus"] is None  # started without error
    assert not after["conditions"]["Degraded"], after["conditions"]  # recovered while the replay ran
    assert any(s["degraded"] is False for s in doc["allocation"] if s["t"] > PROM_UP)
