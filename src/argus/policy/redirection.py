"""Which level may serve which prompts, and the redirection matrix P(optimal level -> served level).

Levels are ordered by increasing approximation. Load whose optimal level is k is *safe* at a level
j <= k (as safe or safer), and *degraded* at j > k (allowed only under declared overload).
A cache level with K > 0 resumes from a similar prompt's stored latent, so only load whose optimal
level is itself such a cache level (it had a hit) may go there; other load would miss and fall back.
"""

from __future__ import annotations

from argus.levels import parse_level

SAFE, DEGRADED, NEVER = "safe", "degraded", "never"


def _needs_hit(name: str) -> bool:
    lv = parse_level(name, 1000)
    return lv.family == "cache" and lv.skip > 0


def relation(levels: list[str], src: int, dst: int) -> str:
    """How load whose optimal level is levels[src] may be served at levels[dst]: SAFE, DEGRADED or NEVER."""
    if _needs_hit(levels[dst]) and not _needs_hit(levels[src]):
        return NEVER
    return SAFE if dst <= src else DEGRADED


def relation_table(levels: list[str]) -> list[list[str]]:
    """relation(levels, k, j) for every pair, computed once per solve."""
    hit = [_needs_hit(n) for n in levels]
    return [[NEVER if hit[j] and not hit[k] else (SAFE if j <= k else DEGRADED) for j in range(len(levels))]
            for k in range(len(levels))]


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
           capacity: list[float] | None = None) -> dict[str, dict[str, float]]:
    """Row-normalize planned flows y[k][j] into P(k -> j); rows without flow use fallback_target.

    The router cannot shed by itself: load the plan sheds still arrives and follows its row.
    So each row's shed share is first placed on spare capacity (`capacity` minus planned
    flows): nearest safe level first, then nearest degraded one; only what no level can take
    follows the served proportions (and meets a full queue there, answered 503).
    """
    rows = [list(r) for r in flows]
    if shed is not None and capacity is not None:
        table = relation_table(levels)
        spare = [max(0.0, capacity[j] - sum(r[j] for r in flows)) if replicas[j] > 0 else 0.0
                 for j in range(len(levels))]
        for k in range(len(levels)):
            left = shed[k]
            safe = [j for j in range(k, -1, -1) if table[k][j] == SAFE]
            degraded = [j for j in range(k + 1, len(levels)) if table[k][j] == DEGRADED]
            for j in safe + degraded:
                if left <= 1e-12:
                    break
                take = min(left, spare[j])
                if take > 0:
                    rows[k][j] += take
                    spare[j] -= take
                    left -= take
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
