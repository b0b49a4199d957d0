"""The operator's own Prometheus metrics, on an injected registry (names: argus.telemetry)."""

from __future__ import annotations

import tracemalloc

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from argus import telemetry as t


class OperatorMetrics:
    """Decisions, solve time, errors, the allocation in force, and the loop's own size.

    Per-service series are set through the methods below, which remember their labels, so
    `forget(service)` drops every series of a deleted service (nothing is kept about it).
    """

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
        self.services = Gauge("argus_operator_services", "T2IServices the control loop tracks.", registry=r)
        self.cached = Gauge("argus_operator_cached_objects", "Objects in the watch-fed cache (all kinds).", registry=r)
        self.status_writes = Counter("argus_operator_status_writes_total",
                                     "Status PATCHes (only material changes and the heartbeat).", registry=r)
        self.heap = Gauge("argus_operator_traced_heap_bytes",
                          "Python heap traced by tracemalloc (0 unless ARGUS_OPERATOR_TRACE_HEAP=1).", registry=r)
        self.heap.set_function(lambda: float(tracemalloc.get_traced_memory()[0]) if tracemalloc.is_tracing() else 0.0)
        self._labels: dict[str, set[tuple[str, str]]] = {}

    def _remember(self, metric: str, service: str, other: str) -> None:
        self._labels.setdefault(service, set()).add((metric, other))

    def decided(self, service: str, changed: bool) -> None:
        """Count one decision."""
        self._remember("decisions", service, str(changed).lower())
        self.decisions.labels(service, str(changed).lower()).inc()

    def error(self, service: str, kind: str) -> None:
        """Count one error of `kind`."""
        self._remember("errors", service, kind)
        self.errors.labels(service, kind).inc()

    def allocated(self, service: str, level: str, n: int) -> None:
        """Set the replicas of one level."""
        self._remember("replicas", service, level)
        self.replicas.labels(service, level).set(n)

    def forget(self, service: str) -> None:
        """Remove every series of `service`."""
        for metric, other in self._labels.pop(service, set()):
            try:
                getattr(self, metric).remove(service, other)
            except KeyError:
                pass
