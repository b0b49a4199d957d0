"""Words for people: the Event text of a reallocation, with the numbers that drove it. Pure."""

from __future__ import annotations


def moves(old: dict[str, int], new: dict[str, int]) -> list[tuple[int, str, str]]:
    """Pair GPUs taken from levels with GPUs given to others, in level order: [(n, from, to)]."""
    levels = list(dict.fromkeys([*old, *new]))
    give = [[lv, old.get(lv, 0) - new.get(lv, 0)] for lv in levels if old.get(lv, 0) > new.get(lv, 0)]
    take = [[lv, new.get(lv, 0) - old.get(lv, 0)] for lv in levels if new.get(lv, 0) > old.get(lv, 0)]
    out = []
    i = j = 0
    while i < len(give) and j < len(take):
        n = min(give[i][1], take[j][1])
        out.append((n, give[i][0], take[j][0]))
        give[i][1] -= n
        take[j][1] -= n
        i += give[i][1] == 0
        j += take[j][1] == 0
    return out


def reallocation_message(old: dict[str, int], new: dict[str, int], *, demand: float, old_capacity: float,
                         new_capacity: float, old_quality: float | None, new_quality: float | None,
                         queued: float = 0.0, degraded: float = 0.0, shed: float = 0.0) -> str:
    """E.g. 'demand 6.2 req/s > capacity 5.1: moved 2 GPUs cache-k0 → cache-k15, quality 96.1% → 94.8%'.

    `queued` (requests waiting now) is named when the backlog, not the rate, drove the move; `degraded`
    and `shed` (requests/s) when the plan is an overload plan that serves load below its prompts' floor
    or cannot serve it at all.
    """
    cmp = ">" if demand > old_capacity else "<="
    head = f"demand {demand:.3g} req/s {cmp} capacity {old_capacity:.3g}" if demand > 0 else \
        f"no demand, capacity {old_capacity:.3g} req/s"
    if queued >= 0.5:
        head += f", {queued:.0f} queued"
    parts = [f"moved {n} GPU{'s' if n != 1 else ''} {a} → {b}" for n, a, b in moves(old, new)]
    added = sum(new.values()) - sum(old.values())
    if added > 0 and not parts:
        parts.append(f"added {added} GPU{'s' if added != 1 else ''}")
    elif added > 0:
        parts.append(f"{added} more GPU{'s' if added != 1 else ''} in use")
    elif added < 0:
        parts.append(f"released {-added} GPU{'s' if added != -1 else ''}")
    q = f"quality {_pct(old_quality)} → {_pct(new_quality)}"
    over = []
    if degraded > 1e-9:
        over.append(f"{degraded:.3g} req/s served below their prompts' floor")
    if shed > 1e-9:
        over.append(f"{shed:.3g} req/s cannot be served")
    tail = f"; OVERLOAD: {', '.join(over)}" if over else ""
    return f"{head}: {', '.join(parts) or 'allocation unchanged'}, capacity → {new_capacity:.3g} req/s, {q}{tail}"


def _pct(q: float | None) -> str:
    return "n/a" if q is None else f"{q:.1f}%"
