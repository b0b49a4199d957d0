"""The local control loop: the operator's period (observe → plan → apply → status) on local processes.

It runs the same `argus.control.loop.plan` as the kopf operator, reads the same
Prometheus metrics through the same adapter, and applies plans with the process
actuator. Comparison modes: proteus runs the same loop prompt-agnostic (Proteus-like); ha, ht and nirvana replace
the loop with the baselines' fixed policies (argus.policy.baselines, the simulator's too).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from argus.control.loop import Plan, plan, with_reload_times
from argus.control.observed import MetricsUnavailable
from argus.control.profiles import service_profiles
from argus.control.state import ControlState
from argus.local.actuator import ProcessActuator
from argus.local.runtime import LocalSystem
from argus.policy.baselines import FIXED, fixed_plan
from argus.policy.profile import Profile

log = logging.getLogger("argus.local")

MODES = ("argus", "proteus", *FIXED)
LOOP_MODES = ("argus", "proteus")  # run the control loop (proteus: prompt-agnostic); the others are fixed policies


POLICY_TRAIL = 400  # policy documents kept (a 10-minute run at a 1 s period)


def policy_trail(doc, now: float) -> dict:
    """One applied policy document, compactly: when, which version, the allocation, prices and shares."""
    return {"t": round(now, 1), "version": doc.version, "allocation": dict(doc.allocation), "overload": doc.overload,
            "prices": {k: round(v, 2) for k, v in doc.prices.items()},
            "shares": {k: round(v, 3) for k, v in doc.shares.items()}}


@dataclass
class LocalController:
    """Runs control periods in a background thread until stopped."""

    system: LocalSystem
    profile: Profile
    source: object  # has .snapshot(url, service) -> MetricsSnapshot (argus.adapters.prometheus_source)
    mode: str = "argus"
    clock: object = time.time
    state: ControlState = field(default_factory=ControlState)
    events: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why each change was made (the plan's reason)
    # every policy document the loop applied, compactly: what a benchmark reads back to see how the router
    # was steered (allocation, per-level prices and capacity shares), period by period
    policies: list[dict] = field(default_factory=list)
    calibration: dict | None = None  # what `argus.tools.experiment.calibrate` measured, when it ran

    def __post_init__(self):
        self.actuator = ProcessActuator(self.system)
        # This run's policy lineage: a new `argus up` in a used workdir restarts at version 1, and the
        # router must not keep an older run's higher-versioned policy (argus.policy.document).
        self.epoch = f"local-{uuid.uuid4().hex[:12]}"
        self._last: Plan | None = None  # the plan in force (argus mode)
        self._starts_seen = 0  # replica starts of the runtime's (start_s) already given to the core
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The loop is watched like a process (LocalSystem.supervise): restarted with backoff if its thread ends.
        self.restarts, self._streak, self._started = 0, 0, time.monotonic()
        self._restart_at: float | None = None
        self._last_exit: str | None = None
        self.last_period: float | None = None  # monotonic time the last period finished

    def initial_allocation(self) -> dict[str, int]:
        """What to start with: the baseline's allocation, or the loop's first plan without metrics."""
        spec = self.system.spec
        if self.mode not in LOOP_MODES:
            alloc, doc = fixed_plan(self.mode, self.system.service, service_profiles(spec, self.profile), spec.gpus,
                                    spec.data_plane(), self.epoch)
        else:
            p = self._plan(None)
            alloc, doc = p.allocation, p.policy
        # The router takes the service's floor, SLO and image size from its policy document only: write one
        # before it serves (as the operator creates the ConfigMap with the workers). Version 0, so the first
        # period's document (version 1) replaces it.
        start = doc.model_copy(update={"version": 0, "reason": "initial allocation, before the first period"})
        self.actuator.write_policy(Plan(allocation=alloc, policy=start, state=self.state, changed=False,
                                        policy_changed=True, event=None))
        return alloc

    def _plan(self, observed, loading: int = 0) -> Plan:
        spec = self.system.spec
        # replica starts the runtime timed since the last period (boot's too) join the reloads the core
        # measures itself; it plans a move's reloads at the slowest recent one (with_measured_reloads)
        starts = self.system.start_s
        self.state, self._starts_seen = with_reload_times(self.state, tuple(starts[self._starts_seen:])), len(starts)
        return plan(self.system.service, spec, service_profiles(spec, self.profile), observed, self.state,
                    self.clock(), generation=1, epoch=self.epoch, agnostic=self.mode == "proteus", loading=loading,
                    in_place=True)  # the process actuator switches a worker between levels of its weights

    def period(self) -> Plan | None:
        """One control period: observe, plan, apply, record status. Fixed baseline modes only re-assert their policy."""
        spec = self.system.spec
        if self.mode not in LOOP_MODES:
            alloc, doc = fixed_plan(self.mode, self.system.service, service_profiles(spec, self.profile), spec.gpus,
                                    spec.data_plane(), self.epoch)
            p = Plan(allocation=alloc, policy=doc, state=self.state, changed=False, policy_changed=True, event=None)
            self.actuator.apply(self.system.service, spec, p, full=False)
            self._status(p, None)
            return p
        degraded = None
        try:
            observed = self.source.snapshot(self.system.prometheus_url, self.system.service)
        except MetricsUnavailable as e:
            observed, degraded = None, (e.reason, str(e))
        p = self._plan(observed, loading=self._loading())
        if p.progressing:  # the core keeps the allocation in force while a replica of it loads
            self.state = p.state
            self._status(self._last or p, degraded, progressing=True)
            return None
        self._last = p
        self.actuator.apply(self.system.service, spec, p, full=False)
        self.state = p.state
        if p.policy_changed:
            self.policies = (self.policies + [policy_trail(p.policy, self.clock())])[-POLICY_TRAIL:]
        if p.event:
            self._event(p.event)
            # why, in the core's numbers (the weighing of hold against move): what a benchmark reads back
            self.reasons = (self.reasons + [f"{time.strftime('%H:%M:%S')} {p.reason[:600]}"])[-20:]
        self._status(p, degraded)
        return p

    def _event(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.events = (self.events + [f"{stamp} {text}"])[-20:]
        log.info("reallocation: %s", text)
        print(f"[argus] {text}", flush=True)

    def _loading(self) -> int:
        """Replicas started and still loading (not ready, within the runtime's readiness timeout)."""
        now = time.monotonic()
        return sum(1 for name in self.system.replicas
                   if name not in self.system.ready and (child := self.system.supervisor.children.get(name)) is not None
                   and now - child.started < self.system.ready_timeout_s)

    def _status(self, p: Plan, degraded, progressing: bool = False) -> None:
        ready = self.system.counts(ready_only=True)
        replicas_ready = all(ready.get(k, 0) >= n for k, n in p.allocation.items())
        down = self.system.down()
        conditions = {
            # Ready: the planned replicas serve and so do the router and Envoy in front of them.
            "Ready": replicas_ready and not down,
            "ReadyReason": f"{'/'.join(down)} down" if down else None if replicas_ready else "replicas not ready",
            "ReplicasReady": replicas_ready,
            "Progressing": progressing,
            "Degraded": bool(degraded),
            "DegradedReason": degraded[0] if degraded else None,
            "DegradedMessage": degraded[1] if degraded else None,
        }
        levels = service_profiles(self.system.spec, self.profile)
        self.system.status = {"mode": self.mode, "allocation": p.allocation, "ready": ready,
                              "policyVersion": p.policy.version, "reason": p.reason[:500], "conditions": conditions,
                              "observed": p.status,
                              "events": self.events, "updated": self.clock(),
                              # What the plans assume each level's quality is, and where that came from.
                              "levelQuality": {lp.level: lp.quality for lp in levels},
                              "calibration": self.calibration,
                              # every slot at full quality, saturated, by the profile in use
                              "fullQualityCapacityRps": round(self.system.spec.gpus * levels[0].peak_throughput, 4),
                              "profileAssumptions": list(self.profile.assumptions)}
        self.system.write_state()

    def start(self) -> None:
        """Run periods every control period in a daemon thread; probe workers every second. The system's
        supervision restarts the thread if it ever ends."""
        self.system.loops["control"] = self
        self._spawn()

    def _spawn(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="argus-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.system.spec.control_period
        next_run = time.monotonic() + period
        while not self._stop.is_set():
            try:
                for e in self.system.tick():
                    log.info(e)
                if time.monotonic() >= next_run:
                    next_run = time.monotonic() + period
                    self.period()
                    self.last_period = time.monotonic()
            except Exception:  # the loop must survive anything one period throws
                log.exception("control period failed")
            self._stop.wait(1.0)

    def watch(self) -> list[str]:
        """Called by the system's supervision: restart the loop's thread (with backoff) if it ended."""
        if self._stop.is_set() or self._thread is None or self._thread.is_alive():
            return []
        b, now = self.system.backoff, time.monotonic()
        if self._restart_at is None:
            ran = now - self._started
            self._streak = b.streak(self._streak, ran)
            self._restart_at = now + b.delay(self._streak)
            self._last_exit = f"thread ended after {ran:.1f} s"
        if now < self._restart_at:
            return []
        self.restarts += 1
        self._restart_at = None
        self._spawn()
        return [f"control loop {self._last_exit}: restarted after {b.delay(self._streak):g} s (restart {self.restarts})"]

    def info(self) -> dict:
        """The loop as `argus status` shows it, like a process."""
        alive = self._thread is not None and self._thread.is_alive()
        age = None if self.last_period is None else round(time.monotonic() - self.last_period, 1)
        return {"state": "running" if alive else "backoff" if not self._stop.is_set() else "exited",
                "restarts": self.restarts, "pid": None,
                "uptime_s": round(time.monotonic() - self._started, 1) if alive else None,
                "lastExit": self._last_exit, "lastPeriodAgo_s": age}

    def stop(self) -> None:
        """Stop the loop thread (processes are stopped by the system)."""
        self._stop.set()
        self.system.loops.pop("control", None)
        if self._thread:
            self._thread.join(10)
