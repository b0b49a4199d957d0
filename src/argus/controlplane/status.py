"""Status as pure data: conditions Ready, Progressing, Degraded with reasons, and when a status is worth
writing (material changes, merge-patch arithmetic). No I/O."""

from __future__ import annotations

import re
from typing import Any

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def set_conditions(existing: list[dict[str, Any]] | None, updates: dict[str, tuple[bool, str, str]],
                   now_iso: str) -> list[dict[str, Any]]:
    """Merge {type: (status, reason, message)} into a condition list; keep lastTransitionTime if unchanged."""
    by_type = {c.get("type"): dict(c) for c in existing or [] if isinstance(c, dict)}
    for ctype, (ok, reason, message) in updates.items():
        status = "True" if ok else "False"
        old = by_type.get(ctype)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else now_iso
        by_type[ctype] = {"type": ctype, "status": status, "reason": reason, "message": message[:1000],
                          "lastTransitionTime": since}
    order = [c for c in CONDITION_TYPES if c in by_type] + sorted(k for k in by_type if k not in CONDITION_TYPES)
    return [by_type[c] for c in order]


def condition(conditions: list[dict[str, Any]] | None, ctype: str) -> dict[str, Any] | None:
    """The condition of one type, or None."""
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


# Status fields that move every period without meaning a change: written with the heartbeat only.
HEARTBEAT_FIELDS = ("lastDecision", "demandEstimate")
# A number changed when it moved by more than both: scrape-to-scrape jitter of a rate over a short window
# is ~5 %; the heartbeat writes exact values once a minute anyway.
REL_TOLERANCE, ABS_TOLERANCE = 0.10, 0.01
QUALITY_TOLERANCE = 0.5  # quality fields are percent: half a point
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _differs(a: Any, b: Any, key: str = "") -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a != b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a != b
        if key.endswith("Quality"):
            return abs(a - b) > QUALITY_TOLERANCE
        return abs(a - b) > max(ABS_TOLERANCE, REL_TOLERANCE * max(abs(a), abs(b)))
    if isinstance(a, str) and isinstance(b, str):  # numbers in messages follow the fields they come from
        return _NUMBER.sub("#", a) != _NUMBER.sub("#", b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {"lastTransitionTime"}
        return any(_differs(a.get(k), b.get(k), k) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) != len(b) or any(_differs(x, y, key) for x, y in zip(a, b))
    return a != b


def materially_different(written: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether `new` is worth a status write over `written`: heartbeat fields left out; a number counts
    when it moved by more than 10 % (and 0.01; quality percentages by half a point), numbers inside messages not at all (the fields they come
    from count); anything else exactly.
    Rates and quality jitter every period; without this every period would write the status."""
    keys = (set(written) | set(new)) - set(HEARTBEAT_FIELDS)
    return any(_differs(written.get(k), new.get(k), k) for k in keys)


def merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge-patch `patch` onto `old` (None deletes a key), as the API server applies it."""
    out = dict(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            out[k] = merge(out[k] if isinstance(out.get(k), dict) else {}, v)
        else:
            out[k] = v
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge-patch that turns `old` into `new` (empty when they are equal)."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            sub = diff(old[k], v)
            if sub:
                out[k] = sub
        elif k not in old or old[k] != v:
            out[k] = v
    return out
