"""Fewest GPUs that serve all planned load safely, by dynamic programming over the levels (pure).

Level j may safely serve load whose optimal level is k >= j, unless j needs a cache hit that k
lacks (argus.policy.redirection). Walk the levels from the most approximate (fastest) to full
quality: the load still waiting when level j is reached comes from levels >= j, and what each
part may use further on is its future reach (its level set below j). The parts' future reaches
are nested (load with cache hits may use every level, other load only the levels without hits), so
serving the most restricted part first is optimal: the rest can go wherever it could. With
replicas fixed that greedy decides feasibility exactly; choosing replicas, the state after level j
is (GPUs used, load waiting per part), and a state with no fewer GPUs and no less waiting in every
part is dominated. Pruned also by a lower bound on the GPUs the levels below still need. The
search ends with an allocation within the budget, with a proof that none exists (every state
pruned), or, past its state limit or when the reaches are not nested, with neither.
"""

from __future__ import annotations

import numpy as np

MAX_CANDIDATES = 4000  # (state, replica count) pairs per level; beyond, the search gives up (loose budgets)
LOAD_TOL = 1e-7  # req/s of waiting load counted as served (HiGHS's feasibility tolerance)


def fewest_gpus(reach: dict[int, int], demand: np.ndarray, throughput: np.ndarray, backlog: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, budget: int,
                credit: np.ndarray | None = None) -> tuple[np.ndarray | None, bool]:
    """(an allocation within the budget that serves all load safely, or None; whether None is proven).

    `reach[k]`: bitmask of the levels load of optimal level k may use safely; lo/hi: replica bounds
    (lo must already cover each level's backlog; hi must not cut off useful capacity); `credit`: backlog
    rate each replica holds in service (argus.policy.solver.fixed.net_capacity)."""
    n = len(lo)
    T, b = throughput, backlog
    c = np.zeros_like(b) if credit is None else credit
    usable = hi > 0
    gpus, xs, wait = np.zeros(1), np.zeros((1, n)), np.zeros((1, 0))
    keys: list[int] = []  # future reach of each part of the waiting load
    for j in range(n - 1, -1, -1):
        below, upto = (1 << j) - 1, (1 << (j + 1)) - 1
        new_keys = sorted({k & upto for k in keys} | ({reach[j] & upto} if j in reach else set()))
        merged = np.zeros((len(gpus), len(new_keys)))
        for i, k in enumerate(keys):
            merged[:, new_keys.index(k & upto)] += wait[:, i]
        if j in reach:
            merged[:, new_keys.index(reach[j] & upto)] += demand[j]
        keys, wait = new_keys, merged
        if 0 in keys:  # load with no level left to serve it
            ok = wait[:, keys.index(0)] <= LOAD_TOL
            gpus, xs, wait = gpus[ok], xs[ok], wait[ok]
        serve = sorted((i for i, k in enumerate(keys) if k >> j & 1), key=lambda i: bin(keys[i] & below).count("1"))
        if any(keys[a] & below & ~keys[c] for a, c in zip(serve, serve[1:])):
            return None, False  # future reaches not nested: the greedy would not be exact
        # More replicas than clear all the load level j may serve are useless: it sees no more load.
        waiting = wait[:, serve].sum(axis=1)
        clear = np.ceil(np.maximum(waiting / T[j], (waiting + b[j]) / (T[j] + c[j])) - 1e-9)
        top = np.minimum(hi[j], np.maximum(lo[j], clear))
        counts = lo[j] + np.arange(int(top.max() - lo[j]) + 1 if len(gpus) else 0)
        si, ci = np.nonzero(counts[None, :] <= top[:, None])
        if len(si) > MAX_CANDIDATES:
            return None, False
        x = counts[ci]
        gpus, wait, xs = gpus[si] + x, wait[si].copy(), xs[si].copy()
        xs[:, j] = x
        cap = T[j] * x - np.maximum(b[j] - c[j] * x, 0.0)
        for i in serve:
            used = np.minimum(wait[:, i], cap)
            wait[:, i] -= used
            cap = cap - used
        # (T + c) x - b bounds a level's capacity from above: the lower bound on GPUs stays a lower bound
        ok = gpus + _still_needed(j, keys, wait, reach, demand, T + c, b, lo, usable) <= budget + 1e-9
        gpus, xs, wait = _undominated(gpus[ok], xs[ok], wait[ok])
        if not len(gpus):
            return None, True
    return xs[int(np.argmin(gpus))], False


def _still_needed(j: int, keys: list[int], wait: np.ndarray, reach: dict[int, int], demand: np.ndarray,
                  T: np.ndarray, b: np.ndarray, lo: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Lower bound per state on the GPUs of the levels below j (inf: infeasible).

    For each set U of levels below j that some waiting part is confined to (and all of them), the
    load confined to U needs ceil(need / fastest T in U) replicas in U; for nested U1 c U2 whose
    other levels are no slower than U1's fastest, U1 needs that many and the rest of U2's need goes
    to those other levels at their fastest."""
    below = (1 << j) - 1
    S = len(wait)
    if j == 0:
        return np.where(wait.sum(axis=1) > LOAD_TOL, np.inf, 0.0) if wait.size else np.zeros(S)
    lev = np.arange(j)
    lb = np.full(S, float(lo[:j].sum()))
    sets = []
    for U in sorted({k & below for k in keys} | {below}, key=lambda u: bin(u).count("1")):
        inside = ((U >> lev) & 1).astype(bool)
        need = b[:j][inside].sum() + sum(demand[k] for k in reach if k < j and reach[k] & ~U == 0)
        need = need + sum((wait[:, i] for i, k in enumerate(keys) if (k & below) & ~U == 0), np.zeros(S))
        fast = inside & usable[:j]
        if not fast.any():
            lb = np.where(need > LOAD_TOL, np.inf, lb)
            continue
        sets.append((U, inside, need, T[:j][fast].max()))
    for a, (U1, in1, need1, t1) in enumerate(sets):
        n1 = np.maximum(np.ceil(need1 / t1 - 1e-9), lo[:j][in1].sum())
        lb = np.maximum(lb, n1 + lo[:j][~in1].sum())
        for U2, in2, need2, _ in sets[a + 1:]:
            rest = in2 & ~in1 & usable[:j]
            if U1 & ~U2 or not rest.any() or T[:j][rest].max() < t1:
                continue
            n2 = np.maximum(np.ceil(np.maximum(need2 - n1 * t1, 0.0) / T[:j][rest].max() - 1e-9),
                            lo[:j][in2 & ~in1].sum())
            lb = np.maximum(lb, n1 + n2 + lo[:j][~in2].sum())
    return lb


def _undominated(gpus: np.ndarray, xs: np.ndarray, wait: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop states that another state dominates: no more GPUs and no more waiting load in any part."""
    if not len(gpus):
        return gpus, xs, wait
    live = np.flatnonzero(wait.max(axis=0) > 1e-12) if wait.shape[1] else np.zeros(0, dtype=int)
    q = np.round(wait[:, live], 9)  # ties within 1e-9 req/s count as equal
    if len(live) == 0:
        i = int(np.argmin(gpus))
        keep = np.array([i])
    elif len(live) == 1:
        order = np.lexsort((q[:, 0], gpus))
        qs = q[order, 0]
        keep = order[qs < np.minimum.accumulate(np.concatenate(([np.inf], qs[:-1])))]
    elif len(live) == 2:
        keep = _undominated_2(gpus, q)
    else:
        return gpus, xs, wait  # not needed by the level sets in use (two parts at most); the limit bounds it
    return gpus[keep], xs[keep], wait[keep]


def _undominated_2(gpus: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Indices of the states not dominated in (gpus, q1, q2): by GPU count, against the staircase of all
    states with fewer GPUs, then within the count."""
    order = np.lexsort((q[:, 1], q[:, 0], gpus))
    g, q = gpus[order], q[order]
    keep = []
    st1, st2 = np.empty(0), np.empty(0)  # staircase so far: q1 ascending, q2 strictly descending
    for count in np.unique(g):
        idx = np.flatnonzero(g == count)
        q1, q2 = q[idx, 0], q[idx, 1]
        pos = np.searchsorted(st1, q1, side="right") - 1
        dom = (pos >= 0) & (st2[np.maximum(pos, 0)] <= q2) if len(st1) else np.zeros(len(idx), dtype=bool)
        dom |= q2 >= np.minimum.accumulate(np.concatenate(([np.inf], q2[:-1])))
        idx, q1, q2 = idx[~dom], q1[~dom], q2[~dom]
        keep.append(idx)
        a1, a2 = np.concatenate((st1, q1)), np.concatenate((st2, q2))
        o = np.lexsort((a2, a1))
        a1, a2 = a1[o], a2[o]
        stair = a2 < np.minimum.accumulate(np.concatenate(([np.inf], a2[:-1])))
        st1, st2 = a1[stair], a2[stair]
    return order[np.concatenate(keep)]
