"""The control policies the simulator compares: Argus and its baselines.

Every policy answers two questions: which level is each prompt's routing key (the row of the
redirection matrix the router draws from), and, at each control tick, how many replicas per level
and which redirection matrix. Argus and Proteus-like call the production optimizer
(argus.policy.optimizer.solve) and demand estimator (argus.policy.demand); nothing here
re-implements them. The others are fixed allocations, as their papers describe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from argus.control.loop import dwell_s, solve_releasing_idle
from argus.levels import parse_level
from argus.policy.decision import to_policy_document
from argus.policy.demand import NOISE_BAND, RELEASE_HALF_LIFE_S, DemandSettings, DemandState, estimate, estimate_shares
from argus.policy.document import PolicyDocument
from argus.policy.optimizer import solve
from argus.policy.profile import LevelProfile, agnostic_key
from argus.policy import classes as prompt_classes
from argus.policy.snapshot import Hysteresis, PromptClass, Snapshot
from argus.sim.prompts import Prompts, PromptSource, cache_allowed

PROFILED_PROMPTS = 40_000  # the simulated "profiled" population the class table is estimated from
PROFILE_SEED = 12345

POLICY_NAMES = ("argus", "argus-u<utilization>", "argus-w<quality weight>", "argus-rows", "clipper-ha", "clipper-ht", "nirvana", "proteus",
                "static:<level>=<n>,...")


class PolicyError(ValueError):
    """A policy name or setting is invalid; the message names it."""


@dataclass(frozen=True)
class Service:
    """What the simulated T2IService asks for (the spec fields the policies read)."""

    gpus: int
    levels: tuple[LevelProfile, ...]
    quality_floor: float = 90.0
    latency_slo: float = 30.0
    throughput_target: float = 1e6  # requests/s; effectively "serve all demand"
    # Rises followed at once, capacity given back with a 300 s half-life (argus.policy.demand).
    demand: DemandSettings = field(default_factory=lambda: DemandSettings(release_half_life_s=RELEASE_HALF_LIFE_S,
                                                                          band=NOISE_BAND))
    # None: what the production loop derives for this service (argus.control.loop.dwell_s: 4 control periods,
    # at least 3 reloads of the slowest level)
    hysteresis: Hysteresis | None = None
    control_period_s: float = 15.0  # the spec's controlPeriod (the loop's dwell is counted in periods)

    def data_plane(self) -> dict[str, Any]:
        """The per-service settings every policy document carries (as T2IServiceSpec.data_plane; the
        simulator renders no images, so the image size is the tiny model's)."""
        return {"quality_floor": self.quality_floor, "latency_slo_s": self.latency_slo, "image_size": "64x64"}

    def loop_hysteresis(self) -> Hysteresis:
        """The hysteresis the optimizer runs with: the given one, or the production loop's for this service."""
        if self.hysteresis is not None:
            return self.hysteresis
        return Hysteresis(min_dwell_s=dwell_s(self.control_period_s, self.levels))

    @property
    def names(self) -> list[str]:
        """Level names in profile order."""
        return [lp.level for lp in self.levels]


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

    def keys(self, prompts: Prompts) -> np.ndarray:
        """Routing key (level index in the service's levels) of each prompt."""

    def tick(self, obs: Observation) -> Plan:
        """Replicas and redirection for the next period."""


def identity_doc(svc: Service, replicas: dict[str, int], version: int, now: float, reason: str) -> PolicyDocument:
    """A document that serves every key at its own level (the router falls back when it has no replica)."""
    return PolicyDocument(version=version, service="sim", generated_at=now, **svc.data_plane(),
                          levels=svc.names, allocation={k: replicas.get(k, 0) for k in svc.names},
                          redirection={k: {k: 1.0} for k in svc.names}, reason=reason)


def _needs_hit(name: str) -> bool:
    lv = parse_level(name, 1000)
    return lv.family == "cache" and lv.skip > 0


class Fixed:
    """A fixed allocation; prompts keyed by a function of their qualities (Clipper, NIRVANA, static)."""

    def __init__(self, name: str, svc: Service, replicas: dict[str, int], key_fn) -> None:
        unknown = set(replicas) - set(svc.names)
        if unknown:
            raise PolicyError(f"{name}: unknown level {sorted(unknown)[0]!r}")
        if sum(replicas.values()) > svc.gpus:
            raise PolicyError(f"{name}: {sum(replicas.values())} replicas exceed the {svc.gpus} GPUs")
        self.name, self.svc, self._key_fn = name, svc, key_fn
        self.replicas = {k: int(replicas.get(k, 0)) for k in svc.names}

    def keys(self, prompts: Prompts) -> np.ndarray:
        """Routing keys from the policy's rule."""
        return self._key_fn(prompts)

    def tick(self, obs: Observation) -> Plan:
        """Always the same allocation."""
        return Plan(dict(self.replicas), identity_doc(self.svc, self.replicas, 0, obs.now, self.name))


class Optimized:
    """The production control loop: demand EWMA x headroom, shares h_k, solve(snapshot) -> Decision.

    `levels` restricts the levels the optimizer may use; `agnostic` makes it prompt-agnostic
    (Proteus-like): every prompt is one class, keyed at the most approximate level, so any level may
    serve it and the MILP only trades mean quality against capacity. With `model` (Argus) the optimizer
    plans per prompt class (argus.policy.classes: hit depth x step sensitivity, expected qualities from a
    profiled sample of the population) and the router places each prompt by its own predictions and
    the plan's prices (argus.router.assign.place); without it, by the redirection rows.
    """

    def __init__(self, name: str, svc: Service, levels: list[str] | None = None, agnostic: bool = False,
                 utilization: float = 1.0, model: PromptSource | None = None, quality_weight: float = 1.0) -> None:
        self.name, self.svc, self.agnostic = name, svc, agnostic
        self.quality_weight = quality_weight
        self.table: dict[str, PromptClass] | None = None
        if model is not None and not agnostic:
            p = model.profiled(svc.levels, svc.quality_floor, PROFILED_PROMPTS, np.random.default_rng(PROFILE_SEED))
            self.table = prompt_classes.table(p.kmax, p.quality, np.nan_to_num(p.predicted, nan=0.0), p.optimal,
                                              svc.levels)
        self.cstate = DemandState()
        use = levels or svc.names
        # utilization < 1: the optimizer plans with derated per-GPU throughput (a what-if for a
        # utilization cap the production MILP does not have yet); service times stay the profile's
        self.sub = tuple(replace(lp, throughput={b: t * utilization for b, t in lp.throughput.items()})
                         for lp in svc.levels if lp.level in use)
        self.sub_names = [lp.level for lp in self.sub]
        self.idx = np.array([svc.names.index(n) for n in self.sub_names])
        self.state = DemandState()
        self.version = 0
        self.last_change: float | None = None
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

    def _classes(self, obs: Observation) -> tuple[PromptClass, ...]:
        counts = {k: v for k, v in obs.classes.items() if k in self.table}
        shares, self.cstate = estimate_shares(self.cstate, counts, obs.now, self.svc.demand)
        if not shares:
            shares = {k: c.share for k, c in self.table.items()}
        keep = set(self.sub_names)
        return tuple(replace(self.table[k], share=v, quality={lv: q for lv, q in self.table[k].quality.items()
                                                             if lv in keep}) for k, v in sorted(shares.items()))

    def tick(self, obs: Observation) -> Plan:
        """Estimate demand and shares, build the snapshot, call the production optimizer."""
        demand, self.state = estimate(self.state, obs.rate, obs.now, self.svc.demand)
        counts = {k: v for k, v in obs.keys.items() if k in self.sub_names}
        h, self.state = estimate_shares(self.state, counts, obs.now, self.svc.demand)
        if not h:
            h = {"cache-k0": 1.0}
        current = {k: obs.replicas.get(k, 0) for k in self.sub_names}
        snap = Snapshot(gpus=self.svc.gpus, profiles=self.sub, demand=demand, h=h,
                        throughput_target=self.svc.throughput_target, quality_floor=self.svc.quality_floor,
                        latency_slo=self.svc.latency_slo, now=obs.now, current=current,
                        queues={k: obs.queues.get(k, 0.0) for k in self.sub_names},
                        last_change=self.last_change, hysteresis=self.svc.loop_hysteresis(),
                        classes=self._classes(obs) if self.table is not None else (),
                        quality_weight=self.quality_weight)
        t = time.perf_counter()
        dec = solve_releasing_idle(snap)
        took = time.perf_counter() - t
        self.solve_times.append(took)
        if dec.changed or self.last_change is None:
            self.last_change = obs.now
        self.version += 1
        doc = to_policy_document(dec, service="sim", version=self.version, **self.svc.data_plane(),
                                 generated_at=obs.now)
        if self.table is None:  # no per-prompt placement: the router draws from the redirection rows
            doc = doc.model_copy(update={"prices": {}, "shares": {}})
        return Plan(dict(dec.replicas), doc, took, dec.overload)


def proportional(svc: Service, work: dict[str, float], gpus: int) -> dict[str, int]:
    """Split GPUs in proportion to work (largest remainder), at least one on cache-k0."""
    total = sum(work.values())
    exact = {k: gpus * v / total for k, v in work.items()}
    out = {k: int(np.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[: gpus - sum(out.values())]:
        out[k] += 1
    if out.get("cache-k0", 0) == 0:
        donor = max(out, key=lambda k: out[k])
        out[donor] -= 1
        out["cache-k0"] = 1
    return out


def make_policy(spec: str, svc: Service, model: PromptSource) -> Policy:
    """Build a policy from its name (see POLICY_NAMES)."""
    names = svc.names
    if "cache-k0" not in names:
        raise PolicyError("the profile must include cache-k0")
    k0 = names.index("cache-k0")
    agnostic = [n for n in names if not _needs_hit(n)]
    tput = {lp.level: lp.peak_throughput for lp in svc.levels}
    fastest = max(agnostic, key=lambda n: tput[n])
    if spec == "argus":
        return Optimized("argus", svc, model=model)
    if spec == "argus-rows":  # before issue 17: level-mean values, redirection rows, classes = optimal levels
        return Optimized("argus-rows", svc)
    if spec.startswith("argus-w"):
        try:
            w = float(spec[len("argus-w"):])
        except ValueError:
            raise PolicyError(f"{spec!r}: expected argus-w<quality weight > 0>") from None
        if not w > 0:
            raise PolicyError(f"{spec!r}: quality weight must be > 0")
        return Optimized(spec, svc, model=model, quality_weight=w)
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
        return Fixed(spec, svc, {"cache-k0": svc.gpus}, lambda p: np.full(p.optimal.shape, k0))
    if spec == "clipper-ht":
        j = names.index(fastest)
        return Fixed(spec, svc, {fastest: svc.gpus}, lambda p: np.full(p.optimal.shape, j))
    if spec == "nirvana":
        cache = [i for i, n in enumerate(names) if parse_level(n, 1000).family == "cache"]
        by_k = {parse_level(names[i], 1000).skip: names[i] for i in cache}
        work: dict[str, float] = {}
        for k, share in model.hits.items():  # the prior hit distribution: no optimizer, no demand
            lv = by_k.get(max((kk for kk in by_k if kk <= k), default=0), "cache-k0")
            work[lv] = work.get(lv, 0.0) + share / tput[lv]
        cidx = np.array(cache)

        def deepest_cache(p: Prompts) -> np.ndarray:
            ok = (p.quality[:, cidx] >= svc.quality_floor) & cache_allowed(svc.levels, p.kmax)[:, cidx]
            ok[:, list(cidx).index(k0)] = True
            score = np.where(ok, np.array([tput[names[i]] for i in cidx])[None, :], -np.inf)
            return cidx[np.argmax(score, axis=1)]
        return Fixed(spec, svc, proportional(svc, work, svc.gpus), deepest_cache)
    if spec.startswith("static:"):
        try:
            parts = dict(item.split("=") for item in spec[len("static:"):].split(","))
            reps = {k.strip(): int(v) for k, v in parts.items()}
        except ValueError:
            raise PolicyError(f"{spec!r}: expected static:<level>=<replicas>,...") from None
        return Fixed(spec, svc, reps, lambda p: p.optimal)
    raise PolicyError(f"unknown policy {spec!r}: expected one of {', '.join(POLICY_NAMES)}")
