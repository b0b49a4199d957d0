"""The quality-profile file written by `argus profile` and read by `argus train` (JSON Lines).

Format `argus-quality-profile`, version 1. One JSON object per line; the first is the header.

    {"type": "header", "format": "argus-quality-profile", "version": 1,
     "model": <pipeline identity>, "steps": N, "levels": [level names], "encoder": <embedder name>,
     "scorer": <scorer name>, "score_kind": "clipscore" | "clip-cosine" | "exact", "height": H, "width": W,
     "seed": <base seed>, "prompts_sha256": <hash of the prompt list>, "n_prompts": n,
     "batch_sizes": [..], "device": "cpu" | "cuda:0 (<card>)"}
    {"type": "prompt", "i": <index>, "prompt": str, "seed": int,
     "neighbour": <index of the most similar other prompt> | null, "similarity": float | null,
     "scores": {level: score}, "quality": {level: relative quality in percent (the scorer's rule), or null}}
    {"type": "latency", "level": name, "batch_size": b, "seconds": <median wall time of one batch>,
     "repeats": r}

Cache levels (K>0) are measured the NIRVANA way: the prompt resumes at step K from its
neighbour's stored latent. While `argus profile` runs it appends to `<out>.partial` (one whole
line per record, fsync'd per batch; resuming drops a torn last line), and renames it to `<out>`
only when every prompt and latency cell is done, so `<out>` is never half-written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argus.levels import LevelError, parse_levels

PROFILE_FORMAT = "argus-quality-profile"
PROFILE_VERSION = 1
HEADER_KEYS = ("model", "steps", "levels", "encoder", "scorer", "score_kind", "height", "width", "seed",
               "prompts_sha256", "n_prompts", "batch_sizes")


class ProfileDataError(ValueError):
    """A quality-profile file is invalid; the message names the file, the line and the problem."""


@dataclass
class PromptRecord:
    """Measured quality of one prompt at every level."""

    i: int
    prompt: str
    seed: int
    neighbour: int | None
    similarity: float | None
    scores: dict[str, float]
    quality: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """The JSON line."""
        return {"type": "prompt", "i": self.i, "prompt": self.prompt, "seed": self.seed,
                "neighbour": self.neighbour, "similarity": self.similarity, "scores": self.scores,
                "quality": self.quality}


@dataclass
class QualityProfile:
    """A parsed profile: header, prompt records by index, latency (level, batch) → seconds."""

    header: dict[str, Any]
    prompts: dict[int, PromptRecord] = field(default_factory=dict)
    latency: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every prompt and latency cell is recorded."""
        h = self.header
        return len(self.prompts) == h["n_prompts"] and \
            all((lv, b) in self.latency for lv in h["levels"] for b in h["batch_sizes"])


def header_line(**fields: Any) -> dict[str, Any]:
    """A header record with every required field."""
    missing = [k for k in HEADER_KEYS if k not in fields]
    if missing:
        raise ProfileDataError(f"profile header: missing {missing}")
    return {"type": "header", "format": PROFILE_FORMAT, "version": PROFILE_VERSION, **fields}


def read_profile(path: str | Path, allow_torn_tail: bool = False) -> QualityProfile:
    """Parse and validate a profile file; errors name the file and line.

    With `allow_torn_tail` (resuming a `.partial`), an unterminated last line is ignored.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileDataError(f"{p}: profile not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileDataError(f"{p}: cannot read profile ({e})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif allow_torn_tail and lines:
        lines.pop()  # a crash mid-write left an unterminated line: it is redone
    if not lines:
        raise ProfileDataError(f"{p}: empty profile (no header line)")
    prof: QualityProfile | None = None
    for no, line in enumerate(lines, 1):
        where = f"{p}:{no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ProfileDataError(f"{where}: corrupt profile line: {e.msg}") from None
        if not isinstance(rec, dict):
            raise ProfileDataError(f"{where}: expected a JSON object")
        kind = rec.get("type")
        if prof is None:
            prof = QualityProfile(_check_header(rec, where))
        elif kind == "prompt":
            r = _check_prompt(rec, prof.header, where)
            prof.prompts[r.i] = r
        elif kind == "latency":
            lv, b, s = rec.get("level"), rec.get("batch_size"), rec.get("seconds")
            if lv not in prof.header["levels"] or not isinstance(b, int) or b < 1 or not _pos(s):
                raise ProfileDataError(f"{where}: latency record needs a profiled level, batch_size >= 1, seconds > 0")
            prof.latency[(lv, b)] = float(s)
        else:
            raise ProfileDataError(f"{where}: unknown record type {kind!r}")
    assert prof is not None
    return prof


def _check_header(rec: dict, where: str) -> dict[str, Any]:
    if rec.get("type") != "header" or rec.get("format") != PROFILE_FORMAT:
        raise ProfileDataError(f"{where}: not an {PROFILE_FORMAT} file (first line must be its header)")
    if rec.get("version") != PROFILE_VERSION:
        raise ProfileDataError(f"{where}: profile version {rec.get('version')!r}, this Argus reads {PROFILE_VERSION}")
    missing = [k for k in HEADER_KEYS if k not in rec]
    if missing:
        raise ProfileDataError(f"{where}: header lacks {missing}")
    try:
        parse_levels(list(rec["levels"]), int(rec["steps"]))
    except (LevelError, TypeError, ValueError) as e:
        raise ProfileDataError(f"{where}: header levels: {e}") from None
    return rec


def _check_prompt(rec: dict, header: dict, where: str) -> PromptRecord:
    i = rec.get("i")
    if not isinstance(i, int) or not 0 <= i < header["n_prompts"]:
        raise ProfileDataError(f"{where}: prompt index {i!r} outside [0, {header['n_prompts']})")
    quality = rec.get("quality")
    scores = rec.get("scores")
    if not isinstance(quality, dict) or not isinstance(scores, dict):
        raise ProfileDataError(f"{where}: prompt record needs 'scores' and 'quality' objects")
    unknown = set(quality) - set(header["levels"])
    if unknown:
        raise ProfileDataError(f"{where}: quality for unknown level {sorted(unknown)[0]!r}")
    for lv, q in quality.items():
        if q is not None and not (isinstance(q, (int, float)) and math.isfinite(q)):
            raise ProfileDataError(f"{where}: quality[{lv!r}] must be a number or null")
    sim = rec.get("similarity")
    if sim is not None and not (isinstance(sim, (int, float)) and -1.0001 <= sim <= 1.0001):
        raise ProfileDataError(f"{where}: similarity must be in [-1, 1] or null")
    return PromptRecord(i=i, prompt=str(rec.get("prompt", "")), seed=int(rec.get("seed", 0)),
                        neighbour=rec.get("neighbour"), similarity=None if sim is None else float(sim),
                        scores={k: float(v) for k, v in scores.items()},
                        quality={k: (None if v is None else float(v)) for k, v in quality.items()})


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
