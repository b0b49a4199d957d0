"""What the control loop observed in one period: a plain metrics snapshot, built by the metrics source."""

from __future__ import annotations

from dataclasses import dataclass, field


class MetricsUnavailable(Exception):
    """Metrics could not be read (source unreachable or no data); the message says which."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # CamelCase condition reason, e.g. PrometheusUnreachable, NoMetrics


@dataclass(frozen=True)
class MetricsSnapshot:
    """Router-side measurements of one T2IService over the last rate window (rates in requests/s)."""

    demand: float  # arrivals accepted for routing
    h: dict[str, float] = field(default_factory=dict)  # share of arrivals per optimal level (sums to 1, or empty)
    throughput: dict[str, float] = field(default_factory=dict)  # successfully served, per level
    queues: dict[str, float] = field(default_factory=dict)  # requests in flight per level (gauge)
    quality: float | None = None  # mean predicted relative quality served, percent
    slo_violations: float = 0.0  # finished later than the SLO, requests/s

    @property
    def served(self) -> float:
        """Total successfully served requests/s."""
        return sum(self.throughput.values())

    @property
    def slo_violation_rate(self) -> float:
        """Fraction of finished requests that missed the SLO (0 when nothing finished)."""
        return min(1.0, self.slo_violations / self.served) if self.served > 0 else 0.0
