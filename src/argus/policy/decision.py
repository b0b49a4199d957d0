"""The optimizer's output, and its translation into the PolicyDocument the router reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from argus.policy.document import PolicyDocument


@dataclass(frozen=True)
class Decision:
    """Replicas per level, redirection matrix and the expected outcome of one control period."""

    replicas: dict[str, int]  # every level, 0 included
    redirection: dict[str, dict[str, float]]  # P(optimal level -> served level); rows sum to 1
    throughput: float  # requests/s the plan serves
    quality: float | None  # mean relative quality of served load, percent (None: nothing served)
    latency: dict[str, float | None]  # expected latency per level, s (None: no replicas or unstable)
    overload: bool  # demand (up to target) cannot be served within floor and SLO
    shed_rate: float  # requests/s of planned demand that no level can serve
    degraded_rate: float  # requests/s served below their prompts' floor (only under overload)
    backlog_excess: float  # requests/s of queued backlog that cannot drain within the SLO
    planned: float  # requests/s planned for: min(demand, throughput target)
    served_by_level: dict[str, float]  # requests/s each level is expected to serve
    objective: float  # the MILP objective of this decision (for tests and debugging)
    gap: float  # proven bound minus objective (<= the search tolerance unless the node limit bound)
    tolerance: float  # the search's absolute objective tolerance (milp.Formulation.tolerance)
    changed: bool  # replicas differ from the snapshot's current allocation
    reason: str  # what bound is active and what was traded, for people
    notes: list[str] = field(default_factory=list)  # the reason's parts, one per line
    prices: dict[str, float] = field(default_factory=dict)  # quality points a request at each level costs the plan
    shares: dict[str, float] = field(default_factory=dict)  # each level's share of the capacity
    degrade_price: float = 0.0  # what the prices charge a request below its prompt's floor (see PolicyDocument)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with deterministic ordering of levels as given."""
        return {"replicas": dict(self.replicas), "redirection": {k: dict(v) for k, v in self.redirection.items()},
                "throughput": self.throughput, "quality": self.quality, "latency": dict(self.latency),
                "overload": self.overload, "shed_rate": self.shed_rate, "degraded_rate": self.degraded_rate,
                "backlog_excess": self.backlog_excess, "planned": self.planned,
                "served_by_level": dict(self.served_by_level), "objective": self.objective, "gap": self.gap,
                "tolerance": self.tolerance,
                "changed": self.changed, "reason": self.reason, "prices": dict(self.prices),
                "shares": dict(self.shares), "degrade_price": self.degrade_price}


def to_policy_document(decision: Decision, *, service: str, version: int, quality_floor: float,
                       latency_slo_s: float, image_size: str, generated_at: float, epoch: str = "",
                       level_quality: dict[str, float] | None = None, late_rungs: bool = False) -> PolicyDocument:
    """The versioned document for the router: allocation, redirection, overload and reason, with the
    service's data-plane settings (floor, latency SLO, image size) and whether late requests run faster."""
    return PolicyDocument(version=version, epoch=epoch, service=service, generated_at=generated_at,
                          quality_floor=quality_floor, latency_slo_s=latency_slo_s, image_size=image_size,
                          levels=list(decision.replicas),
                          allocation=dict(decision.replicas), redirection=decision.redirection,
                          overload=decision.overload, shed_rate=decision.shed_rate, reason=decision.reason,
                          level_quality=dict(level_quality or {}), prices=dict(decision.prices),
                          shares=dict(decision.shares), degrade_price=decision.degrade_price,
                          late_rungs=late_rungs)
