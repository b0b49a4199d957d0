"""The optimizer's input: one immutable snapshot of service spec, profiles, demand and current state.

Built by the control loop from the spec, the profile, Prometheus and the cluster; built by tests
and `argus solve` from JSON. Validation raises SnapshotError whose message names the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from argus.levels import FULL, LevelError, parse_level
from argus.policy.profile import LevelProfile, Profile, ProfileError

H_TOLERANCE = 1e-3  # h_k shares come from counting prompts; allow rounding, not a different distribution


class SnapshotError(ValueError):
    """A snapshot is malformed or contradictory; the message starts with the field's name."""


@dataclass(frozen=True)
class Hysteresis:
    """How reluctant the optimizer is to change a working allocation."""

    min_dwell_s: float = 60.0  # seconds a new allocation is kept before a non-urgent change
    min_gain: float = 0.01  # relative objective gain a change must bring (fraction of served quality)
    amortize_s: float = 300.0  # a replica's reload time is charged as lost capacity over this horizon

    def to_dict(self) -> dict[str, float]:
        """Plain dict."""
        return {"min_dwell_s": self.min_dwell_s, "min_gain": self.min_gain, "amortize_s": self.amortize_s}


@dataclass(frozen=True)
class PromptClass:
    """Prompts the optimizer plans for together: what they may use and how good each level is for them.

    A class is keyed by both the cache-hit depth its prompts have (the deepest cache-kK their most
    similar cached prompt allows) and their sensitivity to step reduction (argus.policy.classes), not
    only by their optimal level: two prompts with the same optimal level may lose very different
    amounts at another level. `quality` is the class's expected relative quality at each level,
    estimated from profiled per-prompt qualities; a level missing from it is not offered to the class.
    """

    name: str
    share: float  # fraction of demand in this class
    optimal: str  # the predictor's optimal level for the class (levels at least as safe are "safe" for it)
    hit: int  # deepest cache-kK allowed (0: no hit); deeper cache levels are never offered
    quality: dict[str, float]  # expected relative quality (%) per level

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return {"name": self.name, "share": self.share, "optimal": self.optimal, "hit": self.hit,
                "quality": dict(self.quality)}


@dataclass(frozen=True)
class Snapshot:
    """Everything one optimizer run needs; `now` is the decision time (seconds, any epoch)."""

    gpus: int
    profiles: tuple[LevelProfile, ...]  # one per level, in order of increasing approximation
    demand: float  # estimated arrival rate, requests/s (already smoothed, with headroom)
    h: dict[str, float]  # share of demand whose optimal level is k; missing levels are 0
    throughput_target: float  # requests/s the service must sustain
    quality_floor: float  # per-prompt floor the predictor enforced, percent (reported against)
    latency_slo: float  # seconds, end to end
    now: float = 0.0
    current: dict[str, int] = field(default_factory=dict)  # replicas per level now
    queues: dict[str, float] = field(default_factory=dict)  # requests waiting per level now
    last_change: float | None = None  # time the allocation last changed
    min_full_quality: int = 1  # replicas of cache-k0 always kept
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    # Per-class planning (issue 17): when given, demand is split by class share (h is then only reported)
    # and serving class c at level j is worth the class's expected quality there.
    classes: tuple[PromptClass, ...] = ()
    # The actuator switches a replica between levels of one model without a reload (argus.control.loop.plan).
    in_place: bool = False
    # The user's quality/violation trade (T2IService spec `qualityWeight`): the plan values quality this
    # many times more against unserved planned demand (P_SHED per req/s). 1 serves the planned demand
    # (headroom included) first; larger values give up some headroom for quality at peak.
    quality_weight: float = 1.0

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def levels(self) -> list[str]:
        """Level names in order of increasing approximation."""
        return [p.level for p in self.profiles]

    def with_(self, **changes: Any) -> "Snapshot":
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; from_dict(to_dict(s)) == s."""
        return {"gpus": self.gpus, "levels": [p.to_dict() for p in self.profiles], "demand": self.demand,
                "h": dict(self.h), "throughput_target": self.throughput_target,
                "quality_floor": self.quality_floor, "latency_slo": self.latency_slo, "now": self.now,
                "current": dict(self.current), "queues": dict(self.queues), "last_change": self.last_change,
                "min_full_quality": self.min_full_quality, "hysteresis": self.hysteresis.to_dict(),
                "classes": [c.to_dict() for c in self.classes], "quality_weight": self.quality_weight,
                "in_place": self.in_place}

    def level_shares(self) -> dict[str, float]:
        """Share of demand per optimal level: h, or the classes' shares summed by optimal level."""
        if not self.classes:
            return dict(self.h)
        out: dict[str, float] = {}
        for c in self.classes:
            out[c.optimal] = out.get(c.optimal, 0.0) + c.share
        return out

    @classmethod
    def from_dict(cls, raw: Any, profile: Profile | None = None) -> "Snapshot":
        """Validate a JSON dict. `levels` items are profile objects, or names looked up in `profile`."""
        if not isinstance(raw, dict):
            raise SnapshotError(f"snapshot: expected an object, got {type(raw).__name__}")
        known = {"gpus", "levels", "demand", "h", "throughput_target", "quality_floor", "latency_slo", "now",
                 "current", "queues", "last_change", "min_full_quality", "hysteresis", "classes",
                 "quality_weight", "in_place"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SnapshotError(f"{unknown[0]}: unknown field")
        for req in ("gpus", "levels", "demand", "throughput_target", "latency_slo"):
            if req not in raw:
                raise SnapshotError(f"{req}: is required")
        levels = raw["levels"]
        if not isinstance(levels, list):
            raise SnapshotError("levels: must be a list of level profiles (or level names)")
        profiles = []
        for i, item in enumerate(levels):
            try:
                if isinstance(item, str):
                    if profile is None:
                        raise SnapshotError(f"levels[{i}]: {item!r} given by name but no profile to look it up in")
                    profiles.append(profile.get(item))
                else:
                    profiles.append(LevelProfile.from_dict(item, f"levels[{i}]"))
            except ProfileError as e:
                raise SnapshotError(f"levels[{i}]: {e}" if not str(e).startswith("levels[") else str(e)) from None
        hyst = raw.get("hysteresis", {})
        if not isinstance(hyst, dict):
            raise SnapshotError("hysteresis: must be an object")
        bad = sorted(set(hyst) - {"min_dwell_s", "min_gain", "amortize_s"})
        if bad:
            raise SnapshotError(f"hysteresis.{bad[0]}: unknown field")
        for k, v in hyst.items():
            _finite(v, f"hysteresis.{k}")
        if "h" not in raw and not raw.get("classes"):
            raise SnapshotError("h: is required (or classes)")
        classes = raw.get("classes", [])
        if not isinstance(classes, list):
            raise SnapshotError("classes: must be a list of prompt classes")
        parsed = []
        for i, c in enumerate(classes):
            if not isinstance(c, dict):
                raise SnapshotError(f"classes[{i}]: must be an object")
            bad = sorted(set(c) - {"name", "share", "optimal", "hit", "quality"})
            if bad:
                raise SnapshotError(f"classes[{i}].{bad[0]}: unknown field")
            for req in ("name", "share", "optimal", "quality"):
                if req not in c:
                    raise SnapshotError(f"classes[{i}].{req}: is required")
            parsed.append(PromptClass(name=c["name"], share=c["share"], optimal=c["optimal"], hit=c.get("hit", 0),
                                      quality=_mapping(c["quality"], f"classes[{i}].quality")))
        return cls(gpus=raw["gpus"], profiles=tuple(profiles), demand=raw["demand"], h=_mapping(raw.get("h", {}), "h"),
                   throughput_target=raw["throughput_target"], quality_floor=raw.get("quality_floor", 90.0),
                   latency_slo=raw["latency_slo"], now=raw.get("now", 0.0),
                   current=_mapping(raw.get("current", {}), "current"),
                   queues=_mapping(raw.get("queues", {}), "queues"), last_change=raw.get("last_change"),
                   min_full_quality=raw.get("min_full_quality", 1), hysteresis=Hysteresis(**hyst),
                   classes=tuple(parsed), quality_weight=raw.get("quality_weight", 1.0),
                   in_place=bool(raw.get("in_place", False)))


def _mapping(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise SnapshotError(f"{where}: must be an object mapping level name to a number")
    return dict(v)


def _finite(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SnapshotError(f"{where}: must be a finite number, got {v!r}")
    return float(v)


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SnapshotError(f"{where}: must be an integer, got {v!r}")
    return v


def _validate(s: Snapshot) -> None:
    """Check every field; the first problem raises SnapshotError naming it."""
    if _int(s.gpus, "gpus") < 1:
        raise SnapshotError(f"gpus: {s.gpus} must be >= 1")
    if not s.profiles:
        raise SnapshotError("levels: must contain at least one level")
    names = [p.level for p in s.profiles]
    for i, n in enumerate(names):
        try:
            parse_level(n, 1000)
        except LevelError as e:
            raise SnapshotError(f"levels[{i}]: {e}") from None
        if names.index(n) != i:
            raise SnapshotError(f"levels[{i}]: level {n!r} appears twice")
    if FULL not in names:
        raise SnapshotError(f"levels: must include the full-quality level {FULL!r}")
    if _finite(s.demand, "demand") < 0:
        raise SnapshotError(f"demand: {s.demand} requests/s must be >= 0")
    if _finite(s.throughput_target, "throughput_target") <= 0:
        raise SnapshotError(f"throughput_target: {s.throughput_target} requests/s must be > 0")
    if not 0 <= _finite(s.quality_floor, "quality_floor") <= 100:
        raise SnapshotError(f"quality_floor: {s.quality_floor}% must be in [0, 100]")
    if _finite(s.latency_slo, "latency_slo") <= 0:
        raise SnapshotError(f"latency_slo: {s.latency_slo} s must be > 0")
    _finite(s.now, "now")
    if s.last_change is not None and _finite(s.last_change, "last_change") > s.now:
        raise SnapshotError(f"last_change: {s.last_change} is after now={s.now}")
    known = set(names)
    for k, v in s.h.items():
        if k not in known:
            raise SnapshotError(f"h: unknown level {k!r}")
        if _finite(v, f"h[{k}]") < 0:
            raise SnapshotError(f"h[{k}]: share {v} must be >= 0")
    total = sum(s.h.values())
    if s.demand > 0 and not s.classes and abs(total - 1.0) > H_TOLERANCE:
        raise SnapshotError(f"h: shares sum to {total:.6f}, not 1")
    _validate_classes(s, known)
    if not (_finite(s.quality_weight, "quality_weight") > 0):
        raise SnapshotError(f"quality_weight: {s.quality_weight} must be > 0")
    for k, v in s.current.items():
        if k not in known:
            raise SnapshotError(f"current: unknown level {k!r}")
        if _int(v, f"current[{k}]") < 0:
            raise SnapshotError(f"current[{k}]: {v} replicas must be >= 0")
    for k, v in s.queues.items():
        if k not in known:
            raise SnapshotError(f"queues: unknown level {k!r}")
        if _finite(v, f"queues[{k}]") < 0:
            raise SnapshotError(f"queues[{k}]: {v} queued requests must be >= 0")
    m = _int(s.min_full_quality, "min_full_quality")
    if not 0 <= m <= s.gpus:
        raise SnapshotError(f"min_full_quality: {m} must be in [0, gpus={s.gpus}]")
    hy = s.hysteresis
    if hy.min_dwell_s < 0:
        raise SnapshotError(f"hysteresis.min_dwell_s: {hy.min_dwell_s} must be >= 0")
    if hy.min_gain < 0:
        raise SnapshotError(f"hysteresis.min_gain: {hy.min_gain} must be >= 0")
    if hy.amortize_s <= 0:
        raise SnapshotError(f"hysteresis.amortize_s: {hy.amortize_s} must be > 0")


def _validate_classes(s: Snapshot, known: set[str]) -> None:
    seen = set()
    for i, c in enumerate(s.classes):
        where = f"classes[{i}]"
        if not isinstance(c.name, str) or not c.name:
            raise SnapshotError(f"{where}.name: must be a non-empty string")
        if c.name in seen:
            raise SnapshotError(f"{where}.name: class {c.name!r} appears twice")
        seen.add(c.name)
        if _finite(c.share, f"{where}.share") < 0:
            raise SnapshotError(f"{where}.share: {c.share} must be >= 0")
        if c.optimal not in known:
            raise SnapshotError(f"{where}.optimal: unknown level {c.optimal!r}")
        if _int(c.hit, f"{where}.hit") < 0:
            raise SnapshotError(f"{where}.hit: {c.hit} must be >= 0")
        for lv, q in c.quality.items():
            if lv not in known:
                raise SnapshotError(f"{where}.quality: unknown level {lv!r}")
            if not 0 <= _finite(q, f"{where}.quality[{lv}]") <= 100:
                raise SnapshotError(f"{where}.quality[{lv}]: {q} must be in [0, 100]")
        if FULL not in c.quality:
            raise SnapshotError(f"{where}.quality: must include the full-quality level {FULL!r}")
    total = sum(c.share for c in s.classes)
    if s.classes and s.demand > 0 and abs(total - 1.0) > H_TOLERANCE:
        raise SnapshotError(f"classes: shares sum to {total:.6f}, not 1")
