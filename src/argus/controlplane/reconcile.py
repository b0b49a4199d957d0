"""One reconcile or control period of one T2IService: parse → plan on its metrics → actuate → status.

Called by the control loop (fleet.py), which reads the metrics of every due service in one batch,
and owns the translation of the Outcome into a status patch and Events and of errors into retries.
Everything stateful comes in as arguments.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

from argus.controlplane.actuator import KubernetesActuator
from argus.adapters.prometheus_source import Reading
from argus.controlplane.builders import latent_cache_condition
from argus.control.loop import Plan, plan
from argus.control.observed import MetricsSnapshot, MetricsUnavailable
from argus.control.profiles import service_profiles
from argus.control.state import ControlState
from argus.controlplane.metrics import OperatorMetrics
from argus.controlplane.status import condition, set_conditions
from argus.policy.profile import Profile
from argus.spec import SpecError, parse_spec


@dataclass
class Deps:
    """What a period needs from outside: API actuator, profile, the operator's metrics."""

    actuator: KubernetesActuator
    profile: Profile
    metrics: OperatorMetrics
    latent_storage_class: str = ""  # for specs whose cache names no storage class (OperatorSettings)


@dataclass
class Outcome:
    """The status patch and the Events (type, reason, message) one period produced."""

    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    plan: Plan | None = None


class ServiceGone(Exception):
    """The T2IService was deleted: its objects are going by garbage collection, nothing is re-created."""


def _iso(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invalid_outcome(err: SpecError, status: dict[str, Any], generation: int | None, now: float) -> Outcome:
    """Condition Degraded/InvalidSpec and a Warning Event naming the field; the allocation stays untouched."""
    conds = set_conditions(status.get("conditions"), {
        "Ready": (False, "InvalidSpec", str(err)),
        "Progressing": (False, "InvalidSpec", "waiting for a valid spec"),
        "Degraded": (True, "InvalidSpec", str(err)),
    }, _iso(now))
    return Outcome(status={"conditions": conds, "invalidGeneration": generation, "message": str(err)},
                   events=[("Warning", "InvalidSpec", f"{err} (field spec.{err.field}); last allocation kept")])


def run(*, name: str, raw_spec: dict[str, Any], status: dict[str, Any], generation: int | None, deps: Deps,
        now: float, full: bool, reading: Reading | None = None, uid: str = "") -> Outcome:
    """One period on the service's reading of Prometheus (None: plan without metrics); raises SpecError
    for an invalid spec, ServiceGone when the T2IService was deleted, and KubeApiError for API failures."""
    spec = parse_spec(dict(raw_spec)).with_default_storage_class(deps.latent_storage_class)
    state = ControlState.from_status(status)
    observed = reading if isinstance(reading, MetricsSnapshot) else None
    unavailable = reading if isinstance(reading, MetricsUnavailable) else None
    t0 = time.perf_counter()
    p = plan(name, spec, service_profiles(spec, deps.profile), observed, state, now, generation, epoch=uid,
             loading=deps.actuator.readiness(name, spec).loading)
    if p.decision is not None:
        deps.metrics.solve.observe(time.perf_counter() - t0)
        deps.metrics.decided(name, p.changed)
    ensure_all = full or not state.allocation
    if not ensure_all and (deps.actuator.readiness(name, spec).missing or not deps.actuator.policy_present(name)):
        # An object is gone: someone deleted it (put it back), or garbage collection took it because the
        # T2IService was deleted and its watch event has not arrived yet (re-creating would loop).
        if not deps.actuator.owner_present():
            raise ServiceGone(name)
        ensure_all = True
    deps.actuator.apply(name, spec, p, full=ensure_all)
    for level, n in p.allocation.items():
        deps.metrics.allocated(name, level, n)
    ready = deps.actuator.readiness(name, spec)
    out = Outcome(plan=p)
    old = status.get("conditions")
    lagging = [f"{lv} {ready.ready.get(lv, 0)}/{n}" for lv, n in ready.wanted.items() if ready.ready.get(lv, 0) < n]
    updates = {
        "Ready": (ready.all_ready, "WorkersReady" if ready.all_ready else "WorkersNotReady",
                  "all workers ready" if ready.all_ready else "ready/wanted: " + ", ".join(lagging)),
        "Progressing": (p.changed or not ready.all_ready, "Reallocating" if p.changed else
                        "WaitingForWorkers" if not ready.all_ready else "Stable",
                        p.event or ("waiting for workers" if not ready.all_ready else "allocation in force")),
    }
    if unavailable is not None:
        updates["Degraded"] = (True, unavailable.reason, f"{unavailable}; keeping the last allocation")
    elif p.decision is not None and p.decision.overload:
        updates["Degraded"] = (True, "Overload", p.reason)
    else:
        updates["Degraded"] = (False, "AsExpected", "metrics flowing and demand served" if observed else
                               "planned without metrics")
    updates["LatentCache"] = latent_cache_condition(name, spec)  # which latent-cache mode is in force
    conds = set_conditions(old, updates, _iso(now))
    out.status = {**p.state.to_status(list((status.get("allocation") or {}).keys())), **p.status,
                  "conditions": conds, "readyReplicas": sum(ready.ready.values())}
    if full:
        out.status["invalidGeneration"] = None  # a valid spec was handled: clear the invalid marker
    if p.decision is None and "message" not in out.status:
        out.status["message"] = p.reason
    was = condition(old, "Degraded") or {}
    if unavailable is not None and (was.get("status") != "True" or was.get("reason") != unavailable.reason):
        out.events.append(("Warning", unavailable.reason, f"{unavailable}; keeping the last allocation"))
    if unavailable is None and observed is not None and was.get("status") == "True" and \
            was.get("reason") in ("PrometheusUnreachable", "NoMetrics"):
        out.events.append(("Normal", "MetricsRecovered", "metrics are back; control loop resumed"))
    if p.event:
        out.events.append(("Normal", "Reallocated", p.event))
    elif p.changed:
        alloc = ", ".join(f"{k}={v}" for k, v in p.allocation.items() if v)
        out.events.append(("Normal", "Planned", f"initial allocation {alloc} ({spec.gpus} GPUs)"))
    return out
