"""What a run measured: per-minute time series, a latency histogram and the summary table.

Streaming: requests are folded into fixed bins as they complete, so memory does not grow with
the number of requests. Latency percentiles come from a 10 ms histogram (error <= 10 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LATENCY_BIN_S = 0.01
LATENCY_MAX_S = 900.0  # longer latencies count in the last bin (early drop keeps them rare)


@dataclass(frozen=True)
class Summary:
    """The table row of one run (rates per minute; quality in percent of full quality)."""

    policy: str
    arrivals: int
    completed: int
    dropped: int  # never served (early drop, no replica until the deadline, or left at the end)
    throughput_qpm: float  # completions per minute over the run
    goodput_qpm: float  # completions within the SLO per minute
    quality: float  # mean relative quality of completed requests
    violations_per_min: float  # late completions + drops, per minute
    violation_rate: float  # violations / arrivals
    p50_s: float  # latency percentiles of completed requests
    p99_s: float
    peak_throughput_qpm: float  # the same, over the minutes the rate curve is at its plateau
    peak_quality: float
    peak_violations_per_min: float
    peak_violation_rate: float
    served_share: dict[str, float]  # share of completions per level
    violations_by_level: dict[str, int]  # late completions + drops, by the level that had the request
    below_floor: float = float("nan")  # share of completed requests whose quality is below the floor
    peak_below_floor: float = float("nan")  # the same at the plateau

    def row(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


class Recorder:
    """Per-minute bins of arrivals, completions, in-SLO completions, quality sum and violations."""

    def __init__(self, horizon_s: float, slo: float, levels: list[str], bin_s: float = 60.0,
                 floor: float | None = None) -> None:
        self.bin_s, self.slo, self.levels, self.floor = bin_s, slo, levels, floor
        n = int(np.ceil(horizon_s / bin_s)) + 1
        self.arrived = np.zeros(n)
        self.completed = np.zeros(n)
        self.good = np.zeros(n)
        self.quality = np.zeros(n)
        self.violations = np.zeros(n)
        self.dropped = np.zeros(n)
        self.below = np.zeros(n)  # completions below the quality floor
        self.by_level = np.zeros(len(levels))
        self.viol_by_level = np.zeros(len(levels))
        self.hist = np.zeros(int(LATENCY_MAX_S / LATENCY_BIN_S) + 1)

    def _bins(self, t: np.ndarray) -> np.ndarray:
        return np.minimum((t / self.bin_s).astype(np.int64), len(self.arrived) - 1)

    @staticmethod
    def _add(acc: np.ndarray, idx: np.ndarray, weights=None) -> None:
        """acc[idx] += weights (or 1), repeated indices summed (bincount: much faster than add.at)."""
        if len(idx):
            r = np.bincount(idx, weights=weights)
            acc[: len(r)] += r

    def arrivals(self, t: np.ndarray) -> None:
        """Count arrivals at their arrival time."""
        self._add(self.arrived, self._bins(t))

    def served(self, arrival: np.ndarray, finish: np.ndarray, quality: np.ndarray, level: int) -> None:
        """Fold completed requests of one level in, at their completion time."""
        if len(arrival) == 0:
            return
        b = self._bins(finish)
        lat = finish - arrival
        late = lat > self.slo
        self._add(self.completed, b)
        self._add(self.good, b, (~late).astype(float))
        self._add(self.violations, b, late.astype(float))
        self._add(self.quality, b, quality)
        if self.floor is not None:
            self._add(self.below, b, (quality < self.floor).astype(float))
        self.by_level[level] += len(arrival)
        self.viol_by_level[level] += late.sum()
        h = np.minimum((lat / LATENCY_BIN_S).astype(np.int64), len(self.hist) - 1)
        self._add(self.hist, h)

    def drops(self, when: np.ndarray, level: int) -> None:
        """Count requests dropped (never served) at the time they were given up."""
        self.viol_by_level[level] += len(when)
        b = self._bins(when)
        self._add(self.violations, b)
        self._add(self.dropped, b)

    def percentile(self, q: float) -> float:
        """Latency percentile (seconds) of completed requests, from the histogram."""
        total = self.hist.sum()
        if total == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.hist), q / 100.0 * total))
        return (i + 1) * LATENCY_BIN_S

    def series(self) -> dict[str, np.ndarray]:
        """Per-minute series: t (minute start), throughput, quality, violations, arrivals."""
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(self.completed > 0, self.quality / np.maximum(self.completed, 1), np.nan)
        per_min = 60.0 / self.bin_s
        return {"t_min": np.arange(len(self.arrived)) * self.bin_s / 60.0,
                "throughput_qpm": self.completed * per_min, "quality": q,
                "violations_per_min": self.violations * per_min, "arrivals_qpm": self.arrived * per_min,
                "dropped_per_min": self.dropped * per_min}

    def summary(self, policy: str, duration_s: float, peak: np.ndarray) -> Summary:
        """The table row; `peak` marks the bins at the plateau rate."""
        minutes = duration_s / 60.0
        arrivals, done = self.arrived.sum(), self.completed.sum()
        pk = np.zeros(len(self.arrived), dtype=bool)
        pk[: len(peak)] = peak[: len(pk)]
        pk_min = max(pk.sum() * self.bin_s / 60.0, 1e-9)
        pk_done = self.completed[pk].sum()
        return Summary(
            policy=policy, arrivals=int(arrivals), completed=int(done), dropped=int(self.dropped.sum()),
            throughput_qpm=done / minutes, goodput_qpm=self.good.sum() / minutes,
            quality=float(self.quality.sum() / done) if done else float("nan"),
            violations_per_min=self.violations.sum() / minutes,
            violation_rate=float(self.violations.sum() / arrivals) if arrivals else 0.0,
            p50_s=self.percentile(50), p99_s=self.percentile(99),
            peak_throughput_qpm=pk_done / pk_min,
            peak_quality=float(self.quality[pk].sum() / pk_done) if pk_done else float("nan"),
            peak_violations_per_min=self.violations[pk].sum() / pk_min,
            peak_violation_rate=float(self.violations[pk].sum() / max(self.arrived[pk].sum(), 1)),
            served_share={lv: float(c / done) if done else 0.0 for lv, c in zip(self.levels, self.by_level)},
            violations_by_level={lv: int(v) for lv, v in zip(self.levels, self.viol_by_level)},
            below_floor=float(self.below.sum() / done) if done and self.floor is not None else float("nan"),
            peak_below_floor=(float(self.below[pk].sum() / pk_done) if pk_done and self.floor is not None
                              else float("nan")))
