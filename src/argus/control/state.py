"""The control loop's memory, kept on the resource's status so the operator is stateless across restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from argus.policy.demand import DemandState


@dataclass(frozen=True)
class ControlState:
    """The last decision: what the next period needs (allocation, policy version, hysteresis timer)."""

    allocation: dict[str, int] = field(default_factory=dict)  # replicas per level now
    policy_version: int = 0  # version of the last policy document written
    last_change: float | None = None  # unix time the allocation last changed (hysteresis dwell)
    last_decision: float | None = None  # unix time of the last control-loop run
    quality: float | None = None  # predicted average quality of the last decision, percent
    observed_generation: int | None = None  # spec generation the allocation was planned for
    policy_digest: str | None = None  # content hash of the last policy (a new version only when it changes)
    demand: DemandState = field(default_factory=DemandState)  # the demand EWMA (rate and h_k)
    overload_since: float | None = None  # unix time demand first exceeded the allocation's capacity (None: it does not)
    queued: float | None = None  # requests in flight at the last decision (the queue's trend)
    reload_started: float | None = None  # unix time of the change whose added replicas are still loading
    reload_times: tuple[float, ...] = ()  # measured seconds from a change to its replicas all ready, latest last
    approx_busy: float | None = None  # unix time load was last planned or queued at an approximate level (keepWarm)

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> "ControlState":
        """Read the state back from `.status` (missing or malformed fields fall back to defaults)."""
        st = status or {}
        alloc = st.get("allocation") or {}
        clean = {str(k): int(v) for k, v in alloc.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0}
        return cls(allocation=clean, policy_version=_int(st.get("policyVersion"), 0),
                   last_change=_num(st.get("lastChange")), last_decision=_num(st.get("lastDecision")),
                   quality=_num(st.get("plannedQuality")), observed_generation=_int(st.get("observedGeneration"), None),
                   policy_digest=st.get("policyDigest") if isinstance(st.get("policyDigest"), str) else None,
                   demand=_demand(st.get("demandEstimate")), overload_since=_num(st.get("overloadSince")),
                   queued=_num(st.get("queued")), reload_started=_num(st.get("reloadStartedAt")),
                   reload_times=_reloads(st.get("measuredReloadSeconds")),
                   approx_busy=_num(st.get("approximateBusyAt")))

    def to_status(self, known_levels: list[str] | None = None) -> dict[str, Any]:
        """The status fields holding this state; levels no longer served are nulled (merge-patch delete)."""
        alloc: dict[str, int | None] = dict(self.allocation)
        for lv in known_levels or []:
            alloc.setdefault(lv, None)
        return {"allocation": alloc, "policyVersion": self.policy_version, "lastChange": self.last_change,
                "lastDecision": self.last_decision, "plannedQuality": self.quality,
                "observedGeneration": self.observed_generation, "policyDigest": self.policy_digest,
                "overloadSince": self.overload_since, "queued": self.queued,
                "reloadStartedAt": self.reload_started, "measuredReloadSeconds": list(self.reload_times) or None,
                "approximateBusyAt": self.approx_busy,
                "demandEstimate": {"rate": self.demand.rate, "at": self.demand.at,
                                   "shares": dict(self.demand.shares) or None, "sharesAt": self.demand.shares_at}}


def _demand(raw: Any) -> DemandState:
    if not isinstance(raw, dict):
        return DemandState()
    shares = raw.get("shares") if isinstance(raw.get("shares"), dict) else {}
    return DemandState(rate=_num(raw.get("rate")), at=_num(raw.get("at")),
                       shares={str(k): float(v) for k, v in shares.items() if _num(v) is not None and v > 0},
                       shares_at=_num(raw.get("sharesAt")))


def _reloads(raw: Any) -> tuple[float, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(float(v) for v in raw if _num(v) is not None and v >= 0)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any, default: int | None) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default
