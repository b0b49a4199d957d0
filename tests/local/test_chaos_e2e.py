"""Chaos: SIGKILL each part of the running local system in turn, under load (real Prometheus, Envoy, router,
Triton workers and the control loop, as `argus up` starts them).

Closed-loop clients keep both replicas busy (a closed loop adapts to the machine: an open-loop rate
that a quiet machine serves overloads a busy one, and then nothing says whether a kill or the queue
failed a request). The router, then Envoy, then Prometheus, then a worker (frozen with SIGSTOP while a burst
arrives, so that it surely holds requests) get SIGKILL; after each,
the driver waits until the supervisor has the process back and a request is served after the
kill, then lets the service run a few seconds before the next kill. Cases:
- the service answers again within RECOVER_S of each kill (or 0.5 s + twice the process's first start, where
  this machine took longer than that to start it at all);
- Ready goes False while the router or Envoy is down (naming it), and is True again at the end;
- the only failed requests overlap an outage of the router (Envoy's 503) or of Envoy itself (the
  connection is refused or reset); a request a worker accepted is never lost: none fails around the
  Prometheus and worker kills, and the router retried one the killed worker had;
- the control loop runs a period with metrics (not Degraded) after Prometheus returns;
- every killed process is back (the worker by a replacement that becomes ready) with restart count
  1, each restart was reported once, and `argus status` shows each process's state and restarts.
One level (cache-k0) so the loop has no capacity to move (its decisions are tested elsewhere), and the
tiny model at 4 steps, 32x32: with a training job beside the suite a 20-step 64x64 image took 12-20 s
here, longer than the recovery bound itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from argus import cli
from argus.local.defaults import TINY_MANIFEST
from argus.tools.experiment import boot
from argus.local.runtime import read_state
from argus.spec import parse_manifest

pytestmark = [pytest.mark.serial,
              pytest.mark.skipif(not (shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")),
                                 reason="needs the prometheus binary (scripts/setup.sh installs it)"),
              pytest.mark.timeout(600)]

RECOVER_S = 15.0
TARGETS = ("router", "envoy", "prometheus", "worker")
CLIENTS = 3  # > 2 replicas: each has a request in flight at any time
GAP_S = 3.0  # normal service between kills
BURST = 6  # extra requests at once just before the worker kill
# A replacement worker loads the model: 10-40 s here with one other job, over 120 s beside a nice -10
# training job and five other sessions' tests.
REPLACE_S = 300.0
FULL = "cache-k0"


@dataclass
class Rec:
    t0: float
    t1: float
    status: int  # 0: no HTTP answer (connection refused or reset)
    retries: int = 0
    error: str = ""


async def _load(url: str, size: str, stop: threading.Event, recs: list[Rec]) -> None:
    async def client(c: int):
        i = 0
        while not stop.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                r = await http.post(f"{url}/v1/images/generations", timeout=120,
                                    json={"prompt": f"a lighthouse at dawn {c} {i}", "size": size, "seed": i})
                rec = _answered(t0, r)
            except httpx.HTTPError as e:
                rec = Rec(t0, time.monotonic(), 0, error=type(e).__name__)
            recs.append(rec)
            if rec.status != 200:
                await asyncio.sleep(0.25)

    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(client(c) for c in range(CLIENTS)))


def _answered(t0: float, r: httpx.Response) -> Rec:
    """The record of one answered request (with the router's retry count when it succeeded)."""
    rec = Rec(t0, time.monotonic(), r.status_code, error=r.text[:160] if r.status_code != 200 else "")
    if r.status_code == 200:
        rec.retries = r.json()["argus"][0]["retries"] or 0
    return rec


def _post(system, prompt: str, recs: list[Rec]) -> None:
    t0 = time.monotonic()
    try:
        rec = _answered(t0, httpx.post(f"{system.url}/v1/images/generations", timeout=120,
                                       json={"prompt": prompt, "size": system.sizes[0], "seed": 0}))
    except httpx.HTTPError as e:
        rec = Rec(t0, time.monotonic(), 0, error=type(e).__name__)
    recs.append(rec)


def _kill(system, target: str, recs: list[Rec]) -> dict:
    """SIGKILL `target`, then wait until it is back and a request sent after the kill is served."""
    name = sorted(n for n, r in system.replicas.items() if r.level == FULL)[0] if target == "worker" else target
    pid = system.supervisor.children[name].popen.pid
    if target == "worker":
        # Frozen first, then a burst: what the router sends it stays in flight until the kill, however fast
        # the machine (a 4-step image can be done before a kill timed by the clock).
        os.killpg(pid, signal.SIGSTOP)
        for i in range(BURST):
            threading.Thread(target=_post, args=(system, f"a burst before the kill {i}", recs), daemon=True).start()
        time.sleep(1.0)
    t0, wall0 = time.monotonic(), time.time()
    os.kill(pid, signal.SIGKILL)
    out = {"name": name, "t": t0, "not_ready": set(), "back_s": None, "answered_s": None, "replacement": None,
           # how long its first start took to answer: a restart cannot be faster than that on this machine
           # (a worker kill leaves the other replica serving: no such allowance)
           "cold_start_s": None if target == "worker" else system.supervisor.children[name].ready_s}
    while time.monotonic() - t0 < 3 * RECOVER_S and out["answered_s"] is None:
        st = read_state(system.workdir)
        if not st["status"]["conditions"]["Ready"]:
            out["not_ready"].add(st["status"]["conditions"]["ReadyReason"])
        procs = st["processes"]
        if out["back_s"] is None:
            if target == "worker":  # replaced by a new process
                new = [n for n, p in procs.items() if p.get("level") == FULL and p["restarts"] == 1]
            else:
                new = [name] if procs[name]["restarts"] == 1 and procs[name]["state"] == "running" else []
            if new:
                out["back_s"], out["replacement"], out["back_wall"] = time.monotonic() - t0, new[0], time.time()
        # answering again: a request sent after the kill and served (after a worker kill, the other replica
        # never stopped). Not one merely answered after it: a reply Envoy had sent as it was killed ended
        # 2 ms after the kill and closed the outage before it began (a request 3 ms later failed "outside").
        served = [r.t1 for r in list(recs) if r.t0 > t0 and r.status == 200]
        if out["back_s"] is not None and served:
            out["answered_s"] = min(served) - t0
        time.sleep(0.05)
    if target == "prometheus":  # the control loop runs a period with metrics again
        while time.monotonic() - t0 < 4 * RECOVER_S:
            status = read_state(system.workdir)["status"]
            if status["updated"] > out["back_wall"] and not status["conditions"]["Degraded"]:
                out["loop_resumed_s"] = status["updated"] - wall0
                break
            time.sleep(0.1)
    if target == "worker":  # its replacement loads the model
        while time.monotonic() - t0 < REPLACE_S and system.counts(ready_only=True).get(FULL, 0) < 2:
            time.sleep(0.2)
        out["replacement_ready_s"] = time.monotonic() - t0
    return out


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    m = copy.deepcopy(TINY_MANIFEST)
    m["spec"].update(levels=[FULL], latencySLO=30, controlPeriod=3, gpus=2, throughputTarget=1.0)
    m["spec"]["model"].update(steps=4, height=32, width=32)
    name, spec = parse_manifest(m)
    system, ctl = boot(name, spec, tmp_path_factory.mktemp("chaos"), mode="argus", window="10s")
    events, report = [], system.event
    system.event = lambda text: (events.append(text), report(text))
    recs: list[Rec] = []
    stop = threading.Event()
    kills, seen = {}, {}

    def drive():
        try:
            deadline = time.monotonic() + 120
            while sum(r.status == 200 for r in list(recs)) < CLIENTS and time.monotonic() < deadline:
                time.sleep(0.2)  # warm: every client served once
            for target in TARGETS:
                kills[target] = _kill(system, target, recs)
                time.sleep(GAP_S)
        except Exception as e:  # reported by the tests
            kills["error"] = repr(e)
        finally:
            stop.set()

    t_start = time.monotonic()
    driver = threading.Thread(target=drive, name="chaos")
    try:
        driver.start()
        asyncio.run(_load(system.url, system.sizes[0], stop, recs))
        driver.join()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli.main(["status", "--workdir", str(system.workdir)])
        seen["status_text"] = buf.getvalue()
        seen["state"] = read_state(system.workdir)
    finally:
        stop.set()
        ctl.stop()
        system.stop()
    seen.update(kills=kills, events=events, recs=recs)
    by_status: dict[int, int] = {}
    for r in recs:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    print(f"\nchaos: {len(recs)} requests in {time.monotonic() - t_start:.0f} s, by status {by_status}")
    for target, k in kills.items():
        print(f"  {target}: " + (", ".join(f"{x} {k.get(x) if not isinstance(k.get(x), float) else round(k[x], 2)}"
                                            for x in ("cold_start_s", "back_s", "answered_s", "not_ready", "loop_resumed_s",
                                                      "replacement_ready_s") if x in k)
                                  if isinstance(k, dict) else k))
    return seen


def test_service_answers_again_within_15_s_of_each_kill(chaos):
    assert set(chaos["kills"]) == set(TARGETS), chaos["kills"]
    for target, k in chaos["kills"].items():
        assert k["back_s"] is not None and k["answered_s"] is not None and k["answered_s"] <= _bound(k), (target, k)


def _bound(kill: dict) -> float:
    """RECOVER_S, or longer where this machine took longer than that to start the process the first time: on
    a CPU starved by other jobs the router's cold start alone took over 20 s (2-5 s with one other job)."""
    cold = kill.get("cold_start_s") or 0.0
    return max(RECOVER_S, 0.5 + 2 * cold)


def test_ready_is_false_while_the_front_door_is_down(chaos):
    kills = chaos["kills"]
    assert "router down" in kills["router"]["not_ready"], kills["router"]
    assert "envoy down" in kills["envoy"]["not_ready"], kills["envoy"]
    assert not any("down" in (r or "") for r in kills["prometheus"]["not_ready"]), kills["prometheus"]
    assert chaos["state"]["status"]["conditions"]["Ready"] is True, chaos["state"]["status"]["conditions"]


def test_only_requests_at_a_dead_front_door_fail_and_no_accepted_request_is_lost(chaos):
    kills, recs = chaos["kills"], chaos["recs"]
    outages = {t: (kills[t]["t"], kills[t]["t"] + kills[t]["answered_s"]) for t in ("router", "envoy")}
    for r in (r for r in recs if r.status != 200):
        where = [t for t, (lo, hi) in outages.items() if r.t0 <= hi and r.t1 >= lo]
        assert where, (r, outages)  # failed outside any front-door outage
        if where == ["router"]:
            assert r.status == 503, r  # Envoy's JSON 503 (upstream reset / connect failure)
        else:
            assert r.status in (0, 503), r  # Envoy gone: the connection is refused or reset
    # around the worker kill every request succeeded, and one the killed worker had was retried elsewhere
    t = kills["worker"]["t"]
    near = [r for r in recs if r.t1 >= t]
    assert near and all(r.status == 200 for r in near), [r for r in near if r.status != 200]
    assert sum(r.retries for r in near if r.t0 < t) >= 1, [r for r in near if r.t0 < t]
    for a, b in zip(TARGETS, TARGETS[1:]):  # the service served between the kills
        assert any(r.status == 200 and kills[a]["t"] + kills[a]["answered_s"] < r.t1 < kills[b]["t"] for r in recs)


def test_control_loop_resumes_after_prometheus_returns(chaos):
    k = chaos["kills"]["prometheus"]
    assert k.get("loop_resumed_s") is not None and k["loop_resumed_s"] < 4 * RECOVER_S, (k, chaos["state"]["status"])


def test_every_killed_process_is_back_counted_and_reported_once(chaos):
    procs, events, kills = chaos["state"]["processes"], chaos["events"], chaos["kills"]
    for target in ("router", "envoy", "prometheus"):
        assert procs[target]["state"] == "running" and procs[target]["restarts"] == 1, (target, procs[target])
        assert procs[target]["lastExit"] == "killed by SIGKILL"
        lines = [e for e in events if e.startswith(f"{target} exited")]
        assert len(lines) == 1 and "killed by SIGKILL" in lines[0], events
    killed, new = kills["worker"]["name"], kills["worker"]["replacement"]
    assert killed not in procs
    assert procs[new]["state"] == "running" and procs[new]["restarts"] == 1, procs
    assert len([e for e in events if e.startswith(f"{killed} exited")]) == 1, events
    assert kills["worker"]["replacement_ready_s"] < REPLACE_S
    assert procs["control"]["state"] == "running" and procs["control"]["restarts"] == 0
    text = chaos["status_text"]
    for target in ("router", "envoy", "prometheus", new):
        line = next(x for x in text.splitlines() if x.strip().startswith(target + " "))
        assert "running" in line and "restarts 1" in line, text
