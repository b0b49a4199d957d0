"""The control policies the simulator compares: Argus and its baselines.

Every policy answers two questions: which level is each prompt's routing key (the row of the
redirection matrix the router draws from), and, at each control tick, how many replicas per level
and which redirection matrix. Argus and Proteus-like run the production control period
(argus.control.loop.plan: demand EWMA, hysteresis, optimizer, policy document), the one the operator
and the local runtime run; nothing here re-implements it. The others are the fixed baselines of
argus.policy.baselines (the ones `argus up --mode` runs), keyed per prompt the way their routers place it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from argus.control.loop import demand_settings, plan, smooth_class_shares
from argus.control.observed import MetricsSnapshot
from argus.control.state import ControlState
from argus.levels import FULL, level_named
from argus.policy.demand import DEFAULT_HEADROOM, RELEASE_HALF_LIFE_S, DemandState
from argus.policy.document import PolicyDocument
from argus.policy.profile import LevelProfile, agnostic_key
from argus.policy import baselines, classes as prompt_classes
from argus.policy.snapshot import PromptClass
from argus.spec import KEEP_WARM_S, T2IServiceSpec
from argus.sim.prompts import Prompts, PromptSource, cache_allowed

PROFILED_PROMPTS = 40_000  # the simulated "profiled" population the class table is estimated from
PROFILE_SEED = 12345

POLICY_NAMES = ("argus", "argus-u<utilization>", "argus-w<quality weight>", "argus-rows", "clipper-ha", "clipper-ht", "nirvana", "proteus",
                "static:<level>=<n>,...")
LATE_ON, LATE_OFF = "+late", "-late"  # a name suffix: the policy's documents turn late rungs on or off (an ablation)


class PolicyError(ValueError):
    """A policy name or setting is invalid; the message names it."""


@dataclass(frozen=True)
class Service:
    """What the simulated T2IService asks for: the spec fields the policies read, with the spec's defaults.

    `spec()` is the T2IServiceSpec the production control period plans with (argus.control.loop.plan);
    the demand EWMA, the headroom and the dwell come from it exactly as they do in the operator."""

    gpus: int
    levels: tuple[LevelProfile, ...]
    quality_floor: float = 90.0
    latency_slo: float = 30.0
    throughput_target: float = 1e6  # requests/s; effectively "serve all demand"
    headroom: float = DEFAULT_HEADROOM  # the spec's headroom: capacity planned for this multiple of the rate
    scale_down_half_life: float = RELEASE_HALF_LIFE_S  # the spec's scaleDownHalfLife (s)
    control_period_s: float = 15.0  # the spec's controlPeriod (the loop's dwell is counted in periods)
    burst_horizon: float = 120.0  # the spec's burstHorizon: the horizon a move must pay back within (s)
    keep_warm: float = KEEP_WARM_S  # the spec's keepWarm: how long an idle approximate replica stays warm (s)
    in_place: bool = False  # the cluster switches a replica between levels of one model without a reload
    quality_weight: float = 1.0  # the spec's qualityWeight
    late_rungs: bool = True  # the spec's lateRungs
    min_full_quality: int = 1  # the spec's minFullQualityReplicas

    def spec(self, levels: list[str] | None = None) -> T2IServiceSpec:
        """The T2IService spec this service stands for, over `levels` (default: all of its levels)."""
        try:
            return T2IServiceSpec(levels=list(levels or self.names), throughput_target=self.throughput_target,
                                  quality_floor=self.quality_floor, gpus=self.gpus, latency_slo=self.latency_slo,
                                  control_period=self.control_period_s, headroom=self.headroom,
                                  quality_weight=self.quality_weight, late_rungs=self.late_rungs,
                                  min_full_quality_replicas=self.min_full_quality,
                                  scale_down_half_life=self.scale_down_half_life, burst_horizon=self.burst_horizon,
                                  keep_warm=self.keep_warm,
                                  model={"steps": max(50, _max_steps(self.names) + 1)})
        except ValueError as e:
            raise PolicyError(f"the simulated service is not a valid T2IService spec: {e}") from None

    def data_plane(self) -> dict[str, Any]:
        """The per-service settings every policy document carries (T2IServiceSpec.data_plane; the simulator
        renders no images, so the image size is the spec's default)."""
        return {"quality_floor": self.quality_floor, "latency_slo_s": self.latency_slo, "image_size": "64x64"}

    @property
    def names(self) -> list[str]:
        """Level names in profile order."""
        return [lp.level for lp in self.levels]


def _max_steps(names: list[str]) -> int:
    """The largest K or S the level names use (the schedule must be longer)."""
    return max((max(lv.resume_step, lv.steps or 0) for lv in (level_named(n) for n in names)), default=0)


@dataclass(frozen=True)
class Observation:
    """What the control loop sees at a tick: lagged, windowed like Prometheus rate() queries."""

    now: float
    rate: float  # arrivals/s over the window
    keys: dict[str, float]  # arrivals per routing-key level over the window (the optimal levels)
    queues: dict[str, float]  # requests in flight (waiting or in service) per level at the last scrape
    replicas: dict[str, int]  # replicas per level (the Deployments' spec, loading ones included)
    classes: dict[str, float] = field(default_factory=dict)  # arrivals per prompt class over the window


@dataclass(frozen=True)
class Plan:
    """One tick's outcome: replicas per level and the router's policy document."""

    replicas: dict[str, int]
    doc: PolicyDocument
    solve_s: float = 0.0  # wall time spent in the production optimizer
    overload: bool = False


class Policy(Protocol):
    """A control policy under simulation."""

    name: str
    late: bool | None  # overrides the documents' late_rungs (argus.policy.lateness) when not None

    def keys(self, prompts: Prompts) -> np.ndarray:
        """Routing key (level index in the service's levels) of each prompt."""

    def tick(self, obs: Observation) -> Plan:
        """Replicas and redirection for the next period."""


def identity_doc(svc: Service, replicas: dict[str, int], version: int, now: float, reason: str) -> PolicyDocument:
    """A document that serves every key at its own level (the router falls back when it has no replica)."""
    return PolicyDocument(version=version, service="sim", generated_at=now, **svc.data_plane(),
                          levels=svc.names, allocation={k: replicas.get(k, 0) for k in svc.names},
                          redirection={k: {k: 1.0} for k in svc.names}, reason=reason)


class Fixed:
    """A fixed allocation; prompts keyed by a function of their qualities (Clipper, NIRVANA, static)."""

    def __init__(self, name: str, svc: Service, replicas: dict[str, int], key_fn) -> None:
        unknown = set(replicas) - set(svc.names)
        if unknown:
            raise PolicyError(f"{name}: unknown level {sorted(unknown)[0]!r}")
        if sum(replicas.values()) > svc.gpus:
            raise PolicyError(f"{name}: {sum(replicas.values())} replicas exceed the {svc.gpus} GPUs")
        self.name, self.svc, self._key_fn = name, svc, key_fn
        self.late: bool | None = None
        self.replicas = {k: int(replicas.get(k, 0)) for k in svc.names}

    def keys(self, prompts: Prompts) -> np.ndarray:
        """Routing keys from the policy's rule."""
        return self._key_fn(prompts)

    def tick(self, obs: Observation) -> Plan:
        """Always the same allocation."""
        doc = identity_doc(self.svc, self.replicas, 0, obs.now, self.name)
        return Plan(dict(self.replicas), doc if self.late is None else doc.model_copy(update={"late_rungs": self.late}))


class Optimized:
    """The production control period (argus.control.loop.plan) on the simulated service.

    `levels` restricts the levels the optimizer may use; `agnostic` makes it prompt-agnostic
    (Proteus-like, `plan(agnostic=True)`): every prompt is one class, keyed at the most approximate level,
    so any level may serve it and the MILP only trades mean quality against capacity. With `model` (Argus)
    the optimizer plans per prompt class (argus.policy.classes: hit depth x step sensitivity, expected
    qualities from a profiled sample of the population) and the router places each prompt by its own
    predictions and the plan's prices (argus.policy.assign.place); without it, by the redirection rows.
    The only things done here are the simulator's: observations become a MetricsSnapshot, the
    control state is carried from tick to tick as the operator carries it on the status.
    """

    def __init__(self, name: str, svc: Service, levels: list[str] | None = None, agnostic: bool = False,
                 utilization: float = 1.0, model: PromptSource | None = None) -> None:
        self.name, self.svc, self.agnostic = name, svc, agnostic
        self.late: bool | None = None
        self.table: dict[str, PromptClass] | None = None
        if model is not None and not agnostic:
            p = model.profiled(svc.levels, svc.quality_floor, PROFILED_PROMPTS, np.random.default_rng(PROFILE_SEED))
            self.table = prompt_classes.table(p.kmax, p.quality, np.nan_to_num(p.predicted, nan=0.0), p.optimal,
                                              svc.levels)
        use = levels or svc.names
        # utilization < 1: the optimizer plans with derated per-GPU throughput (a what-if for a
        # utilization cap the production MILP does not have yet); service times stay the profile's
        self.sub = tuple(replace(lp, throughput={b: t * utilization for b, t in lp.throughput.items()})
                         for lp in svc.levels if lp.level in use)
        self.sub_names = [lp.level for lp in self.sub]
        self.spec = svc.spec(self.sub_names)
        self.settings = demand_settings(self.spec)
        self.state: ControlState | None = None
        self.cstate = DemandState()
        self.solve_times: list[float] = []
        self.agnostic_key = svc.names.index(agnostic_key(self.sub))

    def keys(self, prompts: Prompts) -> np.ndarray:
        """Argus: the predictor's optimal level; Proteus-like: one class for all prompts."""
        if self.agnostic:
            return np.full(prompts.optimal.shape, self.agnostic_key)
        return prompts.optimal

    def classify(self, prompts: Prompts) -> list[str] | None:
        """Class of each prompt (per-class planning only), from its hit and its predicted qualities."""
        if self.table is None:
            return None
        return prompt_classes.keys(prompts.kmax, np.nan_to_num(prompts.predicted, nan=0.0), self.svc.levels)

    def tick(self, obs: Observation) -> Plan:
        """One production control period on what the simulated router and cluster show."""
        current = {k: obs.replicas.get(k, 0) for k in self.sub_names}
        # the allocation in force is the Deployments' spec, as the operator reads it back from its status
        state = ControlState(allocation=current) if self.state is None else replace(self.state, allocation=current)
        # plan() keeps the shares and queues of the levels it plans and drops the rest
        observed = MetricsSnapshot(demand=obs.rate, h=dict(obs.keys), queues=dict(obs.queues))
        classes: tuple[PromptClass, ...] = ()
        if self.table is not None:
            classes, self.cstate = smooth_class_shares(self.cstate, obs.classes, self.table, self.sub_names,
                                                       obs.now, self.settings)
        t = time.perf_counter()
        out = plan("sim", self.spec, self.sub, observed, state, obs.now, agnostic=self.agnostic,
                   classes=classes, in_place=self.svc.in_place)
        took = time.perf_counter() - t
        self.solve_times.append(took)
        self.state = out.state
        doc = out.policy
        if self.table is None:  # no per-prompt placement: the router draws from the redirection rows
            doc = doc.model_copy(update={"prices": {}, "shares": {}})
        if self.late is not None:
            doc = doc.model_copy(update={"late_rungs": self.late})
        return Plan(dict(out.allocation), doc, took, bool(out.decision and out.decision.overload))


def make_policy(spec: str, svc: Service, model: PromptSource) -> Policy:
    """Build a policy from its name (see POLICY_NAMES), with LATE_ON or LATE_OFF appended to set `late`."""
    for suffix, late in ((LATE_ON, True), (LATE_OFF, False)):
        if spec.endswith(suffix):
            policy = make_policy(spec[:-len(suffix)], svc, model)
            policy.name, policy.late = spec, late
            return policy
    names = svc.names
    if FULL not in names:
        raise PolicyError(f"the profile must include {FULL}")
    k0 = names.index(FULL)
    agnostic = [n for n in names if not level_named(n).needs_cache_hit]
    if spec == "argus":
        return Optimized("argus", svc, model=model)
    if spec == "argus-rows":  # before issue 17: level-mean values, redirection rows, classes = optimal levels
        return Optimized("argus-rows", svc)
    if spec.startswith("argus-w"):
        try:
            w = float(spec[len("argus-w"):])
        except ValueError:
            raise PolicyError(f"{spec!r}: expected argus-w<quality weight >= 1>") from None
        if not 1 <= w <= 1000:
            raise PolicyError(f"{spec!r}: quality weight must be in [1, 1000] (the spec's qualityWeight)")
        return Optimized(spec, replace(svc, quality_weight=w), model=model)
    if spec.startswith("argus-u"):
        try:
            u = float(spec[len("argus-u"):])
        except ValueError:
            raise PolicyError(f"{spec!r}: expected argus-u<utilization in (0, 1]>") from None
        if not 0 < u <= 1:
            raise PolicyError(f"{spec!r}: utilization must be in (0, 1]")
        return Optimized(spec, svc, utilization=u, model=model)
    if spec == "proteus":
        return Optimized("proteus", svc, levels=agnostic, agnostic=True)
    if spec == "clipper-ha":
        return Fixed(spec, svc, baselines.allocation("ha", svc.levels, svc.gpus), lambda p: np.full(p.optimal.shape, k0))
    if spec == "clipper-ht":
        j = names.index(baselines.fastest_without_hit(svc.levels))
        return Fixed(spec, svc, baselines.allocation("ht", svc.levels, svc.gpus), lambda p: np.full(p.optimal.shape, j))
    if spec == "nirvana":
        # the prior hit distribution: no optimizer, no demand
        cidx = np.array([i for i, n in enumerate(names) if level_named(n).family == "cache"])
        tput = np.array([svc.levels[i].peak_throughput for i in cidx])

        def deepest_cache(p: Prompts) -> np.ndarray:
            ok = (p.quality[:, cidx] >= svc.quality_floor) & cache_allowed(svc.levels, p.kmax)[:, cidx]
            ok[:, list(cidx).index(k0)] = True
            return cidx[np.argmax(np.where(ok, tput[None, :], -np.inf), axis=1)]
        return Fixed(spec, svc, baselines.allocation("nirvana", svc.levels, svc.gpus, model.hits), deepest_cache)
    if spec.startswith("static:"):
        try:
            parts = dict(item.split("=") for item in spec[len("static:"):].split(","))
            reps = {k.strip(): int(v) for k, v in parts.items()}
        except ValueError:
            raise PolicyError(f"{spec!r}: expected static:<level>=<replicas>,...") from None
        return Fixed(spec, svc, reps, lambda p: p.optimal)
    raise PolicyError(f"unknown policy {spec!r}: expected one of {', '.join(POLICY_NAMES)}")
