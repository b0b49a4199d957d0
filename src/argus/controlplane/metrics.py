"""The operator's own Prometheus metrics, on an injected registry (names: argus.telemetry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from argus import telemetry as t


class OperatorMetrics:
    """Decisions, solve time, errors, and the allocation in force."""

    def __init__(self, registry: CollectorRegistry | None = None):
        """Register every metric on `registry` (a fresh one by default)."""
        r = self.registry = registry or CollectorRegistry()
        self.decisions = Counter(t.DECISIONS, "Control-loop decisions.", ["service", "changed"], registry=r)
        self.solve = Histogram(t.SOLVE_SECONDS, "Optimizer solve time.",
                               buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)
        self.errors = Counter(t.RECONCILE_ERRORS, "Reconcile and control-loop errors.", ["service", "kind"],
                              registry=r)
        self.replicas = Gauge("argus_operator_replicas", "Replicas allocated per level.", ["service", "level"],
                              registry=r)
