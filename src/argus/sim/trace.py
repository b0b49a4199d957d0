"""Arrival workloads: real traces' inter-arrival pattern, time-warped onto a target rate curve.

A base trace gives arrival times u_i in *operational time* (scaled to unit mean rate, tiled to
any length). A rate curve r(t) (flat, or the paper's bursty plateaus of ~8x base load) gives the
cumulative rate Lambda(t); arrival i happens at Lambda^-1(u_i). The trace's burstiness is kept,
its mean follows the curve. Arrivals are produced per time window, so a 24-hour, 1,000-GPU
workload never sits in memory at once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np


class TraceError(ValueError):
    """A trace file or workload setting is invalid; the message names the file or field."""


@dataclass(frozen=True)
class BaseTrace:
    """Arrival times at unit mean rate over one period; repeats every `period` (operational time)."""

    name: str
    u: np.ndarray  # sorted, in [0, period)
    period: float

    def between(self, lo: float, hi: float) -> np.ndarray:
        """Operational times in [lo, hi) of the tiled trace."""
        if hi <= lo:
            return np.empty(0)
        first, last = int(np.floor(lo / self.period)), int(np.floor(hi / self.period))
        parts = []
        for tile in range(first, last + 1):
            off = tile * self.period
            a = np.searchsorted(self.u, lo - off, side="left") if tile == first else 0
            b = np.searchsorted(self.u, hi - off, side="left") if tile == last else len(self.u)
            parts.append(self.u[a:b] + off)
        return np.concatenate(parts) if parts else np.empty(0)


def from_timestamps(name: str, seconds: np.ndarray) -> BaseTrace:
    """Normalize raw arrival times (seconds) to unit mean rate; the tile period keeps the last gap."""
    t = np.sort(np.asarray(seconds, dtype=np.float64))
    if len(t) < 2 or t[-1] <= t[0]:
        raise TraceError(f"{name}: needs at least two distinct arrival times")
    t = t - t[0]
    span = t[-1] + (t[-1] / (len(t) - 1))  # one mean gap after the last arrival before the repeat
    rate = len(t) / span
    return BaseTrace(name=name, u=t * rate, period=span * rate)


def poisson(n: int, seed: int = 0) -> BaseTrace:
    """A synthetic Poisson base trace of n arrivals (tests, and users without trace files)."""
    gaps = np.random.default_rng(seed).exponential(1.0, n)
    t = np.cumsum(gaps) - gaps[0]
    return BaseTrace(name=f"poisson-{n}", u=t, period=float(t[-1] + gaps[0]))


def load_trace(path: str | Path, spread: bool = False) -> BaseTrace:
    """Read arrival times from an Azure LLM CSV (TIMESTAMP) or a Mooncake JSONL (timestamp, ms). `spread`: the
    requests a trace releases at one instant are spread over the tick to its next instant (`spread_ticks`)."""
    seconds = read_timestamps(path)
    return from_timestamps(Path(path).stem, spread_ticks(seconds) if spread else seconds)


def spread_ticks(seconds: np.ndarray) -> np.ndarray:
    """Arrival times with each group released at one instant spread evenly over the gap to the next instant.

    Mooncake's conversation trace releases its requests in groups of 6-13 every 3 s (gaps of 2,999-3,001 ms):
    replayed as written, ~10 requests arrive at the same moment, so a burst's first groups look like the groups
    of the load before it. Spread, the k-th of n requests at t arrives at t + gap x (k + 0.5) / n, gap being the
    time to the next distinct instant (the median gap after the last): an assumption about arrivals the trace
    does not resolve, named where it is used. A trace without repeated instants (Azure's) is returned as is."""
    t = np.sort(np.asarray(seconds, dtype=np.float64))
    u, first, counts = np.unique(t, return_index=True, return_counts=True)
    if len(u) == len(t) or len(u) < 2:
        return t
    gaps = np.diff(u)
    gaps = np.append(gaps, np.median(gaps))
    k = np.arange(len(t)) - np.repeat(first, counts)
    return np.repeat(u, counts) + np.repeat(gaps / counts, counts) * (k + 0.5)


def read_timestamps(path: str | Path) -> np.ndarray:
    """Raw arrival times (epoch seconds, file order) of an Azure LLM CSV (TIMESTAMP) or a Mooncake JSONL (ms)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{p}: cannot read trace: {e.strerror or e}") from None
    if p.suffix == ".jsonl":
        times = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    times.append(float(json.loads(line)["timestamp"]) / 1000.0)
                except (ValueError, KeyError, TypeError):
                    raise TraceError(f"{p}:{i + 1}: expected a JSON object with a numeric 'timestamp' (ms)") from None
        return np.array(times)
    rows = csv.DictReader(text.splitlines())
    if rows.fieldnames is None or "TIMESTAMP" not in rows.fieldnames:
        raise TraceError(f"{p}: expected a CSV with a TIMESTAMP column")
    times = []
    for i, row in enumerate(rows):
        try:
            times.append(datetime.fromisoformat(row["TIMESTAMP"].strip()[:26]).timestamp())
        except ValueError:
            raise TraceError(f"{p}:{i + 2}: TIMESTAMP {row['TIMESTAMP']!r} is not a date-time") from None
    return np.array(times)


@dataclass(frozen=True)
class RateCurve:
    """Piecewise-constant arrival rate: rates[i] requests/s on [edges[i], edges[i+1])."""

    edges: np.ndarray
    rates: np.ndarray
    peak_factor: float = 1.0  # rate / base rate on the plateaus (1 for a flat curve)

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.rates) + 1 or np.any(np.diff(self.edges) <= 0):
            raise TraceError("rate curve: edges must increase and be one longer than rates")
        if np.any(self.rates < 0):
            raise TraceError("rate curve: rates must be >= 0")

    @property
    def duration(self) -> float:
        """Length of the workload, s."""
        return float(self.edges[-1] - self.edges[0])

    def cumulative(self, t: np.ndarray | float) -> np.ndarray:
        """Lambda(t): expected arrivals by time t."""
        lam = np.concatenate([[0.0], np.cumsum(self.rates * np.diff(self.edges))])
        return np.interp(t, self.edges, lam)

    def at(self, t: np.ndarray) -> np.ndarray:
        """Rate at each time t."""
        i = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, len(self.rates) - 1)
        return self.rates[i]

    def is_peak(self, t: np.ndarray) -> np.ndarray:
        """True where the curve is at its plateau rate (all True for a flat curve)."""
        return self.at(t) >= self.rates.max() * (1 - 1e-9)


def flat(rate: float, duration: float) -> RateCurve:
    """A constant rate (requests/s) for `duration` seconds."""
    if rate <= 0 or duration <= 0:
        raise TraceError("flat workload: rate and duration must be > 0")
    return RateCurve(np.array([0.0, duration]), np.array([rate]))


def bursty(base: float, factor: float = 7.8, plateau: float = 7200.0, gap: float = 3600.0,
           plateaus: int = 1) -> RateCurve:
    """The paper's bursty shape: `base` req/s, then `plateaus` plateaus at factor x base, `gap` s apart."""
    if base <= 0 or factor < 1 or plateau <= 0 or gap <= 0 or plateaus < 1:
        raise TraceError("bursty workload: base > 0, factor >= 1, plateau > 0, gap > 0, plateaus >= 1")
    edges, rates, t = [0.0], [], 0.0
    for _ in range(plateaus):
        t += gap
        edges.append(t), rates.append(base)
        t += plateau
        edges.append(t), rates.append(base * factor)
    edges.append(t + gap), rates.append(base)
    return RateCurve(np.array(edges), np.array(rates), peak_factor=factor)


@dataclass(frozen=True)
class Workload:
    """A base trace warped onto a rate curve: arrival times on demand, window by window."""

    trace: BaseTrace
    curve: RateCurve

    def arrivals(self, t0: float, t1: float) -> np.ndarray:
        """Arrival times in [t0, t1), sorted."""
        lam = self.curve.cumulative(np.array([t0, t1]))
        u = self.trace.between(lam[0], lam[1])
        edges = self.curve.edges
        cum = self.curve.cumulative(edges)
        pos = np.diff(cum) > 0  # zero-rate spans have no inverse: keep only ends of positive-rate spans
        keep = np.concatenate([pos, [False]]) | np.concatenate([[False], pos])
        t = np.interp(u, cum[keep], edges[keep])
        return t[(t >= t0) & (t < t1)]

    def expected(self) -> float:
        """Expected number of arrivals over the whole curve."""
        return float(self.curve.cumulative(self.curve.edges[-1]))
