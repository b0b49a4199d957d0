"""Level profiles: what one GPU achieves at each level (throughput, service time, quality, load time).

Profiles come from offline profiling (or, by default, from the Argus prototype's published
SDXL numbers, `argus/data/profiles/sdxl_published.json`). Units: throughput in requests per
second per GPU, times in seconds, quality in percent of the full-quality image's score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


class ProfileError(ValueError):
    """A level profile is invalid; the message names the file (when known) and the field."""


@dataclass(frozen=True)
class LevelProfile:
    """Profiled behaviour of one level on one GPU."""

    level: str  # level name, e.g. "cache-k10" (argus.levels)
    throughput: dict[int, float]  # requests/s per GPU, by batch size
    service_time: float  # seconds for one request at batch size 1 (its latency without queueing)
    quality: float  # mean relative quality of prompts served at this level, percent
    model: str  # model identity (weights); levels sharing it share latents
    load_time: float  # seconds to start a replica (load weights) before it serves
    note: str = ""  # provenance; says "assumption" where a value was estimated, not measured

    @property
    def peak_throughput(self) -> float:
        """Best throughput per GPU over batch sizes (requests/s): the capacity the optimizer plans with."""
        return max(self.throughput.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (batch sizes as string keys)."""
        return {"level": self.level, "throughput": {str(b): t for b, t in sorted(self.throughput.items())},
                "service_time": self.service_time, "quality": self.quality, "model": self.model,
                "load_time": self.load_time, "note": self.note}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "profile") -> "LevelProfile":
        """Validate a dict into a LevelProfile; ProfileError messages start with `where`."""
        if not isinstance(raw, dict):
            raise ProfileError(f"{where}: expected an object, got {type(raw).__name__}")
        unknown = set(raw) - {"level", "throughput", "service_time", "quality", "model", "load_time", "note"}
        if unknown:
            raise ProfileError(f"{where}.{sorted(unknown)[0]}: unknown field")
        level = raw.get("level")
        if not isinstance(level, str) or not level:
            raise ProfileError(f"{where}.level: must be a non-empty level name")
        tp = raw.get("throughput")
        if not isinstance(tp, dict) or not tp:
            raise ProfileError(f"{where}.throughput: must map batch size to requests/s per GPU")
        throughput: dict[int, float] = {}
        for b, t in tp.items():
            try:
                bs = int(b)
            except (TypeError, ValueError):
                raise ProfileError(f"{where}.throughput: batch size {b!r} is not an integer") from None
            if bs < 1:
                raise ProfileError(f"{where}.throughput: batch size {bs} must be >= 1")
            throughput[bs] = _positive(t, f"{where}.throughput[{b}]")
        quality = _number(raw.get("quality"), f"{where}.quality")
        if not 0.0 < quality <= 100.0:
            raise ProfileError(f"{where}.quality: {quality} must be in (0, 100]")
        model = raw.get("model")
        if not isinstance(model, str) or not model:
            raise ProfileError(f"{where}.model: must be a non-empty model identity")
        load_time = _number(raw.get("load_time", 0.0), f"{where}.load_time")
        if load_time < 0:
            raise ProfileError(f"{where}.load_time: {load_time} must be >= 0")
        note = raw.get("note", "")
        if not isinstance(note, str):
            raise ProfileError(f"{where}.note: must be a string")
        return cls(level=level, throughput=throughput,
                   service_time=_positive(raw.get("service_time"), f"{where}.service_time"),
                   quality=quality, model=model, load_time=load_time, note=note)


def rescaled(profile: Profile, factor: float, why: str) -> Profile:
    """`profile` on a machine `factor` times as fast: throughputs x factor, service times / factor.

    Latencies measured on one machine hold on another only up to such a factor (machines of one kind run the
    tiny model up to ~3x apart; `argus up --calibrate` measures it; the simulator anchors a CPU-measured
    profile on a GPU one). Load times are not scaled (mostly process start-up).
    """
    if not factor > 0:
        raise ValueError(f"rescale factor must be > 0, got {factor}")
    levels = tuple(LevelProfile(level=lp.level, throughput={b: t * factor for b, t in lp.throughput.items()},
                                service_time=lp.service_time / factor, quality=lp.quality, model=lp.model,
                                load_time=lp.load_time, note=lp.note) for lp in profile.levels)
    return Profile(model=profile.model, levels=levels, source=profile.source,
                   assumptions=profile.assumptions + (f"Throughputs and service times x {factor:.3g}: {why}.",))


def agnostic_key(profiles: tuple[LevelProfile, ...] | list[LevelProfile]) -> str:
    """The level with the highest peak throughput (first on ties): where a prompt-agnostic policy
    (Proteus-like) keys every prompt, so that every level may serve it."""
    return max(profiles, key=lambda lp: lp.peak_throughput).level


@dataclass(frozen=True)
class Profile:
    """A named set of level profiles for one model, in file order."""

    model: str
    levels: tuple[LevelProfile, ...]
    source: str = ""
    assumptions: tuple[str, ...] = field(default=())

    def get(self, level: str) -> LevelProfile:
        """The profile of one level; ProfileError when the profile has none."""
        for lp in self.levels:
            if lp.level == level:
                return lp
        raise ProfileError(f"profile {self.model!r} has no level {level!r}")

    def select(self, names: list[str]) -> list[LevelProfile]:
        """The profiles of `names`, in that order."""
        return [self.get(n) for n in names]


def parse_profile(raw: Any, where: str = "profile") -> Profile:
    """Validate a profile document ({model, source, assumptions, levels: [...]})."""
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected an object, got {type(raw).__name__}")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ProfileError(f"{where}.model: must be a non-empty model identity")
    levels = raw.get("levels")
    if not isinstance(levels, list) or not levels:
        raise ProfileError(f"{where}.levels: must be a non-empty list")
    parsed = tuple(LevelProfile.from_dict(lv, f"{where}.levels[{i}]") for i, lv in enumerate(levels))
    names = [lp.level for lp in parsed]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ProfileError(f"{where}.levels: level {dup!r} appears twice")
    assumptions = raw.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise ProfileError(f"{where}.assumptions: must be a list of strings")
    return Profile(model=model, levels=parsed, source=str(raw.get("source", "")),
                   assumptions=tuple(assumptions))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile JSON file; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"{p}: cannot read profile: {e.strerror or e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{p}: not valid JSON: {e.msg} at line {e.lineno}") from None
    try:
        return parse_profile(raw)
    except ProfileError as e:
        raise ProfileError(f"{p}: {e}") from None


def default_profile_path() -> Path:
    """Path of the bundled SDXL profile built from the Argus prototype's published numbers."""
    return Path(str(resources.files("argus") / "data" / "profiles" / "sdxl_published.json"))


def load_default_profile() -> Profile:
    """The bundled SDXL profile (see default_profile_path)."""
    return load_profile(default_profile_path())


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ProfileError(f"{where}: must be a finite number, got {v!r}")
    return float(v)


def _positive(v: Any, where: str) -> float:
    x = _number(v, where)
    if x <= 0:
        raise ProfileError(f"{where}: {x} must be > 0")
    return x
