"""The policy document: what the control loop tells the router, as one versioned object.

In Kubernetes it is the `policy.json` key of the service's ConfigMap, which the router
lists; locally it is a file. The router hot-reloads it and keeps the last good one when
a new one is invalid.

It carries every per-service data-plane setting (quality floor, latency SLO, image size:
`DATA_PLANE_FIELDS`, all taken from the T2IService spec); the router has no per-service
defaults of its own.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class PolicyError(ValueError):
    """A policy document is invalid; the message names the field."""


DATA_PLANE_FIELDS = ("quality_floor", "latency_slo_s", "image_size")  # per-service settings the router applies


class PolicyDocument(BaseModel):
    """Allocation and redirection for one T2IService, as decided at one control period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(..., ge=0, description="Increases with every decision; the router ignores older ones.")
    epoch: str = Field("", max_length=128, description=(
        "The control loop's lineage: the T2IService's uid in Kubernetes, one id per run locally. Versions are "
        "compared within an epoch; a document of another epoch replaces the one in force whatever its version "
        "(the service was recreated or the local runtime restarted, so its versions started again at 1)."))
    service: str = Field(..., min_length=1)
    generated_at: float = Field(0.0, description="Unix time of the decision.")
    quality_floor: float = Field(..., ge=0, le=100, description="Service floor, relative quality percent.")
    latency_slo_s: float = Field(..., gt=0, description=(
        "The service's end-to-end latency SLO (spec.latencySLO), seconds: the router counts a request "
        "finished later than this as an SLO violation."))
    image_size: str = Field(..., pattern=r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$", description=(
        "The service's image size 'WxH' (spec.model width x height): what a request naming no size gets."))
    levels: list[str] = Field(..., min_length=1, description="Levels in order of increasing approximation.")
    allocation: dict[str, int] = Field(default_factory=dict, description="Replicas per level.")
    redirection: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="P(optimal level -> served level); each row sums to 1.")
    overload: bool = Field(False, description="True when even the cheapest feasible mix cannot serve demand.")
    shed_rate: float = Field(0.0, ge=0, description="Requests/s the optimizer expects to be shed.")
    level_quality: dict[str, float] = Field(default_factory=dict, description=(
        "Mean relative quality (%) of each level in the profile the plan used; the router reports it for a "
        "request whose prompt has no per-level prediction (no predictor, or a level it does not cover)."))
    prices: dict[str, float] = Field(default_factory=dict, description=(
        "Per-prompt placement (issue 17): what a request at each level costs the plan, in quality points. The "
        "router sends a prompt with per-level predictions to the allowed level maximizing predicted quality "
        "minus price (argus.policy.assign.place). Empty: draw from the redirection row."))
    shares: dict[str, float] = Field(default_factory=dict, description=(
        "Each level's share of the allocation's capacity (they sum to 1): per-prompt placement sends no level "
        "more than this share of the arrivals (beyond a small burst)."))
    degrade_price: float = Field(0.0, ge=0, description=(
        "Under overload, what the plan charges a request served below its prompt's quality floor, in quality "
        "points (the optimizer's degrade price when it plans per optimal level; 0 when it plans per class, "
        "whose values are the classes' own qualities). The router takes it off a prompt's score at a level "
        "predicted below its floor, so its scores are in the prices' units."))
    agnostic_key: str | None = Field(None, description=(
        "Prompt-agnostic mode (Proteus-like, `argus up --mode proteus`): the router keys every prompt at this "
        "level and draws its served level from that level's redirection row, ignoring per-prompt predictions. "
        "None (Argus): each prompt is keyed and placed by its own predictions."))
    late_rungs: bool = Field(False, description=(
        "Late requests run faster (argus.policy.lateness): the router sends each request's deadline, and a "
        "worker runs a group that would miss it at the first step-reduction level of the same weights that "
        "makes it. Argus's plans set it; fixed and prompt-agnostic policies serve their levels as they are."))
    max_in_flight: dict[str, float] = Field(default_factory=dict, description=(
        "Requests in flight per ready replica beyond which a level takes no more prompts: the router places a "
        "prompt at its next level with room instead (argus.policy.lateness.in_flight_limits: what a replica "
        "finishes within the SLO at its fastest rung). Empty: no limit. Argus's plans set it with late_rungs; "
        "when every level is past its limit the router places as if none were."))
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> "PolicyDocument":
        known = set(self.levels)
        if self.agnostic_key is not None and self.agnostic_key not in known:
            raise ValueError(f"agnostic_key: unknown level {self.agnostic_key!r}")
        for lv in self.allocation:
            if lv not in known:
                raise ValueError(f"allocation: unknown level {lv!r}")
        for lv, q in self.level_quality.items():
            if lv not in known:
                raise ValueError(f"level_quality: unknown level {lv!r}")
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"level_quality[{lv}]: {q} outside [0, 100]")
        for name, table in (("prices", self.prices), ("shares", self.shares), ("max_in_flight", self.max_in_flight)):
            for lv, v in table.items():
                if lv not in known:
                    raise ValueError(f"{name}: unknown level {lv!r}")
                if not (v >= 0.0 and v < float("inf")) or (name == "shares" and v > 1.0 + 1e-9):
                    raise ValueError(f"{name}[{lv}]: {v} out of range")
        for src, row in self.redirection.items():
            if src not in known:
                raise ValueError(f"redirection: unknown source level {src!r}")
            for dst, p in row.items():
                if dst not in known:
                    raise ValueError(f"redirection[{src}]: unknown level {dst!r}")
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"redirection[{src}][{dst}]: probability {p} outside [0, 1]")
            if row and abs(sum(row.values()) - 1.0) > 1e-6:
                raise ValueError(f"redirection[{src}]: row sums to {sum(row.values()):.6f}, not 1")
        return self

    def to_json(self) -> str:
        """Serialize deterministically (sorted keys)."""
        return json.dumps(self.model_dump(), sort_keys=True, indent=1)


def parse_policy(text: str | bytes) -> PolicyDocument:
    """Parse and validate a policy document; raise PolicyError naming the problem."""
    try:
        return PolicyDocument.model_validate_json(text)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise PolicyError(f"policy{'.' + loc if loc else ''}: {err['msg'].removeprefix('Value error, ')}") from None
