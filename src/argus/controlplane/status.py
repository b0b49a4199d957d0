"""Status conditions as pure data: Ready, Progressing, Degraded with reasons (no I/O)."""

from __future__ import annotations

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
