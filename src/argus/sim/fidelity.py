"""Fidelity check: replay an `argus load` run's exact arrivals in the simulator and compare.

The run's report (report.json of `argus load` against `argus up`) gives each request's send time,
latency and status, and the allocation it ran under. Service times come from a profile measured
on the same machine, or are calibrated from the run itself: the median latency of requests that
found the worker idle is the batch-1 time, and a CPU batch is assumed to cost b x that (no
batching gain on CPU). The simulator then serves the same arrivals on the same allocation, and
throughput and latency percentiles are compared (the issue's bound: within 15 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argus.policy.profile import LevelProfile
from argus.sim.engine import SimConfig, simulate
from argus.sim.policies import Service, make_policy
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


def calibrate(records: list[dict]) -> float:
    """Batch-1 service time: median latency of successful requests sent when the previous one had finished."""
    busy_until, solo = -np.inf, []
    for r in sorted(records, key=lambda r: r["t_sent"]):
        if r.get("status") == 200 and r["t_sent"] >= busy_until:
            solo.append(r["latency"])
        if r.get("status") == 200:
            busy_until = max(busy_until, r["t_sent"] + r["latency"])
    if not solo:
        raise FidelityError("no request found the worker idle; cannot calibrate the service time")
    return float(np.median(solo))


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
    return {k: v for k, v in (raw or {"cache-k0": 1}).items() if v}


def compare(report: dict, profile: tuple[LevelProfile, ...] | None = None, slo: float | None = None,
            max_batch: int = 8) -> Comparison:
    """Replay the report's arrivals on its allocation and compare throughput and latency percentiles."""
    records = report.get("records") or []
    if not records:
        raise FidelityError("report has no records (t_sent, latency, status)")
    alloc = _allocation(report.get("allocation"))
    summary = report.get("summary", {})
    slo = slo or float(summary.get("slo_s", 30.0))
    if profile is None:
        if set(alloc) != {"cache-k0"}:
            raise FidelityError("calibration handles a cache-k0-only allocation; pass a measured profile")
        profile = (cpu_profile("cache-k0", calibrate(records), max_batch),)
    svc = Service(gpus=sum(alloc.values()), levels=profile, latency_slo=slo)
    t_sent = np.array([r["t_sent"] for r in records])
    wl = replay(t_sent)
    spec = "static:" + ",".join(f"{k}={v}" for k, v in alloc.items())
    model = PromptModel(hits={0: 1.0})
    res = simulate(wl, svc, make_policy(spec, svc, model), model,
                   SimConfig(drop=False, period_s=5.0, drain_s=4 * slo))
    duration = float(summary.get("duration_s") or (t_sent.max() + slo))
    ok = np.array([r["latency"] for r in records if r.get("status") == 200])
    measured = {"throughput_rps": len(ok) / duration, "p50_s": float(np.percentile(ok, 50)),
                "p99_s": float(np.percentile(ok, 99))}
    s = res.summary
    simulated = {"throughput_rps": s.completed / duration, "p50_s": s.p50_s, "p99_s": s.p99_s}
    return Comparison(measured=measured, simulated=simulated)
