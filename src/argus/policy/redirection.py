"""Which level may serve which prompts, and the redirection matrix P(optimal level -> served level).

Levels are ordered by increasing approximation. Load whose optimal level is k is *safe* at a level
j <= k (as safe or safer), and *degraded* at j > k (allowed only under declared overload).
A cache level with K > 0 resumes from a similar prompt's stored latent, so only load whose optimal
level is itself such a cache level (it had a hit) may go there; other load would miss and fall back.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

from argus.levels import level_named

SAFE, DEGRADED, NEVER = "safe", "degraded", "never"


@lru_cache(maxsize=1024)  # memo of a pure function of the name: parsing dominated small solves
def _needs_hit(name: str) -> bool:
    return level_named(name).needs_cache_hit


def relation(levels: list[str], src: int, dst: int) -> str:
    """How load whose optimal level is levels[src] may be served at levels[dst]: SAFE, DEGRADED or NEVER."""
    if _needs_hit(levels[dst]) and not _needs_hit(levels[src]):
        return NEVER
    return SAFE if dst <= src else DEGRADED


def relation_table(levels: list[str]) -> list[list[str]]:
    """relation(levels, k, j) for every pair (a fresh copy of a table cached per level set)."""
    return [list(row) for row in _table(tuple(levels))]


@lru_cache(maxsize=256)
def _table(levels: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    hit = [_needs_hit(n) for n in levels]
    return tuple(tuple(NEVER if hit[j] and not hit[k] else (SAFE if j <= k else DEGRADED)
                       for j in range(len(levels))) for k in range(len(levels)))


def fallback_target(levels: list[str], replicas: list[int], src: int) -> int:
    """Where load of an optimal level with no planned load goes: itself, else the nearest safe level, else 0."""
    table = relation_table(levels)
    if replicas[src] > 0:
        return src
    for j in range(src - 1, -1, -1):  # nearest safer level first: least quality given away
        if replicas[j] > 0 and table[src][j] == SAFE:
            return j
    return 0


def matrix(levels: list[str], replicas: list[int], flows: list[list[float]], shed: list[float] | None = None,
           capacity: list[float] | None = None, degraded_ok: bool = True) -> dict[str, dict[str, float]]:
    """Row-normalize planned flows y[k][j] plus each row's unplanned load into P(k -> j).

    `shed[k]` is load of optimal level k that arrives but the plan does not serve (planned
    shedding, demand beyond the throughput target): the router cannot shed by itself, so it
    follows the row. It goes to spare capacity (`capacity` minus planned flows) first, then, when
    no reachable level has any, spreads so that no level is filled beyond the least possible
    utilization (see place_extra); on degraded levels only if `degraded_ok` (declared overload).
    Rows without any load use fallback_target.
    """
    rows = [list(r) for r in flows]
    if shed is not None and capacity is not None:
        rows = place_extra(levels, rows, shed, capacity, degraded_ok)
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(levels):
        row = rows[k]
        total = sum(row)
        if total <= 1e-12:
            out[name] = {levels[fallback_target(levels, replicas, k)]: 1.0}
            continue
        probs = {levels[j]: f / total for j, f in enumerate(row) if f / total > 1e-9}
        norm = sum(probs.values())  # renormalize after dropping dust so rows sum to 1 exactly enough
        out[name] = {lv: p / norm for lv, p in probs.items()}
    return out


def place_extra(levels: list[str], flows: list[list[float]], extra: list[float],
                capacity: list[float], degraded_ok: bool = True) -> list[list[float]]:
    """Add each row's unplanned load `extra[k]` to the flows without overfilling any level needlessly.

    First on spare capacity, nearest safe level first, then the nearest degraded one (the row
    is unplanned load: the plan already declared overload or demand beyond target). What no
    reachable spare takes is spread so that the fullest level's load/capacity ratio t is as low
    as it can be: a row may reach every level with capacity except where NEVER holds, and NEVER
    sets are nested (rows without a cache hit reach a subset of what hit rows reach), so Hall's
    condition gives t exactly, t = max over the reach sets S of (load(S) + extra(S)) / cap(S),
    and filling each level up to t x capacity, restricted rows first, places everything.
    Scaled to a lower actual demand d, every level then stays within capacity once
    d <= planned / t: the matrix never concentrates the excess on one level.
    Without `degraded_ok` (no declared overload: the extra is demand beyond the target) rows keep to
    their safe levels; those reach sets need not be nested, so t is Hall's bound over their unions
    and what the restricted-first fill cannot place goes to the row's largest safe level.
    """
    n = len(levels)
    rows = [list(r) for r in flows]
    table = relation_table(levels)
    load = [sum(r[j] for r in rows) for j in range(n)]
    cap = [max(c, 0.0) for c in capacity]
    order = {k: [j for j in range(k, -1, -1) if table[k][j] == SAFE]
             + ([j for j in range(k + 1, n) if table[k][j] == DEGRADED] if degraded_ok else [])
             for k in range(n)}
    left = [max(e, 0.0) for e in extra]

    def fill(k: int, room) -> None:
        for j in order[k]:
            if left[k] <= 1e-12:
                return
            take = min(left[k], room(j))
            if take > 0:
                rows[k][j] += take
                load[j] += take
                left[k] -= take

    for k in range(n):
        fill(k, lambda j: cap[j] - load[j])
    if max(left, default=0.0) <= 1e-12:
        return rows
    # Reach sets: rows grouped by the levels they may reach; Hall's bound over their unions.
    reach = {k: frozenset(j for j in order[k] if cap[j] > 0) for k in range(n) if left[k] > 1e-12}
    distinct = [r for r in set(reach.values()) if r]
    unions = set(distinct) if degraded_ok else {frozenset().union(*c) for m in range(1, len(distinct) + 1)
                                               for c in combinations(distinct, m)}
    t = 1.0
    for u in unions:
        need = sum(left[k] for k, r in reach.items() if r <= u)
        t = max(t, (sum(load[j] for j in u) + need) / sum(cap[j] for j in u))
    t *= 1 + 1e-12
    for k in sorted(reach, key=lambda k: (len(reach[k]), k)):  # restricted rows first (Hall)
        fill(k, lambda j: t * cap[j] - load[j])
        if left[k] > 1e-12 and reach[k]:  # float dust
            j = max(reach[k], key=lambda j: cap[j])
            rows[k][j] += left[k]
            load[j] += left[k]
            left[k] = 0.0
    # A row that reaches no level with capacity keeps its served proportions (nothing better exists).
    return rows


def violations(levels: list[str], redirection: dict[str, dict[str, float]],
               demand_by_level: dict[str, float]) -> list[tuple[str, str]]:
    """Pairs (optimal, served) with demand and positive probability that are not SAFE."""
    idx = {n: i for i, n in enumerate(levels)}
    bad = []
    for src, row in redirection.items():
        if demand_by_level.get(src, 0.0) <= 0:
            continue
        for dst, p in row.items():
            if p > 1e-9 and relation(levels, idx[src], idx[dst]) != SAFE:
                bad.append((src, dst))
    return bad
