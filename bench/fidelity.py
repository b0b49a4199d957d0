"""Fidelity check: replay an `argus load` run's exact arrivals in the simulator and compare.

The run's report (report.json of `argus load` against `argus up`) gives each request's send time,
latency and status, and the allocation it ran under. Service times come from a profile measured
on the same machine, or are calibrated from the run itself: either the median latency of
requests that found the worker idle is the batch-1 time and a CPU batch costs b x that ("solo"),
or an affine batch time is fitted to the batches visible in the run's completions ("batches").
The simulator then serves the same arrivals on the same allocation, and throughput and latency
percentiles are compared (the issue's bound: within 15 %).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from argus.levels import FULL
from argus.policy.profile import LevelProfile
from argus.sim.engine import SimConfig, simulate
from argus.sim.policies import Optimized, Service, make_policy
from argus.sim.prompts import PromptModel
from argus.sim.trace import RateCurve, Workload, flat, from_timestamps

TOLERANCE = 0.15


class FidelityError(ValueError):
    """A load report cannot be replayed; the message says what is missing."""


@dataclass(frozen=True)
class Comparison:
    """Measured vs simulated numbers of one run, with their ratios."""

    measured: dict[str, float]
    simulated: dict[str, float]

    @property
    def ratios(self) -> dict[str, float]:
        """simulated / measured per metric."""
        return {k: self.simulated[k] / self.measured[k] for k in self.measured if self.measured[k]}

    @property
    def within(self) -> bool:
        """True when every ratio is within the tolerance."""
        return all(abs(r - 1.0) <= TOLERANCE for r in self.ratios.values())


def replay(t_sent: np.ndarray) -> Workload:
    """A workload whose arrivals are exactly `t_sent` (seconds from the run's start)."""
    t = np.sort(np.asarray(t_sent, dtype=float))
    trace = from_timestamps("replay", t)
    span = (t[-1] - t[0]) * len(t) / (len(t) - 1)  # from_timestamps' span: one mean gap after the last
    rate = len(t) / span  # u = (t - t[0]) * rate, so a flat curve at `rate` maps u back to t
    lead = t[0]
    curve = RateCurve(np.array([0.0, lead, lead + span]), np.array([0.0, rate])) if lead > 0 else flat(rate, span)
    return Workload(trace, curve)


def _by_replica(records: list[dict]) -> list[list[dict]]:
    """Successful records grouped by the replica that served them (one group when the run did not say)."""
    groups: dict = {}
    for r in records:
        if r.get("status") == 200:
            groups.setdefault(r.get("replica"), []).append(r)
    return list(groups.values())


def solo_service_time(records: list[dict]) -> float:
    """Batch-1 service time: median latency of successful requests that found their replica idle."""
    solo = []
    for group in _by_replica(records):
        busy_until = -np.inf
        for r in sorted(group, key=lambda r: r["t_sent"]):
            if r["t_sent"] >= busy_until:
                solo.append(r["latency"])
            busy_until = max(busy_until, r["t_sent"] + r["latency"])
    if not solo:
        raise FidelityError("no request found the worker idle; cannot calibrate the service time")
    return float(np.median(solo))


def batch_fit(records: list[dict], max_batch: int = 8, gap: float = 0.05) -> tuple[float, float, int]:
    """Affine batch time a + c*b fitted to each replica's batches, read off the run; returns (a, c, batches).

    Per replica (records say which served them; a run that does not say is one replica), requests
    that finish within `gap` s of each other were one batch; a batch started when the replica freed
    (the previous batch's finish) or when its last member arrived, whichever is later.
    """
    sizes, durations = [], []
    for rep in _by_replica(records):
        ok = sorted((r["t_sent"] + r["latency"], r["t_sent"]) for r in rep)
        groups: list[list[tuple[float, float]]] = []
        for fin, sent in ok:
            if groups and fin - groups[-1][-1][0] <= gap:
                groups[-1].append((fin, sent))
            else:
                groups.append([(fin, sent)])
        prev = -np.inf
        for g in groups:
            finish = max(f for f, _ in g)
            start = max(prev, max(s for _, s in g))
            prev = finish
            if len(g) <= max_batch and finish > start:
                sizes.append(len(g))
                durations.append(finish - start)
    if len(sizes) < 3:
        raise FidelityError(f"only {len(sizes)} batches found in the run; cannot fit batch times")
    b, d = np.array(sizes, dtype=float), np.array(durations)
    if np.ptp(b) == 0:
        return 0.0, float(np.median(d / b)), len(b)
    c, a = np.polyfit(b, d, 1)
    c = max(float(c), 1e-6)
    return max(float(a), 0.0), c, len(b)


def fitted_profile(level: str, a: float, c: float, max_batch: int = 8) -> LevelProfile:
    """A profile whose batch time is a + c*b (as fitted by batch_fit)."""
    return LevelProfile(level=level, throughput={1: 1.0 / (a + c), max_batch: max_batch / (a + c * max_batch)},
                        service_time=a + c, quality=100.0, model="local", load_time=0.0,
                        note="batch times fitted to an argus load run")


def cpu_profile(level: str, service_time: float, max_batch: int = 8) -> LevelProfile:
    """A profile with batch time b x service_time (no batching gain) up to max_batch."""
    tput = {1: 1.0 / service_time, max_batch: 1.0 / service_time}
    return LevelProfile(level=level, throughput=tput,
                        service_time=service_time, quality=100.0, model="local", load_time=0.0,
                        note="calibrated from an argus load run")


def _allocation(raw) -> dict[str, int]:
    """The run's allocation: a dict, or `argus load`'s samples [{t, allocation}] that must not change."""
    if isinstance(raw, list):
        seen = {tuple(sorted((k, v) for k, v in s["allocation"].items() if v)) for s in raw if s.get("allocation")}
        if len(seen) > 1:
            raise FidelityError("the allocation changed during the run; only a fixed allocation can be replayed")
        raw = dict(seen.pop()) if seen else None
    return {k: v for k, v in (raw or {FULL: 1}).items() if v}


def measured_profile(doc: dict) -> tuple[LevelProfile, float]:
    """The level profile and front-door overhead (s) of a calibration (bench/fidelity_calibrate.py's JSON).

    The calibration timed batches of b straight at the running replicas (throughput b / batch time)
    and solo requests through Envoy and directly, whose difference is what Envoy, the router and
    the PNG answer add to every request without holding its replica.
    """
    tput = {int(b): float(v) for b, v in doc["throughput"].items()}
    one = min(tput)
    prof = LevelProfile(level=doc.get("level", FULL), throughput=tput, service_time=one / tput[one],
                        quality=100.0, model="local", load_time=0.0,
                        note="batch times measured at the running replicas (bench/fidelity_calibrate.py)")
    return prof, max(float(doc.get("overhead_s", 0.0)), 0.0)


def give_up_s(slo: float) -> float:
    """When a request of the local runtime is lost: the router gives up after a few SLOs (504), the load
    generator after max(4 x SLO, 60) s, whichever comes first."""
    from argus.local.runtime import LocalSystem

    return min(LocalSystem.timeout_slos * slo, max(4 * slo, 60.0))


def compare(report: dict, profile: tuple[LevelProfile, ...] | None = None, slo: float | None = None,
            max_batch: int = 8, calibration: str = "solo", since: float = 0.0, overhead_s: float = 0.0,
            dispatch: str = "least-pending") -> Comparison:
    """Replay the report's arrivals on its allocation and compare throughput and latency percentiles.

    `since` keeps only requests sent from that second on (e.g. after a warm-up or a stall).
    `overhead_s` is latency every request gets outside its replica (Envoy, router, answer encoding):
    added to each simulated latency. `dispatch` is how requests reach replicas (argus.sim.engine
    DISPATCH; the router's is "least-pending").
    """
    records = [dict(r, t_sent=r["t_sent"] - since) for r in report.get("records") or [] if r["t_sent"] >= since]
    if not records:
        raise FidelityError("report has no records (t_sent, latency, status)")
    alloc = _allocation(report.get("allocation"))
    summary = report.get("summary", {})
    slo = slo or float(summary.get("slo_s", 30.0))
    if profile is None:
        if set(alloc) != {FULL}:
            raise FidelityError("calibration handles a cache-k0-only allocation; pass a measured profile")
        if calibration == "batches":
            a, c, _ = batch_fit(records, max_batch)
            profile = (fitted_profile(FULL, a, c, max_batch),)
        else:
            profile = (cpu_profile(FULL, solo_service_time(records), max_batch),)
    # A request the runtime lost (router or client timeout) is one the simulator drops: the
    # simulator drops what cannot finish by then, so both count the same requests as served.
    timeout = give_up_s(slo) - overhead_s
    svc = Service(gpus=sum(alloc.values()), levels=profile, latency_slo=timeout)
    t_sent = np.array([r["t_sent"] for r in records])
    wl = replay(t_sent)
    spec = "static:" + ",".join(f"{k}={v}" for k, v in alloc.items())
    model = PromptModel(hits={0: 1.0})
    # a fixed allocation needs no control ticks: one period covers the run, so every request is
    # dispatched once, on arrival, as the router does
    res = simulate(wl, svc, make_policy(spec, svc, model), model,
                   SimConfig(drop=True, period_s=wl.curve.duration + timeout + 1.0, drain_s=timeout,
                             dispatch=dispatch))
    duration = float(summary.get("duration_s") or (t_sent.max() + slo)) - since
    return _comparison(records, res.summary, duration, overhead_s)


def _comparison(records: list[dict], sim, duration: float, overhead_s: float) -> Comparison:
    """Throughput and p50/p99 of the run's served requests against the simulator's summary `sim`."""
    ok = np.array([r["latency"] for r in records if r.get("status") == 200])
    measured = {"throughput_rps": len(ok) / duration, "p50_s": float(np.percentile(ok, 50)),
                "p99_s": float(np.percentile(ok, 99))}
    simulated = {"throughput_rps": sim.completed / duration, "p50_s": sim.p50_s + overhead_s,
                 "p99_s": sim.p99_s + overhead_s}
    return Comparison(measured=measured, simulated=simulated)


class _KeyedAtFullQuality:
    """A policy whose every prompt's routing key is cache-k0: the router without a per-prompt predictor
    (argus.router.planner.FullQualityPlanner, the local demo's), so cheaper levels serve only what the
    redirection matrix moves there."""

    def __init__(self, policy, k0: int) -> None:
        self.policy, self.k0, self.name = policy, k0, policy.name

    def keys(self, prompts) -> np.ndarray:
        """cache-k0 for every prompt."""
        return np.full(prompts.optimal.shape, self.k0)

    def tick(self, obs):
        """The wrapped policy's plan."""
        return self.policy.tick(obs)


def level_fits(records: list[dict], levels: list[str], max_batch: int = 8) -> dict[str, tuple[float, float, int]]:
    """Affine batch times (a, c, batches) per level, each fitted to the records that level served."""
    out = {}
    for lv in levels:
        mine = [r for r in records if r.get("level") == lv]
        if mine:
            try:
                out[lv] = batch_fit(mine, max_batch)
            except FidelityError:
                continue  # too few batches at this level to fit
    return out


def compare_controlled(report: dict, spec, plan_profile: tuple[LevelProfile, ...], *,
                       fits: dict[str, tuple[float, float, int]] | None = None, load_time_s: float | None = None,
                       overhead_s: float = 0.0, max_batch: int = 8, window_s: float = 20.0,
                       scrape_s: float = 1.0, in_place: bool = False) -> tuple[Comparison, dict]:
    """Replay an `argus up` run whose control loop was on: same arrivals, the loop's production decision
    code (solve_releasing_idle on the same profile, demand and hysteresis settings as
    argus.control.loop.plan for `spec`), per-level service times fitted to a run. Returns the
    throughput/p50/p99 comparison and what each side served per level and how the allocation moved.

    `plan_profile` is what the loop plans with (the local demo's profile); `fits` the true batch times
    per level (default: fitted to this run; a level missing from it runs at the plan profile's
    throughput scaled by cache-k0's measured/planned ratio). `load_time_s`: seconds from a replica's
    start to ready (default: the plan profile's). `window_s`/`scrape_s`: the loop's Prometheus
    rate window and scrape interval. `in_place`: the run switched replicas between levels of one model without a
    reload (`argus up` since in-place switches; the recordings before them reloaded).
    """
    records = list(report.get("records") or [])
    if not records:
        raise FidelityError("report has no records (t_sent, latency, status)")
    levels = list(spec.levels)
    plan = {p.level: p for p in plan_profile}
    missing = [lv for lv in levels if lv not in plan]
    if missing:
        raise FidelityError(f"the plan profile has no level {missing[0]!r}")
    fits = level_fits(records, levels, max_batch) if fits is None else fits
    if FULL not in fits:
        raise FidelityError("no batch-time fit for cache-k0 (the run served too few full-quality batches)")
    a0, c0, _ = fits[FULL]
    speed = (max_batch / (a0 + c0 * max_batch)) / plan[FULL].peak_throughput
    true = []
    for lv in levels:
        load = plan[lv].load_time if load_time_s is None else load_time_s
        if lv in fits:
            a, c, _ = fits[lv]
            lp = fitted_profile(lv, a, c, max_batch)
        else:
            lp = replace(plan[lv], throughput={b: t * speed for b, t in plan[lv].throughput.items()},
                         service_time=plan[lv].service_time / speed, note="plan profile x cache-k0 speed ratio")
        true.append(replace(lp, load_time=load))
    timeout = give_up_s(spec.latency_slo) - overhead_s
    engine_svc = Service(gpus=spec.gpus, levels=tuple(true), quality_floor=spec.quality_floor, latency_slo=timeout,
                         in_place=in_place)
    period = spec.control_period
    plan_svc = Service(gpus=spec.gpus, levels=tuple(plan[lv] for lv in levels), quality_floor=spec.quality_floor,
                       latency_slo=spec.latency_slo, throughput_target=spec.throughput_target,
                       headroom=spec.headroom, scale_down_half_life=spec.scale_down_half_life,
                       control_period_s=period, late_rungs=spec.late_rungs, burst_horizon=spec.burst_horizon,
                       keep_warm=spec.keep_warm, in_place=in_place, quality_weight=spec.quality_weight,
                       min_full_quality=spec.min_full_quality_replicas)
    policy = _KeyedAtFullQuality(Optimized("argus", plan_svc), levels.index(FULL))
    t_sent = np.array([r["t_sent"] for r in records])
    wl = replay(t_sent)
    res = simulate(wl, engine_svc, policy, PromptModel(hits={0: 1.0}),
                   SimConfig(drop=True, period_s=period, scrape_lag_s=scrape_s, rate_window_s=window_s,
                             drain_s=timeout, dispatch="least-pending"))
    summary = report.get("summary", {})
    duration = float(summary.get("duration_s") or (t_sent.max() + spec.latency_slo))
    s = res.summary
    ok = [r for r in records if r.get("status") == 200]
    served = {lv: sum(1 for r in ok if r.get("level") == lv) / len(ok) for lv in levels}
    detail = {"served_share": {"measured": served, "simulated": {lv: s.served_share.get(lv, 0.0) for lv in levels}},
              "allocation": {"measured": _changes(report.get("allocation") or []),
                             "simulated": [(round(t, 1), reps) for t, reps in res.replicas]},
              "fits": {lv: {"a_s": round(f[0], 3), "c_s": round(f[1], 3), "batches": f[2]} for lv, f in fits.items()},
              "cache_k0_speed_vs_plan": round(speed, 3), "in_place_switches": res.switches}
    return _comparison(records, s, duration, overhead_s), detail


def _changes(samples: list[dict] | dict) -> list[tuple[float, dict[str, int]]]:
    """(t, allocation) at each change of `argus load`'s allocation samples (or of one fixed allocation)."""
    if isinstance(samples, dict):
        samples = [{"t": 0.0, "allocation": samples}]
    out, prev = [], None
    for smp in samples:
        a = {k: v for k, v in (smp.get("allocation") or {}).items() if v}
        if a and a != prev:
            out.append((round(float(smp["t"]), 1), a))
            prev = a
    return out
