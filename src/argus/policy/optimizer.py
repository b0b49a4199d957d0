"""solve(snapshot) -> Decision: the allocation MILP plus hysteresis, reported in words.

A purely computational function: no I/O, no clock (the snapshot carries `now`), no state kept
between calls (the previous allocation and its time come in with the snapshot).
"""

from __future__ import annotations

import numpy as np

from argus.levels import FULL, parse_level
from argus.policy.solver import milp
from argus.policy.decision import Decision
from argus.policy.redirection import matrix
from argus.policy.snapshot import Snapshot

EPS = 1e-9


def solve(s: Snapshot) -> Decision:
    """Best allocation and redirection for the snapshot, keeping the current one unless a change pays."""
    start = np.array([s.current.get(k, 0) for k in s.levels], dtype=float) if s.current else None
    # The safe model first: most snapshots are not overloaded, and when even its LP relaxation is
    # infeasible this costs one LP. If its short search finds no safe allocation, the covering search
    # (policy.solver.cover) finds one to restart it from or proves that none exists. Failing that, the overload
    # model (always feasible, its prices steer to the least shedding and degrading) searches; a safe answer
    # from it, or one a single replica move repairs, is polished by the safe model again. Overload is
    # declared only when all of that finds no safe allocation. A running allocation that no change
    # could beat by the hysteresis threshold is kept after two LPs (_steady); an answer whose search
    # stopped at its node limit is settled to within that threshold (_settle), so it does not flap.
    f = milp.build(s, overload=False)
    steady = _steady(s, f)
    if steady is not None:
        return steady
    best = milp.run(f, start=start, give_up=milp.GIVE_UP)
    if best is None:
        # Certain: no safe allocation exists, because not even fractional replicas serve it all safely or
        # because the safe search exhausted its tree (the box on x loses no safe allocation: see milp.build).
        certain = milp.run(f, relax=True) is None or f.lp().no_integer_point
        if not certain:
            # Fractional replicas would do: the covering search (argus.policy.solver.cover) finds an allocation
            # that serves everything safely, to start the safe search from, or proves that none exists.
            cover = milp.safe_allocation(f)
            certain = cover.proven
            if cover.x is not None:
                best = milp.run(f, start=cover.x)
    if best is None:
        fo = milp.build(s, overload=True, certain=certain)
        over = milp.run(fo, start=start)
        assert over is not None  # feasible by construction: shedding absorbs everything
        # A repair cannot help when even fractional replicas cannot serve everything safely.
        seed = over if not _overloaded(fo, over) else (None if certain else milp.repair(f, fo, over))
        if seed is not None:
            best = milp.run(f, start=seed.x)
        if best is None:
            f, best = fo, over
    best = _settle(s, f, best)
    kept_note = None
    if f.current.sum() > 0 and not np.array_equal(best.x, f.current):
        fc = f
        cur = milp.run(f, fixed_x=f.current)
        if cur is None and not f.overload:
            # The running allocation cannot serve the load safely: compare in the overload model, where a
            # safe plan has the same value, so a gain within the hysteresis threshold is not a reason
            # to move (the kept decision says overload).
            fc = milp.build(s, overload=True)
            cur = milp.run(fc, fixed_x=f.current)
        if cur is not None:
            keep, kept_note = _keep_current(s, fc, best, cur)
            if keep:
                return _decision(s, fc, cur, cur.x, kept_note)
    return _decision(s, f, best, _with_spare(s, f, best.x), kept_note)


def evaluate(s: Snapshot, replicas: dict[str, int], note: str) -> Decision | None:
    """The decision that keeps `replicas` (the allocation in force) with its best routing, valued as `solve`
    values a kept allocation: in the safe model, or the overload model when it cannot serve the load safely.
    `note` leads its reason. None when the allocation is not one the optimizer may run (over the budget, below
    the full-quality minimum, or on a level too slow for the SLO)."""
    x = np.array([replicas.get(k, 0) for k in s.levels], dtype=float)
    f = milp.build(s, overload=False)
    sol = milp.run(f, fixed_x=x)
    if sol is None:
        f = milp.build(s, overload=True)
        sol = milp.run(f, fixed_x=x)
    return None if sol is None else _decision(s, f, sol, x, note)


def _steady(s: Snapshot, f: milp.Formulation) -> Decision | None:
    """Keep a running allocation when no allocation, even with fractional replicas, would gain more than
    the hysteresis threshold over it: exact, and two or three LPs instead of a search. One that serves the
    load safely is compared in the safe model; one that cannot (a kept overload plan), in the overload model.
    """
    if f.current.sum() == 0:
        return None
    cur = milp.run(f, fixed_x=f.current)
    if cur is None:
        # It cannot serve the load safely: solve() would compare it in the overload model, where a safe
        # plan has the same value (see there), so the same test in that model is just as exact.
        f = milp.build(s, overload=True)
        cur = milp.run(f, fixed_x=f.current)
        if cur is None:
            return None
    bound = milp.run(f, relax=True)
    threshold = max(s.hysteresis.min_gain * max(_served_quality(f, cur), 1.0), f.tolerance)
    if bound is None or bound.objective - cur.objective > threshold:
        return None
    note = (f"hysteresis: kept current allocation; no change can gain more than "
            f"{bound.objective - cur.objective:.3g} (<= {s.hysteresis.min_gain:.0%} of served quality)")
    return _decision(s, f, cur, cur.x, note)


def _settle(s: Snapshot, f: milp.Formulation, best: milp.Solution) -> milp.Solution:
    """Close the proven gap to within the hysteresis threshold when the node limit left it wider.

    No flapping: next period the running allocation R (this answer plus spare GPUs) is worth
    V(R) >= V(best) (more capacity, no switching cost), and no allocation is worth more than the
    bound, so the warm search gains at most the gap. Its threshold is max(min_gain x served quality
    of R, tolerance), and served quality >= V(R) >= best.objective (penalties are >= 0), tolerance >=
    the safe model's; so a gap within `target` below is always kept. Only node-limited searches get
    here, and the looser tolerance keeps the extra search short.
    """
    safe_tol = milp.REL_TOL * (100.0 * f.planned + 1.0)  # the smallest tolerance of the models
    target = max(s.hysteresis.min_gain * max(best.objective, 1.0), safe_tol)
    if best.bound - best.objective <= target:
        return best
    more = milp.run(f, start=best.x, tol=target, max_nodes=milp.MAX_NODES_SETTLE)
    return more if more is not None and more.objective >= best.objective else best


def _served_quality(f: milp.Formulation, sol: milp.Solution) -> float:
    """Served requests/s x their expected quality (%), times the quality weight: the objective's scale."""
    return float((sol.flows * f.row_quality).sum()) * f.weight


def lp_bound(s: Snapshot, overload: bool) -> float | None:
    """Objective of the model's LP relaxation (fractional replicas): an upper bound; None if infeasible."""
    sol = milp.run(milp.build(s, overload=overload), relax=True)
    return None if sol is None else sol.objective


def _with_spare(s: Snapshot, f: milp.Formulation, x: np.ndarray) -> np.ndarray:
    """Give GPUs no load needs back to levels that had them (no churn), the rest to full quality."""
    x = x.copy()
    spare = s.gpus - int(x.sum())
    for j in range(f.n):
        add = int(min(spare, max(f.current[j] - x[j], 0))) if f.usable[j] else 0
        x[j] += add
        spare -= add
    usable = np.flatnonzero(f.usable)
    if spare > 0 and usable.size:
        x[usable[0]] += spare  # the safest level that meets the SLO (cache-k0 unless it is too slow)
    return x


def _overloaded(f: milp.Formulation, sol: milp.Solution) -> bool:
    return _degraded(f, sol) > 1e-6 or _short(sol)


def _short(sol: milp.Solution) -> bool:
    """Planned load shed or a queue that cannot drain within the SLO (degrading alone is not short)."""
    return bool(sol.shed.sum() > 1e-6 or sol.backlog_excess.sum() > 1e-6)


def _degraded(f: milp.Formulation, sol: milp.Solution) -> float:
    return float(sol.flows[f.pair_row[~f.pair_safe], f.pair_level[~f.pair_safe]].sum())


def _keep_current(s: Snapshot, f: milp.Formulation, best: milp.Solution,
                  cur: milp.Solution) -> tuple[bool, str]:
    """Hysteresis: keep a working allocation within its dwell time or when a change gains too little."""
    served_q = _served_quality(f, cur)
    gain = best.objective - cur.objective
    # A gain within the search tolerance is noise, not a reason to reload replicas.
    threshold = max(s.hysteresis.min_gain * max(served_q, 1.0), f.tolerance)
    if gain <= threshold:
        return True, (f"hysteresis: kept current allocation; a change would gain {gain:.3g} "
                      f"(<= {s.hysteresis.min_gain:.0%} of served quality, after switching cost)")
    dwell = s.now - s.last_change if s.last_change is not None else None
    # Within the dwell time only an allocation that falls short (sheds planned load or cannot drain its
    # queue within the SLO) is replaced, by a better one (checked above). One that serves everything,
    # some of it below its prompts' floor, is kept: more quality can wait the dwell, and giving capacity
    # back the moment the queue it was built for has drained is what makes a loop flap.
    if dwell is not None and dwell < s.hysteresis.min_dwell_s and not _short(cur):
        return True, (f"hysteresis: kept current allocation; changed {dwell:.0f} s ago "
                      f"< dwell {s.hysteresis.min_dwell_s:.0f} s and it still serves the load")
    return False, f"changed allocation: gain {gain:.3g} over keeping the current one, after switching cost"


def _decision(s: Snapshot, f: milp.Formulation, sol: milp.Solution, replicas: np.ndarray,
              kept_note: str | None) -> Decision:
    names = s.levels
    prof = s.profiles
    x = [int(v) for v in replicas]
    served = sol.flows.sum(axis=0)
    throughput = float(served.sum())
    quality = float((sol.flows * f.row_quality).sum() / throughput) if throughput > EPS else None
    flows = _by_level(f, sol.flows)
    T = np.array([p.peak_throughput for p in prof])
    latency: dict[str, float | None] = {}
    q = [s.queues.get(k, 0.0) for k in names]
    for j, name in enumerate(names):
        cap = x[j] * T[j]
        if x[j] == 0:
            latency[name] = None
        elif q[j] <= 0:
            latency[name] = prof[j].service_time if served[j] <= cap * (1 + 1e-9) else None
        elif cap - served[j] > EPS:
            # Little's law: the backlog drains at the spare capacity; its last request waits this long.
            latency[name] = prof[j].service_time + q[j] / (cap - served[j])
        else:
            latency[name] = None
    degraded = _degraded(f, sol)
    shed = float(sol.shed.sum())
    excess = float(sol.backlog_excess.sum())
    overload = _overloaded(f, sol)
    notes = _reason(s, f, sol, flows, x, throughput, quality, degraded, shed, excess)
    cap = np.array([x[j] * T[j] if f.usable[j] else 0.0 for j in range(len(names))])
    if kept_note:
        notes.insert(0, kept_note)
    return Decision(
        replicas={n: x[j] for j, n in enumerate(names)},
        redirection=matrix(names, x, flows.tolist(), shed=_unplanned(s, f, sol).tolist(),
                           capacity=cap.tolist(), degraded_ok=overload),
        throughput=throughput, quality=quality, latency=latency, overload=overload,
        shed_rate=shed if shed > 1e-6 else 0.0, degraded_rate=degraded if degraded > 1e-6 else 0.0,
        backlog_excess=excess if excess > 1e-6 else 0.0, planned=f.planned,
        served_by_level={n: float(served[j]) for j, n in enumerate(names)}, objective=sol.objective,
        gap=max(sol.bound - sol.objective, 0.0), tolerance=f.tolerance,
        changed=not bool(np.array_equal(np.array(x, dtype=float), f.current)), reason="; ".join(notes), notes=notes,
        prices=_prices(f, replicas), shares=_shares(names, np.array(x, dtype=float) * f.throughput * f.usable),
        degrade_price=f.degrade_cost / f.weight)


def _by_level(f: milp.Formulation, rows: np.ndarray) -> np.ndarray:
    """Flows (or shed) of demand rows summed by the rows' optimal levels (the redirection matrix's rows)."""
    out = np.zeros((f.n,) + rows.shape[1:])
    np.add.at(out, f.row_level, rows)
    return out


def _prices(f: milp.Formulation, replicas: np.ndarray) -> dict[str, float]:
    """What one more request/s at each level is worth to the plan, in quality points: the capacity duals of
    the plan's LP at the decided replicas with the demand rows scaled down to what that capacity can take,
    so that nothing is shed. (At the planned demand, under overload, the duals are set by whichever row the
    plan sheds, at P_SHED: they say nothing about who should have the scarce levels.) The router sends each
    prompt to the allowed level with the highest predicted quality minus price (argus.policy.assign.place):
    at these prices every row the assignment splits is indifferent between the levels it uses, so prompts
    sort themselves by their own predictions. Empty when that LP is infeasible."""
    x = np.asarray(replicas, dtype=float)
    cap = np.maximum(f.net_capacity(x), 0.0)
    rows = np.arange(1, 1 + len(f.sources))
    if not len(rows):
        return {}
    D = f.demand_by_level[f.sources]
    scale = min(1.0, float(cap.sum()) / max(float(D.sum()), 1e-12)) * (1 - 1e-9)
    duals = f.lp().row_duals(x, rows, D * scale, D * scale, (f.lb[rows], f.ub[rows]))
    if duals is None:
        return {}
    cap_row = 1 + len(f.sources)
    names = f.level_names
    return {names[j]: round(max(-float(duals[cap_row + j]), 0.0) / f.weight, 4) for j in range(f.n)}


def _shares(names: list[str], capacity: np.ndarray) -> dict[str, float]:
    """Each level's share of the allocation's capacity: the router's per-level ceiling on arrivals. They sum
    to 1, so they scale with whatever arrives. Ceilings of capacity over the planned demand (summing above 1
    with room to spare) bought 0.1-0.4 points at the paper setup's plateau, but in a burst the plan lags the
    arrivals and the slow levels overfilled: the in-place burst sweep's violations rose from 990 to 1,353
    per burst minute (Proteus-like 1,342), 30 s bursts at 2x from 44 to 140.

    Gross capacity, not net of backlog drain: in a burst every level's queue may need all its capacity to
    drain, which left no share anywhere, and the router then sent every prompt to its favourite level (the
    slowest, full quality): on Azure arrivals Argus had 3.5x Proteus-like's violations at cache-k0."""
    cap = np.maximum(capacity, 0.0)
    total = float(cap.sum())
    return {n: round(float(c) / total, 6) for n, c in zip(names, cap) if c > 0} if total > 0 else {}


def _unplanned(s: Snapshot, f: milp.Formulation, sol: milp.Solution) -> np.ndarray:
    """Load per optimal level that arrives but the plan does not serve: planned shedding plus demand
    beyond the throughput target (the router routes it all, so the matrix must place it)."""
    beyond = max(s.demand - f.planned, 0.0)
    h = s.level_shares()
    return _by_level(f, sol.shed) + np.array([beyond * h.get(k, 0.0) for k in s.levels])


def _reason(s: Snapshot, f: milp.Formulation, sol: milp.Solution, flows: np.ndarray, x: list[int], throughput: float,
            quality: float | None, degraded: float, shed: float, excess: float) -> list[str]:
    """Say which bound is active and what was traded, in order of importance."""
    names = s.levels
    notes = []
    if s.demand > s.throughput_target:
        notes.append(f"demand {s.demand:.3g} req/s exceeds the target; planning for the target "
                     f"{s.throughput_target:.3g} req/s")
    if shed > 1e-6 or degraded > 1e-6 or excess > 1e-6:
        parts = []
        if degraded > 1e-6:
            parts.append(f"{degraded:.3g} req/s served below their prompts' quality floor")
        if shed > 1e-6:
            parts.append(f"{shed:.3g} req/s must be shed or queued")
        if excess > 1e-6:
            parts.append(f"{excess:.3g} req/s of queued backlog cannot drain within the {s.latency_slo:g} s SLO")
        notes.append("OVERLOAD: even the most approximate allowed mix cannot serve the planned "
                     f"{f.planned:.3g} req/s: " + ", ".join(parts))
    used = sum(x)
    needed = int(sol.x.sum())
    cap_all = sum(x[j] * s.profiles[j].peak_throughput for j in range(len(x)))
    if needed >= s.gpus and throughput > 0 and quality is not None and quality < 100 - 1e-6:
        notes.append(f"GPU budget binds ({needed}/{s.gpus} GPUs): load moved to approximate levels to fit")
    elif throughput > 0 and quality is not None and quality < 100 - 1e-6:
        notes.append(f"approximate levels used without a binding budget ({needed}/{s.gpus} GPUs): "
                     "the latency SLO, queues or switching cost keep load off safer levels")
    elif throughput > 0 and quality is not None and quality >= 100 - 1e-6:
        notes.append(f"all {throughput:.3g} req/s served at full quality ({used}/{s.gpus} GPUs, "
                     f"capacity {cap_all:.3g} req/s)")
    elif throughput <= EPS:
        notes.append(f"no demand; keeping {used}/{s.gpus} GPUs (at least {s.min_full_quality} at full quality)")
    if used > needed:
        notes.append(f"{used - needed} GPUs beyond the load's needs kept as headroom")
    if sol.bound - sol.objective > f.tolerance:
        notes.append(f"search stopped at its node limit; objective within {sol.bound - sol.objective:.3g} "
                     "of the proven bound")
    reserved = np.maximum(f.backlog_rate - f.credit * np.asarray(x, dtype=float), 0.0)
    if reserved.sum() > 1e-9:
        notes.append("latency: capacity reserved to drain queues beyond what is in service within the SLO "
                     "(Little's law): " + ", ".join(f"{names[j]} {reserved[j]:.3g} req/s"
                                                     for j in range(len(names)) if reserved[j] > 1e-9))
    if throughput > EPS:
        own = float(np.trace(flows))
        fam = {"cache": 0.0, "steps": 0.0, "model": 0.0}
        for j, n in enumerate(names):
            lv = parse_level(n, 1000)
            fam[lv.family] += float(flows[:, j].sum())
        full = float(flows[:, names.index(FULL)].sum())
        notes.append(f"{own / throughput:.0%} of load at its optimal level, "
                     f"{(throughput - own - degraded) / throughput:.0%} at a safer one")
        notes.append(f"strategy: full quality {full / throughput:.0%}, approximate caching "
                     f"{(fam['cache'] - full) / throughput:.0%}, step reduction {fam['steps'] / throughput:.0%}"
                     + (f", lighter model {fam['model'] / throughput:.0%}" if fam["model"] > 0 else ""))
        notes.append(f"average relative quality {quality:.2f}% (prompt floor {s.quality_floor:g}%)")
    return notes
