"""The allocation MILP: build it from a snapshot, solve it with HiGHS (scipy.optimize.milp).

Variables: integer replicas x_j; added replicas u_j >= x_j - current_j (switching cost); load
y_kj >= 0 whose optimal level is k served at level j; shed_k (demand not served) and v_j (queue
backlog that cannot drain within the latency SLO). Maximize
    sum y_kj Q_j  - W_deg sum_{j > k} y_kj - W_shed (sum shed + sum v) - sum c_j u_j + eps x_0
subject to  sum x <= GPUs;  sum_j y_kj + shed_k = D_k;  x_0 >= min full-quality replicas;
            sum_k y_kj + q_j / (SLO - s_j) - v_j <= T_j x_j     (Little's law: capacity covers arrivals
            and drains the observed queue q_j within the latency slack, so waiting stays within SLO).
W_deg and W_shed are larger than any quality or switching gain per request/s, so degrading (serving
below a prompt's floor) and shedding happen only when nothing else serves the load: that is overload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from argus.policy.redirection import NEVER, SAFE, relation_table
from argus.policy.snapshot import Snapshot

IDLE_REWARD = 1e-3  # tie-breaker: a GPU no load needs sits at full quality (headroom for the best level)
MIP_REL_GAP = 1e-7  # tight: the objective's quality term must not be traded away by solver tolerance


class SolverError(RuntimeError):
    """HiGHS failed for a reason other than the model (the model is always feasible by construction)."""


@dataclass(frozen=True)
class Formulation:
    """The MILP in matrix form plus the index maps needed to read a solution back."""

    n: int
    pairs: list[tuple[int, int, bool]]  # (k, j, safe) per y variable
    sources: list[int]  # k with D_k > 0, one shed variable each
    c: np.ndarray  # objective to MINIMIZE (negated maximization)
    A: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    bounds_lo: np.ndarray
    bounds_hi: np.ndarray
    planned: float  # requests/s the plan must serve: min(demand, target)
    demand_by_level: np.ndarray  # D_k
    backlog_rate: np.ndarray  # q_j / (SLO - s_j), requests/s
    usable: np.ndarray  # bool: service time below the SLO
    current: np.ndarray
    switch_cost: np.ndarray  # c_j per added replica (0 on cold start)

    @property
    def off_y(self) -> int:
        return 2 * self.n

    @property
    def off_shed(self) -> int:
        return 2 * self.n + len(self.pairs)

    @property
    def off_v(self) -> int:
        return self.off_shed + len(self.sources)


@dataclass(frozen=True)
class Solution:
    """Raw values of one solve."""

    objective: float  # maximization objective (see module docstring)
    x: np.ndarray  # replicas (integers when solved as MILP)
    flows: np.ndarray  # n x n: y[k, j]
    shed: np.ndarray  # per optimal level k
    backlog_excess: np.ndarray  # per level j


def build(s: Snapshot) -> Formulation:
    """Assemble the MILP for a snapshot (pure, O(levels^2))."""
    names = s.levels
    n = len(names)
    prof = s.profiles
    T = np.array([p.peak_throughput for p in prof])
    Q = np.array([p.quality for p in prof])
    svc = np.array([p.service_time for p in prof])
    slack = s.latency_slo - svc
    usable = slack > 0
    planned = min(s.demand, s.throughput_target)
    D = np.array([planned * s.h.get(k, 0.0) for k in names])
    q = np.array([s.queues.get(k, 0.0) for k in names])
    backlog = np.where(usable, q / np.where(usable, slack, 1.0), 0.0)
    x0 = np.array([s.current.get(k, 0) for k in names], dtype=float)
    cold = x0.sum() == 0  # nothing runs yet: every replica loads anyway, so no level is cheaper to reach
    load = np.array([p.load_time for p in prof])
    switch = np.zeros(n) if cold else Q * T * load / s.hysteresis.amortize_s
    w_deg = 2.0 * (100.0 + float((Q * load).max()) / s.hysteresis.amortize_s) + 100.0
    w_shed = 10.0 * w_deg

    table = relation_table(names)
    sources = [k for k in range(n) if D[k] > 0]
    pairs = [(k, j, table[k][j] == SAFE) for k in sources for j in range(n)
             if table[k][j] != NEVER and usable[j]]
    n_y, n_s = len(pairs), len(sources)
    nv = 2 * n + n_y + n_s + n
    off_y, off_s, off_v = 2 * n, 2 * n + n_y, 2 * n + n_y + n_s

    c = np.zeros(nv)  # minimize -objective
    k0 = names.index("cache-k0")
    c[k0] -= IDLE_REWARD
    c[n:2 * n] = switch
    for i, (k, j, safe) in enumerate(pairs):
        c[off_y + i] = -Q[j] + (0.0 if safe else w_deg)
    c[off_s:off_v] = w_shed
    c[off_v:] = w_shed

    rows, lo, hi = [], [], []
    budget = np.zeros(nv)
    budget[:n] = 1.0
    rows.append(budget), lo.append(-np.inf), hi.append(float(s.gpus))
    for si, k in enumerate(sources):  # every planned request is served somewhere or shed
        r = np.zeros(nv)
        for i, (kk, _, _) in enumerate(pairs):
            if kk == k:
                r[off_y + i] = 1.0
        r[off_s + si] = 1.0
        rows.append(r), lo.append(D[k]), hi.append(D[k])
    for j in range(n):  # capacity with Little's-law backlog drain
        r = np.zeros(nv)
        for i, (_, jj, _) in enumerate(pairs):
            if jj == j:
                r[off_y + i] = 1.0
        r[j] = -T[j]
        r[off_v + j] = -1.0
        rows.append(r), lo.append(-np.inf), hi.append(-backlog[j])
    for j in range(n):  # u_j >= x_j - current_j
        r = np.zeros(nv)
        r[j], r[n + j] = 1.0, -1.0
        rows.append(r), lo.append(-np.inf), hi.append(x0[j])

    b_lo = np.zeros(nv)
    b_hi = np.full(nv, np.inf)
    b_hi[:n] = np.where(usable, s.gpus, 0.0)
    b_lo[k0] = s.min_full_quality
    b_hi[k0] = max(b_hi[k0], s.min_full_quality)  # kept even when its service time misses the SLO
    b_hi[off_v:] = backlog
    return Formulation(n=n, pairs=pairs, sources=sources, c=c, A=np.array(rows), lb=np.array(lo),
                       ub=np.array(hi), bounds_lo=b_lo, bounds_hi=b_hi, planned=planned, demand_by_level=D,
                       backlog_rate=backlog, usable=usable, current=x0, switch_cost=switch)


def run(f: Formulation, fixed_x: np.ndarray | None = None, relax: bool = False) -> Solution | None:
    """Solve as MILP, as its LP relaxation (`relax`), or with replicas fixed; None if `fixed_x` is infeasible."""
    lo, hi = f.bounds_lo.copy(), f.bounds_hi.copy()
    integrality = np.zeros(len(f.c))
    if fixed_x is not None:
        if np.any(fixed_x < lo[:f.n]) or np.any(fixed_x > hi[:f.n]) or fixed_x.sum() > f.ub[0]:
            return None
        lo[:f.n] = hi[:f.n] = fixed_x
    elif not relax:
        integrality[:f.n] = 1
    res = milp(f.c, constraints=LinearConstraint(f.A, f.lb, f.ub), bounds=Bounds(lo, hi),
               integrality=integrality, options={"mip_rel_gap": MIP_REL_GAP, "presolve": True})
    if res.status != 0 or res.x is None:
        if fixed_x is not None:
            return None
        raise SolverError(f"HiGHS: {res.message}")
    xs = res.x
    flows = np.zeros((f.n, f.n))
    for i, (k, j, _) in enumerate(f.pairs):
        flows[k, j] = max(xs[f.off_y + i], 0.0)
    shed = np.zeros(f.n)
    for si, k in enumerate(f.sources):
        shed[k] = max(xs[f.off_shed + si], 0.0)
    x = xs[:f.n] if relax else np.round(xs[:f.n])
    return Solution(objective=-float(res.fun), x=x, flows=flows, shed=shed,
                    backlog_excess=np.maximum(xs[f.off_v:f.off_v + f.n], 0.0))
