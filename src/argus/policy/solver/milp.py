"""The allocation MILP: build it from a snapshot, solve it by branch and bound with HiGHS LPs.

Variables: integer replicas x_j; added replicas u_j >= x_j - current_j (switching cost); load
y_kj >= 0 whose optimal level is k served at level j; sigma in [0, 1] (the fraction of planned demand not
served, alike from every row), v_j (queue backlog that cannot drain within the latency SLO) and w_j (queued
requests in service). Maximize
    sum_kj y_kj V_kj - P_shed sigma sum_k D_k - sum_j P_shed v_j - sum_j c_j u_j
subject to  sum x <= GPUs;  sum_j y_kj + sigma D_k = D_k;  x_0 >= min full-quality replicas;
            sum_k y_kj + (q_j - w_j) / (SLO - s_j) - v_j <= T_j x_j    (Little's law: capacity covers
            the arrivals and drains the observed queue q_j within the latency slack, so waiting <= SLO;
            written with b_j = q_j / slack_j and the rate variables v_j, w_j in requests/s);
            w_j <= B_j x_j / slack_j and v_j + w_j <= b_j: of the requests in flight at level j, up to a
            batch B_j per replica are in service and finish within the SLO whatever the plan adds (B_j:
            the largest profiled batch that completes within the slack); only the rest is backlog that
            needs spare capacity. The credit is bounded by the decided x_j, not by the replicas running
            now, so the plan does not depend on where it starts.
V_kj = Q_j when j is at least as safe as k. Two models share this layout:
  - safe: only safe pairs, no shedding, no backlog excess; feasible iff no overload is needed;
  - overload: degraded pairs too, valued Q_j - P_DEGRADE, and shedding, the same fraction sigma of every
    row (the data plane drops late requests whatever their prompt); always feasible.
solve() searches the overload model, then the safe one (polishing a safe answer, or double-checking
that none exists), so overload is declared only when no safe allocation is found.
The search is exact up to its tolerance (REL_TOL of the model's value scale) unless its node limit
binds; then the decision carries the proven gap. Small instances are exact (tests/policy). A box on x
with few enough allocations is not branched on: every allocation is listed, and the safe model without
classes scores them all combinatorially (argus.policy.solver.fixed, up to LIST_LIMIT), the overload model
and the models with classes bound them by outer approximation (bnb, up to BOUNDED_LIST_LIMIT).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from argus.policy.solver import allocations, cover
from argus.policy.solver.bnb import LpModel, branch_and_bound, outer_approximation
from argus.policy.solver.fixed import SafeEvaluator, net_capacity
from argus.levels import FULL, parse_level
from argus.policy.redirection import NEVER, relation_table
from argus.policy.snapshot import Snapshot

P_DEGRADE = 50.0  # value lost per request/s served below its prompt's floor (overload model only)
P_SHED = 1000.0  # value lost per request/s shed, beyond its quality: serving comes first
REL_TOL = 1e-3  # optimality tolerance, relative to serving all planned load at 100% quality
MAX_NODES = 48  # branch-and-bound nodes per solve; the decision reports the gap if this binds
GIVE_UP = 16  # safe search: nodes without any integer point before the covering search (policy.solver.cover) takes over
MAX_NODES_OVERLOAD = 64  # the overload model's bound is weaker (shedding is priced high): search longer
MAX_NODES_SETTLE = 4000  # safety cap of the search that closes the gap to the hysteresis threshold
LIST_LIMIT = 5000  # allocations in the box up to which every one is scored combinatorially (safe, no classes)
# ... or bounded by LP cuts (outer approximation: the overload model, or classes): its numpy work grows with
# the listing, the LPs it saves more (8 GPUs x 9 levels, the paper setup's snapshots: p99 41 -> 19 LPs)
BOUNDED_LIST_LIMIT = 30000
LISTED_TOL = 0.1  # outer approximation's tolerance, as a fraction of the model's (see run)


def degrade_cost(overload: bool, classed: bool) -> float:
    """What the objective charges per request/s served below its prompt's floor: P_DEGRADE in the overload
    model without classes (with classes a degraded request costs what its class loses there; the safe
    model serves no one below the floor)."""
    return P_DEGRADE if overload and not classed else 0.0


@dataclass(frozen=True)
class Formulation:
    """The MILP in matrix form plus the index maps needed to read a solution back."""

    n: int
    overload: bool  # which of the two models (see module docstring)
    certain: bool  # overload model built once the safe model is proven infeasible (LP relaxation or full search)
    pair_row: np.ndarray  # per y variable: its demand row k, its level j, and whether j is safe for k
    pair_level: np.ndarray
    pair_safe: np.ndarray
    sources: list[int]  # k with D_k > 0, one demand row each (shed alike by one fraction)
    c: np.ndarray  # objective to MINIMIZE (negated maximization)
    A: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    bounds_lo: np.ndarray
    bounds_hi: np.ndarray
    gpus: int
    planned: float  # requests/s the plan must serve: min(demand, target)
    demand_by_level: np.ndarray  # D_r per demand row (optimal level k, or prompt class c when the snapshot has classes)
    backlog_rate: np.ndarray  # q_j / (SLO - s_j), requests/s
    usable: np.ndarray  # bool: service time below the SLO
    current: np.ndarray
    switch_cost: np.ndarray  # c_j per added replica (0 on cold start)
    throughput: np.ndarray  # T_j, requests/s per replica
    credit: np.ndarray = None  # B_j / (SLO - s_j) where level j has a queue (else 0): backlog rate one replica's in-service batch takes off it
    row_level: np.ndarray = None  # optimal level of each demand row (identity without classes)
    row_quality: np.ndarray = None  # expected quality (%) of each demand row at each level (rows x levels)
    classed: bool = False  # demand rows are the snapshot's prompt classes
    weight: float = 1.0  # the snapshot's quality_weight
    level_names: tuple = ()
    # One warm HiGHS model per formulation, shared by every search, relaxation and fixed-x evaluation.
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def pairs(self) -> list[tuple[int, int, bool]]:
        """(k, j, safe) per y variable."""
        if "pairs" not in self.cache:
            self.cache["pairs"] = list(zip(self.pair_row.tolist(), self.pair_level.tolist(), self.pair_safe.tolist()))
        return self.cache["pairs"]

    def lp(self) -> LpModel:
        """The formulation's HiGHS model (built on first use; x bounds are set per solve)."""
        if "lp" not in self.cache:
            self.cache["lp"] = LpModel(self.c, self.A, self.lb, self.ub, self.bounds_lo, self.bounds_hi, self.n)
        return self.cache["lp"]

    def evaluator(self) -> SafeEvaluator:
        """Combinatorial evaluation of fixed allocations in the safe model (see argus.policy.solver.fixed)."""
        if "eval" not in self.cache:
            q = np.zeros(self.n)
            for i, (k, j, safe) in enumerate(self.pairs):
                if safe:
                    q[j] = -self.c[self.off_y + i]
            # With classes a level's value depends on the class it serves: feasibility stays combinatorial,
            # the value of a feasible allocation is its transportation LP (exact, as HiGHS computes it).
            exact = self._lp_value if self.classed else None
            self.cache["eval"] = SafeEvaluator(self.n, self.sources, self.pairs, self.demand_by_level,
                                               self.throughput, self.backlog_rate, q, self.switch_cost,
                                               self.current, exact=exact, credit=self.credit)
        return self.cache["eval"]

    def _lp_value(self, x: np.ndarray) -> float:
        r = self.lp().solve(x, x)
        return -np.inf if r is None else -r[0]

    @property
    def beyond_capacity(self) -> bool:
        """Whether not even fractional replicas can serve the planned demand safely, shown without an LP: in
        the safe model a level's load is at most T_j x_j (its backlog only adds), so every demand row needs at
        least D_r / T_j GPUs at the fastest level open to it, and a row with no open level cannot be served.
        A sufficient test of the LP relaxation's infeasibility (most overloaded snapshots), not a necessary one."""
        if "beyond" not in self.cache:
            fastest = np.zeros(len(self.demand_by_level))
            np.maximum.at(fastest, self.pair_row, self.throughput[self.pair_level])
            D = self.demand_by_level[self.sources]
            T = fastest[self.sources]
            self.cache["beyond"] = not self.overload and bool(
                np.any(T <= 0) or (D / np.where(T > 0, T, 1.0)).sum() > self.gpus * (1 + 1e-9))
        return self.cache["beyond"]

    def listing(self) -> np.ndarray | None:
        """Every allocation in the search box within the budget, if there are at most LIST_LIMIT
        (BOUNDED_LIST_LIMIT where LPs bound them)."""
        if "listing" not in self.cache:
            lo, hi = self.bounds_lo[:self.n], self.bounds_hi[:self.n]
            limit = LIST_LIMIT if not (self.overload or self.classed) else BOUNDED_LIST_LIMIT
            few = not self.cache.get("no_listing") and allocations.count(lo, hi, self.gpus) <= limit
            self.cache["listing"] = allocations.listing(lo, hi, self.gpus) if few else None
        return self.cache["listing"]

    def capacity_bound(self, xs: np.ndarray) -> np.ndarray:
        """A lower bound on the minimized objective of each allocation (rows of xs), without an LP.

        Level j serves at most its gross capacity T_j x_j (the capacity row with v_j + w_j <= b_j), each
        request/s there is worth at most the best value of any row it may take, and the rows share the
        planned demand: so the served load is at most min(sum of capacities, demand), worth at most the
        capacity filled best value first; what is not served is shed. A queue more than a level's
        capacity and in-service credit can hold is backlog excess whatever the plan, and added replicas
        cost their switch. Every term relaxes the model, so the bound is valid; it is tight on the
        allocations with too little capacity, which the LP cuts alone bound no better than the root."""
        unit = np.full(self.n, -np.inf)
        np.maximum.at(unit, self.pair_level, -self.c[self.off_y:self.off_y + len(self.pair_row)])
        open_ = np.isfinite(unit)
        order = np.argsort(-np.where(open_, unit, -np.inf), kind="stable")
        total = float(self.demand_by_level[self.sources].sum()) if self.sources else 0.0
        cap = (xs * (self.throughput * open_))[:, order]
        filled = np.minimum(np.cumsum(cap, axis=1), total)
        served = np.diff(filled, axis=1, prepend=0.0)
        value = served @ np.where(open_, unit, 0.0)[order]
        shed = (total - filled[:, -1]) * (self.c[self.off_shed] / max(total, 1e-12))
        bound = shed - value
        if self.backlog_rate.any():
            held = (self.throughput + self.credit) * xs
            bound += np.maximum(self.backlog_rate - held, 0.0) @ self.c[self.off_v:self.off_w]
        if self.switch_cost.any():
            bound += np.maximum(xs - self.current, 0.0) @ self.switch_cost
        return bound

    def with_listing_off(self) -> "Formulation":
        """The same model, searched by branch and bound only."""
        return replace(self, cache={"no_listing": True})

    @property
    def off_y(self) -> int:
        return 2 * self.n

    @property
    def off_shed(self) -> int:
        return 2 * self.n + len(self.pair_row)

    @property
    def off_v(self) -> int:
        return self.off_shed + 1  # one shed fraction (see build)

    @property
    def off_w(self) -> int:
        return self.off_v + self.n

    def net_capacity(self, x: np.ndarray) -> np.ndarray:
        """Capacity left for arrivals at replicas x, per level (argus.policy.solver.fixed.net_capacity)."""
        return net_capacity(x, self.throughput, self.backlog_rate, self.credit) * self.usable

    @property
    def degrade_cost(self) -> float:
        """What the objective charges per request/s served below its prompt's floor (`degrade_cost`)."""
        return degrade_cost(self.overload, self.classed)

    @property
    def tolerance(self) -> float:
        """Absolute objective tolerance of the search: REL_TOL of the model's value scale.

        Quality (100 per request/s) for the safe model, plus the degrading price for the overload model;
        plus a quarter of the shedding price when overload is certain (proven: no safe allocation exists,
        even with fractional replicas or after a complete search): the search then stops sooner, once
        shedding is nearly settled."""
        scale = 100.0 * self.weight + self.degrade_cost + (P_SHED / 4 if self.certain else 0.0)
        return REL_TOL * (scale * self.planned + 1.0)


@dataclass(frozen=True)
class Solution:
    """Raw values of one solve."""

    objective: float  # maximization objective (see module docstring)
    bound: float  # proven upper bound on the objective (== objective when solved to tolerance)
    x: np.ndarray  # replicas (integers unless relaxed)
    flows: np.ndarray  # rows x n: y[r, j], r a demand row (optimal level, or prompt class)
    shed: np.ndarray  # per demand row
    backlog_excess: np.ndarray  # per level j


def build(s: Snapshot, overload: bool, certain: bool = False) -> Formulation:
    """Assemble the safe or the overload model for a snapshot (pure, O(levels^2)); see Formulation.certain."""
    names = s.levels
    n = len(names)
    prof = s.profiles
    T = np.array([p.peak_throughput for p in prof])
    Q = np.array([p.quality for p in prof])
    slack = s.latency_slo - np.array([p.service_time for p in prof])
    usable = slack > 0
    planned = min(s.demand, s.throughput_target)
    w = float(s.quality_weight)
    rows = _rows(s, Q)
    row_level, V, allowed, D = rows[0], rows[1], rows[2], planned * rows[3]
    x0 = np.array([s.current.get(k, 0) for k in names], dtype=float)
    q = np.array([s.queues.get(k, 0.0) for k in names])
    backlog = np.where(usable, q / np.where(usable, slack, 1.0), 0.0)
    # B_j: the largest profiled batch a replica finishes within the slack (its requests in service then
    # finish within the SLO; a batch that takes longer would not, and earns no credit)
    batch = np.array([max((b for b, t in p.throughput.items() if t > 0 and b / t <= sl), default=0)
                      for p, sl in zip(prof, slack)], dtype=float)
    # (only where there is a queue to credit: the covering search's relaxed rows are then exact elsewhere)
    credit = np.where(usable & (backlog > 0), batch / np.where(usable, slack, 1.0), 0.0)
    cold = x0.sum() == 0  # nothing runs yet: every replica loads anyway, so no level is cheaper to reach
    # A replica switched in place to a level of a model that already runs here loads nothing (Snapshot.in_place).
    running = {p.model for p in prof if s.current.get(p.level, 0) > 0} if s.in_place else set()
    load = np.array([0.0 if p.model in running else p.load_time for p in prof])
    # A reload idles the replica's capacity for load_time; charged over the amortization horizon.
    switch = np.zeros(n) if cold else w * Q * T * load / s.hysteresis.amortize_s

    sources = [int(k) for k in np.flatnonzero(D > 0)]
    safe_at = np.arange(n)[None, :] <= row_level[:, None]  # (rows, levels): at least as safe as the row's optimum
    open_at = allowed & usable[None, :] & (overload | safe_at) & (D > 0)[:, None]
    pk, pj = np.nonzero(open_at)  # row-major: by source, then by level
    p_safe = safe_at[pk, pj]
    n_y, n_s = len(pk), len(sources)
    nv = 2 * n + n_y + 1 + 2 * n
    off_y, off_s, off_v = 2 * n, 2 * n + n_y, 2 * n + n_y + 1
    off_w = off_v + n

    y_cols = off_y + np.arange(n_y)
    c = np.zeros(nv)  # minimize -objective
    c[n:2 * n] = switch
    c[y_cols] = -w * V[pk, pj] + np.where(p_safe, 0.0, degrade_cost(overload, bool(s.classes)))
    c[off_s] = P_SHED * float(D[sources].sum()) if sources else P_SHED  # per unit of the shed fraction
    c[off_v:off_w] = P_SHED

    # The data plane sheds by arrival and deadline, whatever the prompt: planned demand the allocation cannot
    # serve is shed alike from every row, not from the rows cheapest to lose (the step-sensitive classes),
    # which would plan, and report quality, as if those prompts never arrived. So one column, the shed
    # fraction sigma, sheds sigma D_r from every row r (a column per row tied by equality rows was the same
    # model, and a larger LP for every node of the search).
    A = np.zeros((1 + n_s + 4 * n, nv))
    lo = np.full(A.shape[0], -np.inf)
    hi = np.zeros(A.shape[0])
    A[0, :n] = 1.0  # GPU budget
    hi[0] = s.gpus
    src_row = np.zeros(len(D), dtype=int)
    src_row[sources] = 1 + np.arange(n_s)
    cap_row = 1 + n_s
    A[src_row[pk], y_cols] = 1.0
    A[cap_row + pj, y_cols] = 1.0
    for si, k in enumerate(sources):  # every planned request is served somewhere or shed
        A[1 + si, off_s] = D[k]
        lo[1 + si] = hi[1 + si] = D[k]
    for j in range(n):
        A[cap_row + j, j] = -T[j]  # capacity with Little's-law backlog drain
        A[cap_row + j, off_v + j] = -1.0
        A[cap_row + j, off_w + j] = -1.0
        hi[cap_row + j] = -backlog[j]
        A[cap_row + n + j, j], A[cap_row + n + j, n + j] = 1.0, -1.0  # u_j >= x_j - current_j
        hi[cap_row + n + j] = x0[j]
        A[cap_row + 2 * n + j, off_w + j], A[cap_row + 2 * n + j, j] = 1.0, -credit[j]  # in service <= B_j x_j
        A[cap_row + 3 * n + j, off_v + j] = A[cap_row + 3 * n + j, off_w + j] = 1.0  # v_j + w_j <= b_j
        hi[cap_row + 3 * n + j] = backlog[j]

    b_lo = np.zeros(nv)
    b_hi = np.full(nv, np.inf)
    reach = np.bincount(pj, weights=D[pk], minlength=n) if n_y else np.zeros(n)
    # No level needs more replicas than all the load that may reach it plus its backlog: a tight box
    # keeps branching short. Spare GPUs are handed out after the solve (see optimizer).
    b_hi[:n] = np.where(usable, np.minimum(s.gpus, np.ceil((reach + backlog) / T - 1e-9)), 0.0)
    k0 = names.index(FULL)
    b_lo[k0] = s.min_full_quality
    b_hi[k0] = max(b_hi[k0], s.min_full_quality)  # kept even when no load needs it
    if not overload:
        b_hi[off_s:off_w] = 0.0
    else:
        b_hi[off_s] = 1.0
        b_hi[off_v:off_w] = backlog
    b_hi[off_w:] = backlog
    return Formulation(n=n, overload=overload, certain=overload and certain, pair_row=pk,
                       pair_level=pj, pair_safe=p_safe, sources=sources,
                       c=c, A=A, lb=lo, ub=hi, bounds_lo=b_lo, bounds_hi=b_hi, gpus=s.gpus, planned=planned,
                       demand_by_level=D,
                       backlog_rate=backlog, usable=usable, current=x0, switch_cost=switch, throughput=T, credit=credit,
                       row_level=row_level, row_quality=V, classed=bool(s.classes), weight=w,
                       level_names=tuple(names))


def _rows(s: Snapshot, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Demand rows: (optimal level, quality per level, allowed levels, share) per row.

    Without classes a row is an optimal level k worth the level mean Q_j anywhere, and a cache level
    with K > 0 takes only rows that had a hit (redirection.relation). With classes a row is a prompt
    class worth its expected quality, and every cache level no deeper than its hit is open to it."""
    names = s.levels
    n = len(names)
    if not s.classes:
        table = relation_table(names)
        allowed = np.array([[table[k][j] != NEVER for j in range(n)] for k in range(n)])
        return (np.arange(n), np.tile(Q, (n, 1)), allowed, np.array([s.h.get(k, 0.0) for k in names]))
    skip = np.array([parse_level(lv, 1000).resume_step for lv in names])
    at = {lv: j for j, lv in enumerate(names)}
    R = len(s.classes)
    V = np.zeros((R, n))
    rated = np.zeros((R, n), dtype=bool)  # the class has a quality there
    cells = [(r, at[lv], q) for r, c in enumerate(s.classes) for lv, q in c.quality.items()]
    if cells:
        rr, jj, qq = zip(*cells)
        V[rr, jj] = qq
        rated[rr, jj] = True
    hit = np.array([c.hit for c in s.classes])
    allowed = rated & (skip[None, :] <= hit[:, None])
    return (np.array([at[c.optimal] for c in s.classes]), V, allowed, np.array([c.share for c in s.classes]))


def run(f: Formulation, fixed_x: np.ndarray | None = None, relax: bool = False,
        max_nodes: int | None = None, start: np.ndarray | None = None,
        give_up: int | None = None, tol: float | None = None) -> Solution | None:
    """Solve by branch and bound (from `start` if given, to within `tol`, default f.tolerance), as the
    LP relaxation (`relax`), or with replicas fixed; None if infeasible."""
    lo = f.bounds_lo[:f.n]
    if f.beyond_capacity and (fixed_x is None or relax):
        return None  # not even the relaxation is feasible (no LP model built for it)
    lp = f.lp()
    if fixed_x is not None:
        # The box on x is a search aid, not a rule: any allocation within budget and floor is evaluable.
        hi = np.maximum(np.where(f.usable, f.gpus, 0.0), lo)
        if np.any(fixed_x < lo) or np.any(fixed_x > hi) or fixed_x.sum() > f.gpus:
            return None
        r = lp.solve(fixed_x, fixed_x)
        return None if r is None else _solution(f, -r[0], -r[0], r[1], integral=True)
    if relax:
        r = lp.solve(lp.lo0, lp.hi0)
        return None if r is None else _solution(f, -r[0], -r[0], r[1], integral=False)
    limit = max_nodes or (MAX_NODES_OVERLOAD if f.overload else MAX_NODES)
    if start is not None and (np.any(start < lo) or np.any(start[~f.usable] > 0)):
        start = None  # below the full-quality floor or on a level too slow for the SLO
    tol = f.tolerance if tol is None else tol
    if (f.overload or f.classed) and lp.solve(lp.lo0, lp.hi0) is None:
        # The LP-valued searches start from the relaxation (memoized): when not even fractional replicas serve
        # everything safely, as in most overloaded snapshots, there is nothing to list, filter or branch on.
        lp.no_integer_point = True
        return None
    xs = f.listing()
    if xs is not None and not f.overload and not f.classed:
        return _best_listed(f, xs)
    if xs is not None and not f.overload:
        # With classes the listed allocations are bounded by LPs (outer approximation); those that cannot
        # serve the load safely are dropped first, combinatorially, or each would cost an LP for nothing.
        xs = xs[f.evaluator().feasible(xs)]
        if not len(xs):
            lp.no_integer_point = True
            return None
    if xs is not None:
        # A listing proves a tighter tolerance for a few more LPs (cuts over explicit allocations), and plans the
        # model values within REL_TOL of each other differ by a replica of a fast level, which in the first
        # minute of a 3x burst decided between no SLO violation and 11 per burst minute (the in-place sweep).
        r = outer_approximation(lp, xs, tol * LISTED_TOL, limit, f.gpus, start, floor=f.capacity_bound(xs))
    else:
        # The safe model's fixed allocations are scored combinatorially (exact, argus.policy.solver.fixed), not by HiGHS.
        evaluate = None if f.overload or f.classed else _scorer(f)
        # With classes the safe model's values need LPs, but which allocations are safe is still combinatorial.
        feasible = f.evaluator().feasible if f.classed and not f.overload else None
        r = branch_and_bound(lp, tol, f.gpus, limit, start, give_up, evaluate, feasible)
    if r is None:
        return None
    obj, cols, bound = r
    return _solution(f, -obj, -bound, cols, integral=True)


def _best_listed(f: Formulation, xs: np.ndarray) -> Solution | None:
    """The safe model's exact optimum over every listed allocation (None, proven, when none is safe)."""
    values = f.evaluator().values(xs)
    i = int(np.argmax(values))
    lp = f.lp()
    if values[i] == -np.inf:
        lp.no_integer_point = True
        return None
    r = lp.solve(xs[i], xs[i])  # for the flows
    if r is None:  # on the feasibility edge HiGHS disagrees: search instead
        return run(f.with_listing_off())
    return _solution(f, -r[0], -r[0], r[1], integral=True)


def safe_allocation(f: Formulation) -> cover.Cover:
    """The safe model's covering search: an allocation that serves all planned load safely, or a proof
    that none exists (argus.policy.solver.cover); the box on x loses no safe allocation (see build)."""
    return cover.safe_allocation(f.evaluator(), f.bounds_lo[:f.n], f.bounds_hi[:f.n], f.gpus)


def _scorer(f: Formulation):
    """The branch and bound's `evaluate`: minimized objectives of allocations (rows), inf if infeasible.
    The evaluator is built on first use: a search that ends at its root needs none."""
    return lambda xs: -f.evaluator().values(xs)


def run_highs_milp(f: Formulation) -> Solution | None:
    """Reference: the same model through HiGHS's own MIP solver (scipy.optimize.milp); for tests."""
    integrality = np.zeros(len(f.c))
    integrality[:f.n] = 1
    res = milp(f.c, constraints=LinearConstraint(f.A, f.lb, f.ub), bounds=Bounds(f.bounds_lo, f.bounds_hi),
               integrality=integrality, options={"mip_rel_gap": 1e-9})
    if res.status != 0 or res.x is None:
        return None
    return _solution(f, -float(res.fun), -float(res.fun), res.x, integral=True)


def _solution(f: Formulation, objective: float, bound: float, xs: np.ndarray, integral: bool) -> Solution:
    flows = np.zeros((len(f.demand_by_level), f.n))
    flows[f.pair_row, f.pair_level] = np.maximum(xs[f.off_y:f.off_y + len(f.pair_row)], 0.0)
    shed = np.zeros(len(f.demand_by_level))
    shed[f.sources] = max(xs[f.off_shed], 0.0) * f.demand_by_level[f.sources]
    x = np.round(xs[:f.n]) if integral else xs[:f.n].copy()
    if integral:
        # HiGHS's feasibility tolerance (1e-7) can leave dust on a level with no replicas (its backlog cannot
        # drain either); the router would route load there. That load is shed in truth.
        empty = x == 0
        shed += flows[:, empty].sum(axis=1)
        flows[:, empty] = 0.0
    return Solution(objective=objective, bound=bound, x=x, flows=flows, shed=shed,
                    backlog_excess=np.maximum(xs[f.off_v:f.off_v + f.n], 0.0))


def repair(safe: Formulation, over: Formulation, sol: Solution, tries: int = 3) -> Solution | None:
    """Turn a slightly overloaded allocation into a safe one by moving one replica, if that suffices.

    Borderline instances (a sliver of load degraded or shed) defeat a short search of the safe model;
    moving one replica from the level with the most spare capacity to a fast level that is safe for
    the neediest prompts often fixes them. At most tries^2 candidates, scored combinatorially; one LP.
    """
    need = sol.shed.copy()
    for k, j, ok in over.pairs:
        if not ok:
            need[k] += sol.flows[k, j]
    k = int(np.argmax(need))
    if need[k] <= 0:
        return None
    served = sol.flows.sum(axis=0)
    spare = over.net_capacity(sol.x) - served
    adds = sorted({j for kk, j, ok in over.pairs if kk == k and ok}, key=lambda j: -over.throughput[j])[:tries]
    removes = [i for i in np.argsort(-spare, kind="stable") if sol.x[i] > safe.bounds_lo[i]][:tries]
    options = [None] + removes if sol.x.sum() < safe.gpus else removes
    hi = np.maximum(np.where(safe.usable, safe.gpus, 0.0), safe.bounds_lo[:safe.n])
    cands = []
    for j in adds:
        for i in options:
            if i == j:
                continue
            x = sol.x.copy()
            x[j] += 1
            if i is not None:
                x[i] -= 1
            if x.sum() > safe.gpus or np.any(x > hi):
                continue
            cands.append(x)
    if not cands:
        return None
    # Scored combinatorially (exact); only the best is solved as an LP, for its flows.
    values = safe.evaluator().values(np.array(cands))
    if not np.isfinite(values).any():
        return None
    x = cands[int(np.argmax(values))]  # the first of equal values, as the one-by-one LP loop kept
    r = safe.lp().solve(x, x)  # fixed bounds: the search box of the warm model does not apply
    return None if r is None else _solution(safe, -r[0], -r[0], r[1], integral=True)
