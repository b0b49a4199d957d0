"""Combinatorial evaluation of the safe model with replicas fixed, many allocations at once (pure).

With x fixed, the safe model is a transportation problem whose value depends on the serving level
only (every safe pair of level j is worth Q_j), less the switching cost of added replicas. The
level loads z that route the planned demand form the base of the polymatroid f(S) = max flow into
the levels S, so greedy by quality is exact: z of the t-th best level = f(S_t) - f(S_{t-1}). By
max-flow/min-cut, f(S) = min over closed source sets A of D(sources outside A) + C(S within N(A)),
where C_j = net_capacity(x_j) (T_j x_j less the backlog x_j's replicas cannot hold) and N(A) are the levels A may use; a closed set is every source
whose levels lie in a union U of sources' level sets, so the minimum runs over those unions.
Evaluating a batch is a few numpy operations, where HiGHS costs ~0.1-0.4 ms per allocation.
With prompt classes (Snapshot.classes) the value of a level depends on the class it serves: Hall's
condition still decides feasibility, and a feasible allocation's value is its LP (`exact`).
"""

from __future__ import annotations

import numpy as np

CHUNK = 512  # allocations per greedy evaluation step (unions x levels x levels floats each)
FEAS_TOL = 1e-9  # req/s; stricter than HiGHS (1e-7), so every allocation counted feasible here is feasible there


def net_capacity(x, throughput: np.ndarray, backlog: np.ndarray, credit: np.ndarray):
    """Capacity left for arrivals at replicas x (one allocation or rows of them), requests/s per level:
    T_j x_j less the drain of the queued requests x_j's replicas do not hold in service. A level's queue
    q_j drains within its slack at rate backlog_j = q_j / slack_j, but up to B_j x_j of those requests
    (a full batch per replica) are in service and finish within their service time anyway:
    credit_j = B_j / slack_j per replica (argus.policy.solver.milp.build)."""
    return x * throughput - np.maximum(backlog - credit * x, 0.0)


class SafeEvaluator:
    """Safe-model objective of fixed allocations, as `milp.run(f, fixed_x=x)` computes it with HiGHS."""

    def __init__(self, n: int, sources: list[int], pairs: list[tuple[int, int, bool]], demand: np.ndarray,
                 throughput: np.ndarray, backlog: np.ndarray, quality: np.ndarray, switch_cost: np.ndarray,
                 current: np.ndarray, exact=None, credit: np.ndarray | None = None):
        reach = {k: 0 for k in sources}  # bitmask of the levels each source may use
        for k, j, safe in pairs:
            if safe:
                reach[k] |= 1 << j
        self.reach, self.demand = reach, demand  # for the covering search (argus.policy.solver.cover)
        unions = {0}
        for k in sources:
            unions |= {u | reach[k] for u in unions}
        masks = np.array(sorted(unions), dtype=np.int64)
        src = np.array(sources, dtype=int)
        reach_bits = np.array([reach[k] for k in sources], dtype=np.int64)
        self.total = float(demand[src].sum()) if sources else 0.0
        # Demand outside the closed source set of each union U: sources whose levels are not all in U.
        beyond = (reach_bits[None, :] & ~masks[:, None]) != 0  # (unions, sources)
        self.outside = beyond.astype(float) @ demand[src] if sources else np.zeros(len(masks))
        self.order = np.argsort(-quality, kind="stable")  # greedy: best quality first
        self.member = ((masks[:, None] >> np.arange(n)[None, :]) & 1).astype(float)  # (unions, levels)
        member = self.member[:, self.order]
        # prefix[t', (u, t)] = [level t' is in union u and among the t+1 best]: capacity inside every
        # union and greedy prefix in one matrix product.
        prefix = member.T[:, :, None] * np.tri(n).T[:, None, :]  # (t', unions, t)
        self.prefix = prefix.reshape(n, -1)
        self.n_unions = len(masks)
        self.member_t = member.T.copy()  # (levels in greedy order, unions): capacity inside each union
        self.q_sorted = quality[self.order]
        self.throughput, self.backlog = throughput, backlog
        self.credit = np.zeros_like(backlog) if credit is None else credit
        self.switch_cost, self.current = switch_cost, current
        # With prompt classes a level's value depends on whom it serves, so greedy by level quality is not
        # exact: `exact(x)` gives a feasible allocation's value (its LP); feasibility stays combinatorial.
        self.exact = exact

    def feasible(self, xs: np.ndarray) -> np.ndarray:
        """Whether each row of xs serves the planned demand safely (Hall's condition over the unions)."""
        cap = net_capacity(xs, self.throughput, self.backlog, self.credit)  # (candidates, levels)
        drained = (cap >= -FEAS_TOL).all(axis=1)  # capacity covers each level's backlog drain
        cap = np.maximum(cap, 0.0)[:, self.order]
        # Feasible iff every closed source set fits in its levels: f(all levels) = the planned demand.
        served = (cap @ self.member_t + self.outside).min(axis=1, initial=self.total)
        return drained & (served >= self.total - FEAS_TOL)

    def values(self, xs: np.ndarray) -> np.ndarray:
        """Objective (maximized) per row of xs; -inf where the allocation cannot serve the demand safely."""
        ok = np.flatnonzero(self.feasible(xs))
        cap = np.maximum(net_capacity(xs, self.throughput, self.backlog, self.credit), 0.0)[:, self.order]
        value = np.full(len(xs), -np.inf)
        if self.exact is not None:
            for i in ok:
                value[i] = self.exact(np.asarray(xs[i], dtype=float))
            return value
        for part in np.array_split(ok, -(-ok.size // CHUNK)) if ok.size else []:  # bounded memory
            # f(S_t) for every prefix S_t of the greedy order: min over unions of outside demand + capacity inside.
            inside = (cap[part] @ self.prefix).reshape(part.size, self.n_unions, -1)  # (cand, unions, t)
            f = np.minimum((inside + self.outside[None, :, None]).min(axis=1), self.total)  # (cand, t)
            z = np.diff(f, axis=1, prepend=0.0)
            value[part] = z @ self.q_sorted - np.maximum(xs[part] - self.current, 0.0) @ self.switch_cost
        return value
