"""The router's Prometheus metrics, on an injected registry (no global state). Names: argus.telemetry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from argus import telemetry as t

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class RouterMetrics:
    """All router metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        """Register every metric on `registry` (a fresh one by default)."""
        r = self.registry = registry or CollectorRegistry()
        self.arrivals = Counter(t.ARRIVALS, "Requests that reached the router, admitted or shed (demand).", ["service"], registry=r)
        self.requests = Counter(t.REQUESTS, "Finished image requests.", ["service", "level", "outcome"], registry=r)
        self.optimal = Counter(t.OPTIMAL_LEVEL, "Prompts by optimal level (h_k).", ["service", "level"], registry=r)
        self.quality = Histogram(t.PREDICTED_QUALITY, "Predicted relative quality served (%).", ["service"],
                                 buckets=(80, 85, 88, 90, 92, 94, 96, 98, 99, 100), registry=r)
        self.latency = Histogram(t.LATENCY, "End-to-end latency in the router.", ["service", "level"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.pending = Gauge(t.PENDING, "Requests in flight to workers.", ["service", "level"], registry=r)
        self.cache = Counter(t.CACHE_LOOKUPS, "Similarity-cache look-ups.", ["service", "result"], registry=r)
        self.retries = Counter(t.RETRIES, "Retries after a replica failure.", ["service", "level"], registry=r)
        self.late = Counter(t.LATE_RUNGS, "Requests a worker ran at a faster level than assigned, to make their "
                            "deadline or keep up with a surge (argus.policy.lateness); why: deadline|surge.",
                            ["service", "level", "served", "why"],
                            registry=r)
        self.shed = Counter(t.SHED, "Requests refused for overload.", ["service", "reason"], registry=r)
        self.slo = Counter(t.SLO_VIOLATIONS, "Requests finished later than the SLO.", ["service", "level"],
                           registry=r)
        self.policy_version = Gauge(t.POLICY_VERSION, "Version of the policy in force.", ["service"], registry=r)
        self.policy_rejected = Counter(t.POLICY_REJECTED, "Invalid policy documents ignored.", [], registry=r)
