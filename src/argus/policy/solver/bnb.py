"""A small best-first branch and bound over the replica counts, with HiGHS solving every LP.

Why not HiGHS's own MIP solver: on these tiny models (<= 12 integer variables) its fixed costs
(presolve, symmetry detection, cut loops, sub-MIP heuristics) dominate and made p99 solve times
10-100x our targets. Here each node is one warm-started dual simplex re-solve of the same LP with
changed bounds on x. Only the x_j are integer; the rest is continuous, so branching on x is exact.
Pruning is with an absolute tolerance `tol` on the objective: the answer is within `tol` of optimal.
Every LP also yields a linear lower bound on the objective of every allocation (its reduced costs of
x); branch and bound prunes with them, and outer_approximation searches a listed set of allocations
with them alone (small boxes, where that proves the optimum in a few LPs).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import highspy
import numpy as np
from highspy import _core as highs_core

INT_TOL = 1e-6
HEUR_EVERY = 2  # rounding heuristic every other node: half the LPs, the same answers (bench_optimizer)


class LpModel:
    """One HiGHS LP (the relaxation) kept warm across bound changes on its first `n_int` columns."""

    def __init__(self, c: np.ndarray, A: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray,
                 col_lo: np.ndarray, col_hi: np.ndarray, n_int: int):
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(c), A.shape[0]
        lp.col_cost_ = c
        lp.col_lower_ = col_lo
        lp.col_upper_ = np.where(np.isinf(col_hi), inf, col_hi)
        lp.row_lower_ = np.where(np.isinf(row_lo), -inf, row_lo)
        lp.row_upper_ = np.where(np.isinf(row_hi), inf, row_hi)
        cols, rows = np.nonzero(A.T)  # column-major order, as HiGHS's colwise format wants
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum(np.bincount(cols, minlength=len(c))))).astype(np.int32)
        lp.a_matrix_.index_ = rows.astype(np.int32)
        lp.a_matrix_.value_ = A[rows, cols]
        # The raw class: highspy.Highs() prints a banner to stdout, which would corrupt `argus solve` JSON.
        self.h = highs_core._Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("presolve", "off")  # warm starts need the original model; it is tiny anyway
        # One thread: on an LP this small the thread pool's wake-ups cost 3x the simplex itself.
        self.h.setOptionValue("threads", 1)
        self.h.setOptionValue("parallel", "off")
        self.h.passModel(lp)
        self.n_int = n_int
        self.idx = np.arange(n_int, dtype=np.int32)
        self.lo0 = np.array(col_lo[:n_int], dtype=float)
        self.hi0 = np.array(col_hi[:n_int], dtype=float)
        # Results by x bounds: within one solve the same LP recurs (the root, the running allocation, the
        # same rounded allocation from several nodes); 10-13% of LPs on the bench instances.
        self.memo: dict[bytes, tuple[float, np.ndarray] | None] = {}
        # Reduced costs of x at each solved LP: the objective as a function of x is convex, and this is a
        # subgradient, so obj(x') >= obj + slope . (x' - x) for every x' (outer_approximation's cuts).
        self.slopes: dict[bytes, np.ndarray] = {}
        self.runs = 0  # HiGHS runs (for benchmarks)
        self.no_integer_point = False  # the last branch_and_bound proved that no integer point exists

    def solve(self, lo: np.ndarray, hi: np.ndarray) -> tuple[float, np.ndarray] | None:
        """Minimize with x bounds [lo, hi]; (objective, column values) or None when infeasible.

        The column values are shared with the memo: read them, never write them."""
        key = np.asarray(lo, dtype=float).tobytes() + np.asarray(hi, dtype=float).tobytes()
        if key in self.memo:
            return self.memo[key]
        self.runs += 1
        self.h.changeColsBounds(self.n_int, self.idx, lo, hi)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            r = None
        else:
            sol = self.h.getSolution()
            r = self.h.getObjectiveValue(), np.array(sol.col_value)
            self.slopes[key] = np.array(sol.col_dual[:self.n_int])
        self.memo[key] = r
        return r

    def row_duals(self, x: np.ndarray, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  restore: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
        """Row duals (HiGHS's signs: <= 0 on a binding <= row when minimizing) of the LP with x fixed and the
        bounds of `rows` set to [lo, hi]; those rows get `restore` (their bounds in the model) back after.
        None when infeasible. Not memoized: the memo is for the model's own rows."""
        idx = np.asarray(rows, dtype=np.int32)
        self.h.changeRowsBounds(len(idx), idx, np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
        self.h.changeColsBounds(self.n_int, self.idx, x, x)
        self.h.run()
        ok = self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        duals = np.array(self.h.getSolution().row_dual) if ok else None
        self.h.changeRowsBounds(len(idx), idx, np.asarray(restore[0], dtype=float), np.asarray(restore[1], dtype=float))
        return duals

    def slope(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Reduced costs of x at the LP with these x bounds (solved before, feasible)."""
        return self.slopes[np.asarray(lo, dtype=float).tobytes() + np.asarray(hi, dtype=float).tobytes()]


def branch_and_bound(lp: LpModel, tol: float, budget: float, max_nodes: int = 100000,
                     start: np.ndarray | None = None,
                     give_up: int | None = None, evaluate: Callable[[np.ndarray], np.ndarray] | None = None,
                     feasible: Callable[[np.ndarray], np.ndarray] | None = None
                     ) -> tuple[float, np.ndarray, float] | None:
    """Minimize over integer x; (objective, columns, proven lower bound), or None if no integer point found
    (lp.no_integer_point then says whether none exists: the tree was exhausted, not cut short).

    `budget` is the bound of sum(x) <= budget, which the rounding heuristic respects; `start` is an
    integer x to try first (the running allocation), so the answer is never worse than keeping it;
    `give_up`: stop after that many nodes without any integer point (the caller has a fallback);
    `evaluate`: objectives of fixed integer allocations (rows; inf if infeasible) without an LP, as
    LpModel.solve(x, x) gives them. With it, the rounding heuristic also scores every one-replica move
    and addition around the rounded point, and solves an LP (for the columns) only for the best of them,
    and only when it beats the incumbent. Without it, a rounded point whose LP cuts (see _Cuts) show it
    cannot beat the incumbent is not solved; a node whose box the cuts prune is not solved either.
    `feasible`: whether fixed integer allocations (rows) are feasible, without an LP, where their values
    need one (the safe model with prompt classes). With it, the rounding heuristic keeps the rounded point
    and its one-replica moves and additions that are feasible, and solves the LP of the one whose cuts
    bound lowest: a rounded point on a tight capacity is often one replica short, and its LP then is wasted.
    """
    root = lp.solve(lp.lo0, lp.hi0)
    if root is None:
        lp.no_integer_point = True
        return None
    best_obj, best_cols = math.inf, None
    if start is not None and start.sum() <= budget:
        first = lp.solve(start, start)
        if first is not None:
            best_obj, best_cols = first
    nodes = 0
    cuts = _Cuts(root[1][:lp.n_int], lp.slope(lp.lo0, lp.hi0), root[0])
    if best_cols is None:
        # The root's rounding first: one LP, and an incumbent wherever rounding keeps the model feasible (the
        # overload model sheds, so always there); the dive, up to one LP per level, only when it does not.
        first = _rounded(lp, root[1][:lp.n_int], lp.lo0, lp.hi0, budget, cuts, math.inf, evaluate, feasible)
        nodes += 1
        if first is None:
            first = _dive(lp, root, budget)
            nodes += lp.n_int
        if first is not None:
            best_obj, best_cols = first
    counter = 0
    heap: list = [(root[0], counter, lp.lo0, lp.hi0, root)]
    while heap:
        bound, _, lo, hi, sol = heapq.heappop(heap)
        if bound >= best_obj - tol:
            counter += 1
            heapq.heappush(heap, (bound, counter, lo, hi, sol))  # keep it for the proven bound
            break  # best-first: every remaining node is at least as bad
        if sol is None:
            if cuts.over_box(lo, hi) >= best_obj - tol:
                continue  # the cuts of the LPs solved so far prune it without its own LP
            sol = lp.solve(lo, hi)
            nodes += 1
            if sol is not None:
                cuts.add(sol[1][:lp.n_int], lp.slope(lo, hi), sol[0])
            if sol is None or sol[0] >= best_obj - tol:
                continue
        obj, cols = sol
        x = cols[:lp.n_int]
        frac = np.abs(x - np.round(x))
        if frac.max() <= INT_TOL:
            if obj < best_obj:
                best_obj, best_cols = obj, cols
            continue
        if best_cols is None or nodes % HEUR_EVERY == 0:  # rounding heuristic: cheap incumbents prune early
            r = _rounded(lp, x, lo, hi, budget, cuts, best_obj, evaluate, feasible)
            nodes += 1
            if r is not None and r[0] < best_obj:
                best_obj, best_cols = r
        if nodes >= max_nodes or (give_up is not None and best_cols is None and nodes >= give_up):
            counter += 1
            heapq.heappush(heap, (obj, counter, lo, hi, sol))
            break
        j = int(np.argmax(frac))  # most fractional: largest change in the LP bound per branch
        down_hi, up_lo = hi.copy(), lo.copy()
        down_hi[j] = math.floor(x[j])
        up_lo[j] = math.ceil(x[j])
        for clo, chi in ((lo, down_hi), (up_lo, hi)):
            counter += 1
            heapq.heappush(heap, (obj, counter, clo, chi, None))  # parent bound until solved
    if best_cols is None:
        # No integer point: proven when the tree was exhausted (no open node), not when a limit stopped it.
        lp.no_integer_point = not heap
        return None
    open_bound = min((item[0] for item in heap), default=best_obj)
    return best_obj, best_cols, min(open_bound, best_obj)


def _rounded(lp: LpModel, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float, cuts: "_Cuts",
             best_obj: float, evaluate, feasible) -> tuple[float, np.ndarray] | None:
    """The rounding heuristic at a node with LP solution x: an integer point's (objective, columns), or None
    when its LP is infeasible or skipped (it cannot beat best_obj). See branch_and_bound for the three ways
    a rounded point is scored."""
    cand = _round(x, lo, hi, budget)
    if cand is None:
        return None
    if evaluate is not None:
        # Capacity-tight instances: the rounded point often misses by one replica.
        cands = _moves(cand, lp.lo0, lp.hi0, budget)
        values = evaluate(cands)
        i = int(np.argmin(values))
        return lp.solve(cands[i], cands[i]) if values[i] < best_obj else None
    if feasible is not None:
        cands = _moves(cand, lp.lo0, lp.hi0, budget)
        cands = cands[feasible(cands)]
        if not len(cands):
            return None
        low = cuts.at_rows(cands)
        i = int(np.argmin(low))
        cand = cands[i]
        if low[i] >= best_obj:
            return None
    elif cuts.at(cand) >= best_obj:  # it cannot beat the incumbent: no LP
        return None
    r = lp.solve(cand, cand)
    if r is not None:
        cuts.add(cand, lp.slope(cand, cand), r[0])
    return r


class _Cuts:
    """Linear lower bounds on the objective from the LPs solved so far (see LpModel.slopes)."""

    def __init__(self, x: np.ndarray, slope: np.ndarray, obj: float):
        self.slopes = [slope]
        self.offsets = [obj - float(x @ slope)]

    def add(self, x: np.ndarray, slope: np.ndarray, obj: float) -> None:
        """Record the cut of an LP with optimum obj at x."""
        self.slopes.append(slope)
        self.offsets.append(obj - float(x @ slope))

    def at(self, x: np.ndarray) -> float:
        """Lower bound on the objective of allocation x."""
        return float(self.at_rows(x[None, :])[0])

    def at_rows(self, xs: np.ndarray) -> np.ndarray:
        """Lower bound on the objective of each allocation (rows of xs)."""
        return (np.array(self.offsets)[:, None] + np.array(self.slopes) @ xs.T).max(axis=0)

    def over_box(self, lo: np.ndarray, hi: np.ndarray) -> float:
        """Lower bound on the objective of every allocation in [lo, hi] (each cut at its box minimum)."""
        s = np.array(self.slopes)
        return float((np.array(self.offsets) + np.minimum(s * lo, s * hi).sum(axis=1)).max())


def outer_approximation(lp: LpModel, xs: np.ndarray, tol: float, max_lps: int, budget: float,
                        start: np.ndarray | None = None, floor: np.ndarray | None = None
                        ) -> tuple[float, np.ndarray, float] | None:
    """Minimize over the listed integer allocations `xs` (rows: every one in the box within `budget`);
    same answer contract as branch_and_bound.

    Every LP solved gives a linear lower bound on the objective of every allocation (LpModel.slopes);
    the allocation with the lowest bound is solved next, until no bound is below the incumbent minus
    `tol`. With one cut per LP and the integrality seen by the listing, this proves the optimum in a
    handful of LPs where branch and bound, bounded by fractional replicas, needs dozens. `floor`: valid lower
    bounds on the listed allocations' objectives known without an LP (milp.Formulation.capacity_bound).
    """
    root = lp.solve(lp.lo0, lp.hi0)
    if root is None:
        lp.no_integer_point = True
        return None
    lower = root[0] + (xs - root[1][:lp.n_int]) @ lp.slope(lp.lo0, lp.hi0)
    if floor is not None:
        lower = np.maximum(lower, floor)
    unsolved = np.ones(len(xs), dtype=bool)
    best_obj, best_cols = math.inf, None
    # The root's rounding first (then `start`, if given): a near-optimal incumbent from the outset prunes most
    # of the listing, where the lowest bound of the root's cut alone is often an allocation far from it.
    rounded = _round(root[1][:lp.n_int], lp.lo0, lp.hi0, budget)
    tries = [x for x in (rounded, start) if x is not None]
    for _ in range(max_lps):
        if tries:
            x = tries.pop()
            other = np.any(xs != x, axis=1)
            if x is rounded and other.all():
                continue  # not listed: the listing was filtered (the safe model keeps only safe allocations)
            unsolved &= other
        else:
            i = int(np.argmin(np.where(unsolved, lower, math.inf)))
            if not unsolved[i] or lower[i] >= best_obj - tol:
                break
            x = xs[i]
            unsolved[i] = False
        r = lp.solve(x, x)
        if r is None:
            continue
        if r[0] < best_obj:
            best_obj, best_cols = r
        lower = np.maximum(lower, r[0] + (xs - x) @ lp.slope(x, x))
    open_bound = float(np.where(unsolved, lower, math.inf).min(initial=math.inf))
    if best_cols is None:
        lp.no_integer_point = not unsolved.any()
        return None
    return best_obj, best_cols, min(open_bound, best_obj)


def _dive(lp: LpModel, root: tuple[float, np.ndarray], budget: float) -> tuple[float, np.ndarray] | None:
    """Find a first integer point: fix the most fractional x up (more capacity) and re-solve, repeatedly.

    Rounding down can leave a model without shedding infeasible; rounding up while the budget allows
    keeps every level's capacity, which is what feasibility needs.
    """
    lo, hi = lp.lo0.copy(), lp.hi0.copy()
    obj, cols = root
    for _ in range(lp.n_int):
        x = cols[:lp.n_int]
        frac = x - np.floor(x + INT_TOL)
        if frac.max() <= INT_TOL:
            return obj, cols
        j = int(np.argmax(frac))
        lo[j] = math.ceil(x[j] - INT_TOL)
        if lo.sum() > budget:
            return None
        r = lp.solve(lo, hi)
        if r is None:
            return None
        obj, cols = r
    x = cols[:lp.n_int]
    return (obj, cols) if np.abs(x - np.round(x)).max() <= INT_TOL else None


def _moves(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float) -> np.ndarray:
    """x, x with one replica moved from one level to another, and x with one replica added (within bounds)."""
    n = len(x)
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    moved = np.repeat(x[None, :], len(src), axis=0)
    moved[np.arange(len(src)), src] -= 1
    moved[np.arange(len(src)), dst] += 1
    added = x[None, :] + np.eye(n) if x.sum() + 1 <= budget else np.empty((0, n))
    out = np.vstack([x[None, :], moved, added])
    return out[((out >= lo) & (out <= hi)).all(axis=1)]


def _round(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float) -> np.ndarray | None:
    """Round down, then hand the spare budget out by largest fractional part (within node bounds)."""
    r = np.clip(np.floor(x + INT_TOL), lo, hi)
    spare = int(round(budget - r.sum()))
    if spare < 0:
        return None
    for j in np.argsort(-(x - np.floor(x + INT_TOL)), kind="stable"):
        if spare == 0:
            break
        if r[j] + 1 <= hi[j] and x[j] - r[j] > INT_TOL:
            r[j] += 1
            spare -= 1
    return r
