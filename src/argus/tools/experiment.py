"""Start the local system the way `argus up` does, replay a trace against it, report; the engine of the
burst e2e test, the local benchmark and `argus up --replay` (the README's first command).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from argus.adapters.prometheus_source import PrometheusSource
from argus.control.profiles import service_profiles
from argus.tools.loadgen import exact_measure, records_to_json, replay
from argus.local.controller import LOOP_MODES, LocalController
from argus.local.defaults import TINY_LEVELS, WORLD_LEVELS
from argus.local.demo_profile import at_steps, demo_profile
from argus.local.runtime import LocalSystem
from argus.policy.profile import Profile, load_default_profile, load_profile, rescaled
from argus.tools.report import summarize, timeline
from argus.spec import T2IServiceSpec

MEASURED_PROFILE = TINY_LEVELS
MEASURED_STEPS = 20  # the steps MEASURED_PROFILE was measured with
WORKER_MAX_BATCH = 8  # worker_image/model_repository/argus_t2i/config.pbtxt max_batch_size


def default_profile(spec: T2IServiceSpec) -> Profile:
    """The bundled profile of the service's model.

    The world model's (`world-sd`) is all measured: throughputs on the dev machine, each level's quality by
    the exact scorer. The tiny random-weight model's keeps its measured throughputs and takes each level's
    quality from the published SDXL numbers (an assumption, stated in the profile); run with other than the
    measured MEASURED_STEPS steps, its levels at the same share of the work (`at_steps`; a test runs the tiny
    model with 4 steps so that a busy machine serves it fast enough).
    """
    if spec.model.name == "world-sd":
        return load_profile(WORLD_LEVELS)
    measured = load_profile(MEASURED_PROFILE)
    if spec.model.steps != MEASURED_STEPS:
        measured = at_steps(measured, MEASURED_STEPS, spec.model.steps)
    return demo_profile(measured, load_default_profile(), spec.model.steps)


def boot(name: str, spec: T2IServiceSpec, workdir: Path, *, mode: str = "argus", profile: Profile | None = None,
         window: str = "20s", predictor: Path | None = None, calibrate_with: list[str] | None = None,
         on_calibrated: Callable[[LocalSystem, LocalController], None] | None = None
         ) -> tuple[LocalSystem, LocalController]:
    """Start workers, router, Envoy, Prometheus and the control loop (in a thread); stop all on failure.

    With `calibrate_with` (prompts), the profile is first rescaled to this machine (`calibrate`), then
    `on_calibrated` runs, then the loop starts.
    """
    system = LocalSystem(name, spec, workdir, sizes=(f"{spec.model.width}x{spec.model.height}",),
                         predictor=predictor)
    ctl = LocalController(system, profile or default_profile(spec), PrometheusSource(window=window), mode=mode)
    try:
        system.start(ctl.initial_allocation(), with_prometheus=True)
        if calibrate_with is not None:
            ctl.calibration = calibrate(system, ctl, calibrate_with, settle_s=_seconds(window) + 5)
            if on_calibrated is not None:
                on_calibrated(system, ctl)
        ctl.period()
        ctl.start()
    except BaseException:
        ctl.stop()
        system.stop()
        raise
    return system, ctl


def warm_up(system: LocalSystem, prompts: list[str], *, timeout_s: float = 300.0) -> None:
    """One request per replica at once (least-pending dispatch spreads them): first-call costs paid."""
    asyncio.run(replay(system.url, [0.0] * max(1, len(system.replicas)), prompts, size=system.sizes[0],
                       timeout_s=timeout_s, progress=False, seed=1))


def saturation_throughput(system: LocalSystem, prompts: list[str], *, requests: int, rounds: int = 2,
                          timeout_s: float = 300.0, attempts: int = 4, pause_s: float = 5.0) -> float:
    """What the running allocation serves per second when it is saturated, measured, not read off a profile.

    After a warm-up, `requests` at once (a closed burst): served requests / seconds until the last
    answer. With `requests` = replicas x the worker's max batch this is one full batch per replica,
    the rate an overloaded replica sustains. The best of `rounds` bursts: other work on the machine
    can only slow a burst down (one run here measured 0.70 req/s where the same system then served
    1.05 without violations). Used to scale a test's load to the machine it runs on (machines of one
    kind still differ by ~1.5x).

    A burst with a request the router gave up on (its timeout is a few SLOs) says nothing about the rate:
    on a machine busy with other work a full batch per replica outlasted it (every answer 504). The probe
    then waits `pause_s` (the workers drop the abandoned requests) and tries half the burst, at least one
    request per replica, up to `attempts` such failures (`probe_rate`); a smaller batch serves a little
    less per second (~8% from 8 to 4 in the bundled profile), so the measure then errs low.
    """
    warm_up(system, prompts, timeout_s=timeout_s)

    def burst(n: int, seed: int):
        return asyncio.run(replay(system.url, [0.0] * n, prompts, size=system.sizes[0], timeout_s=timeout_s,
                                  progress=False, seed=seed))[0]
    return probe_rate(burst, requests=requests, rounds=rounds, attempts=attempts, pause_s=pause_s,
                      least=max(1, len(system.replicas)))


def probe_rate(burst, *, requests: int, rounds: int, attempts: int, pause_s: float, least: int,
               sleep=time.sleep) -> float:
    """The saturation probe's rounds and retries (see `saturation_throughput`): `burst(n, seed)` sends n
    requests at once and returns their records. The best rate of `rounds` bursts that were served whole;
    after a burst with failures, half as many (not below `least`); after `attempts` such bursts, the best
    partial rate, or an error when nothing was served at all."""
    best, good, failures, seed, n = 0.0, 0, 0, 2, requests
    partial, seen = 0.0, []
    while good < rounds:
        records = burst(n, seed)
        seed += 1
        ok = [r for r in records if r.status == 200]
        rate = len(ok) / max(r.t_sent + r.latency for r in ok) if ok else 0.0
        if ok and len(ok) == len(records):
            best, good = max(best, rate), good + 1
            continue
        partial = max(partial, rate)
        seen += [r.status for r in records if r.status != 200][:5]
        failures += 1
        if failures >= attempts:
            if best or partial:
                return best or partial
            raise RuntimeError(f"saturation probe: no request served in {failures} bursts down to {n} requests "
                               f"(statuses {seen[:10]})")
        n = max(least, n // 2)
        sleep(pause_s)
    return best


def wait_settled(system: LocalSystem, ctl: LocalController, *, timeout_s: float, quiet_s: float = 15.0,
                 poll_s: float = 1.0) -> float | None:
    """Seconds until the system is at its steady state, or None at timeout: every replica ready, the loop's
    allocation planned from observed metrics (not the no-metrics plan made at boot, which is for the
    target) and in force, and nothing changed for `quiet_s`. A fixed-policy mode is settled once ready.

    How a benchmark starts every mode from where a service that has run a while would be: a loop mode's
    first plan is for the throughput target, and the move back to what the observed load needs costs
    a replica load (10-40 s here) that a trace starting at once would charge to the loop.
    """
    t0 = time.monotonic()
    stable_since, last = None, None
    while True:
        ready = {k: n for k, n in system.counts(ready_only=True).items() if n}
        started = {k: n for k, n in system.counts().items() if n}
        observed = ctl.mode not in LOOP_MODES or ctl.state.demand.rate is not None
        want = ({k: n for k, n in ctl.state.allocation.items() if n} if ctl.mode in LOOP_MODES else started)
        now = time.monotonic()
        if observed and ready == started == want:
            if last != ready:
                stable_since, last = now, ready
            if now - stable_since >= quiet_s:
                return now - t0
        else:
            stable_since, last = None, None
        if now - t0 >= timeout_s:
            return None
        time.sleep(poll_s)


def wait_for_ready(system: LocalSystem, want: dict[str, int], *, timeout_s: float, poll_s: float = 1.0) -> float | None:
    """Seconds until exactly `want` replicas per level are ready (levels not named: none), or None at timeout.

    How a test asks "did the controller give capacity back after the burst" without depending on how
    long the replay's tail happens to be on this machine: a move back decided in the last seconds of a
    replay still needs a replica load (10-40 s here) before it shows.
    """
    t0 = time.monotonic()
    while True:
        ready = {k: n for k, n in system.counts(ready_only=True).items() if n}
        if ready == {k: n for k, n in want.items() if n}:
            return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout_s:
            return None
        time.sleep(poll_s)


def calibrate(system: LocalSystem, ctl: LocalController, prompts: list[str], *, settle_s: float) -> dict:
    """Rescale the controller's profile to this machine: the running allocation's saturated rate, measured,
    over what the profile says it serves. Before the loop's first period; returns what was measured.

    The bundled demo throughputs were measured on one machine; machines of the same kind run the tiny
    model 1-3x as fast, and a loop that plans with another machine's numbers moves capacity at the
    wrong loads. Exact when the running allocation is one level (the demo starts at full quality);
    with a mix, least-pending dispatch makes the slowest level set the pace and the factor is low.
    The probe's requests then leave Prometheus's rate window (`settle_s`) so the loop does not read
    them as demand.
    """
    alloc = system.counts()
    profiles = {lp.level: lp for lp in service_profiles(system.spec, ctl.profile)}
    planned = sum(n * profiles[lv].peak_throughput for lv, n in alloc.items())
    measured = saturation_throughput(system, prompts, requests=WORKER_MAX_BATCH * sum(alloc.values()))
    factor = measured / planned
    ctl.profile = rescaled(ctl.profile, factor, f"calibrated: {_alloc_text(alloc)} served {measured:.2f} req/s "
                                                f"saturated on this machine, the bundled profile says {planned:.2f}")
    time.sleep(settle_s)
    return {"allocation": alloc, "measuredRps": round(measured, 4), "profiledRps": round(planned, 4),
            "factor": round(factor, 4)}


def _alloc_text(alloc: dict[str, int]) -> str:
    return " + ".join(f"{n} {lv}" for lv, n in sorted(alloc.items()))


def _seconds(window: str) -> float:
    """Seconds in a Prometheus duration like "20s" or "1m" (the forms this module uses)."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(window[:-1]) * units[window[-1]]


@dataclass
class Action:
    """Something done to the running system `at` seconds into a replay (fault injection)."""

    at: float
    name: str
    do: Callable[[LocalSystem], object]
    result: object = field(default=None, init=False)
    done_at: float | None = field(default=None, init=False)


def replay_report(system: LocalSystem, arrivals, prompts: list[str], *, label: str, trace: str, slo_s: float,
                  actions: tuple[Action, ...] = (), bin_s: float | None = None, progress: bool = True) -> dict:
    """Replay `arrivals` open loop against the system's Envoy, run `actions` on time; the report document."""
    duration = float(arrivals[-1]) if len(arrivals) else 0.0
    stop = threading.Event()
    acted = threading.Event()  # every action has run
    t0 = time.monotonic()

    def act():
        for a in sorted(actions, key=lambda a: a.at):
            if stop.wait(max(0.0, a.at - (time.monotonic() - t0))):
                return
            try:
                a.result = a.do(system)
            except Exception as e:  # reported in the document, never kills the replay
                a.result = e
            a.done_at = time.monotonic() - t0
        acted.set()
        # Stay alive until the replay ends: children get PR_SET_PDEATHSIG, which fires when the *thread*
        # that started them exits, so a process an action starts (a restarted Prometheus) lives as long
        # as this thread.
        stop.wait()

    th = threading.Thread(target=act, name="argus-actions", daemon=True)
    th.start()
    try:
        records, samples = asyncio.run(replay(system.url, arrivals, prompts, size=system.sizes[0],
                                              timeout_s=max(4 * slo_s, 60), state_file=system.workdir / "state.json",
                                              progress=progress, measure=exact_measure))
        # The last answers can come before the last action's time on a fast machine: the actions
        # still run on time (they are part of the experiment), then the replay ends.
        last = max((a.at for a in actions), default=0.0)
        acted.wait(max(0.0, last - (time.monotonic() - t0)) + 60)
    finally:
        stop.set()
        th.join(30)
    wall = max(duration, time.monotonic() - t0)
    lq = (system.status or {}).get("levelQuality")
    summary = summarize(records, slo_s=slo_s, duration=wall, level_quality=lq)
    tl = timeline(records, samples, slo_s=slo_s, bin_s=bin_s or max(5.0, duration / 36), duration=wall,
                  level_quality=lq)
    return {"label": label, "trace": trace, "mode": (system.status or {}).get("mode"), "summary": summary,
            "timeline": tl, "level_quality": lq,
            "assumptions": (system.status or {}).get("profileAssumptions", []),
            "actions": [{"name": a.name, "at": a.at, "done_at": a.done_at, "result": repr(a.result)[:300]}
                        for a in actions],
            **records_to_json(records, samples)}
