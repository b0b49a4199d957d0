"""Whether any allocation within the GPU budget serves the planned load safely: find one or prove none (pure).

With replicas x fixed, the safe model is feasible iff every closed source set fits into the capacity
of the levels it may use (Hall's condition over the unions U of the sources' level sets, as in
argus.policy.solver.fixed): sum_{j in U} C_j(x_j) >= D(U) and C_j(x_j) >= 0, with C_j(x) = T_j x -
max(0, b_j - c_j x) (the backlog beyond what x's replicas hold in service). With C_j relaxed to its
linear upper bound (T_j + c_j) x - b_j those are covering rows (every allocation found is checked by
the evaluator; a proof that none exists holds for the exact rows too), so the fewest GPUs that serve everything safely is a tiny integer program: n integer columns,
one row per union, objective sum x. A short depth-first branch and bound over it (HiGHS LPs, a node
pruned when its LP needs more GPUs than the budget) finds a safe allocation within a few LPs when
one exists; when it does not, the dynamic program of argus.policy.solver.safe_dp decides exactly, and
usually in about a millisecond, whether any exists (the LP search would need 30-120 LPs to prove
that none does). The optimizer uses this when its own short safe search found no safe allocation
although fractional replicas would do: the allocation found starts the safe search again, and a
proof gives the overload model the certain-overload tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argus.policy.solver.bnb import INT_TOL, LpModel
from argus.policy.solver.fixed import FEAS_TOL, SafeEvaluator
from argus.policy.solver.safe_dp import fewest_gpus

MAX_LPS = 8  # LPs of the covering LP search, which looks for an allocation only (then the dynamic program)
OBJ_TOL = 1e-6  # GPUs: an LP bound above the budget by more than this prunes (HiGHS is exact to ~1e-9 here)


@dataclass(frozen=True)
class Cover:
    """The covering search's answer: a safe allocation, or none (`proven` when the tree was exhausted)."""

    x: np.ndarray | None
    proven: bool
    lps: int


def safe_allocation(ev: SafeEvaluator, lo: np.ndarray, hi: np.ndarray, budget: int,
                    max_lps: int = MAX_LPS) -> Cover:
    """An integer x in [lo, hi] with sum(x) <= budget that serves the demand safely, or a proof that none exists.

    `hi` must not cut off any safe allocation's useful capacity (the safe model's box does not:
    see milp.build); the answer is checked by the evaluator itself, so it is safe by its tolerance.
    """
    n = len(lo)
    T, b, c = ev.throughput, ev.backlog, ev.credit
    lo = np.maximum(lo, np.ceil((b - FEAS_TOL) / (T + c) - 1e-12))  # each level drains its own backlog
    if np.any(lo > hi) or lo.sum() > budget:
        return Cover(None, True, 0)
    # Union rows: capacity inside U covers the demand closed in U plus U's backlog. Rows that ask for
    # nothing are always met (capacity net of backlog is >= 0 once each level drains its backlog).
    inside = ev.total - ev.outside + ev.member @ b
    need = inside > FEAS_TOL
    if not need.any():
        return Cover(lo.copy(), False, 0) if _serves(ev, lo) else Cover(None, False, 0)
    lp = LpModel(np.ones(n), ev.member[need] * (T + c)[None, :], inside[need], np.full(int(need.sum()), np.inf),
                 lo, hi.astype(float), n)
    x, exhausted = _search(ev, lp, budget, max_lps)
    if x is not None or exhausted:
        return Cover(x, exhausted, lp.runs)  # (the dynamic program below is exact with the credit)
    x, proven = fewest_gpus(ev.reach, ev.demand, T, b, lo, hi, budget, credit=c)
    if x is not None and not _serves(ev, x):
        x = None  # within the dynamic program's tolerance, not the evaluator's (stricter than HiGHS)
    return Cover(x, proven, lp.runs)


def _search(ev: SafeEvaluator, lp: LpModel, budget: int, max_lps: int) -> tuple[np.ndarray | None, bool]:
    """Depth first, more capacity first, branching on the slowest fractional level (measured: 3-11 LPs
    to find one on the bench's hardest instances, where the most fractional took 5-421); (allocation
    or None, whether the tree was exhausted: a proof that none exists unless the relaxed rows let an
    integral point through that the evaluator refused, where another point of its box may still serve)."""
    n = lp.n_int
    refused = False
    stack = [(lp.lo0, lp.hi0)]
    while stack:
        if lp.runs >= max_lps:
            return None, False
        lo, hi = stack.pop()
        r = lp.solve(lo, hi)
        if r is None or r[0] > budget + OBJ_TOL:
            continue
        x = r[1][:n]
        up = np.minimum(np.ceil(x - INT_TOL), hi)  # covering rows stay met when capacity only grows
        if up.sum() <= budget and _serves(ev, up):
            return up, False
        frac = np.abs(x - np.round(x))
        if frac.max() <= INT_TOL:
            # integral, yet over budget or refused by the evaluator: with exact rows nothing more below
            refused = refused or (up.sum() <= budget and bool(ev.credit.any()))
            continue
        j = int(np.argmax(np.where(frac > INT_TOL, -ev.throughput, -np.inf)))
        down_hi, up_lo = hi.copy(), lo.copy()
        down_hi[j] = np.floor(x[j])
        up_lo[j] = np.ceil(x[j])
        stack.append((lo, down_hi))
        stack.append((up_lo, hi))
    return None, not refused


def _serves(ev: SafeEvaluator, x: np.ndarray) -> bool:
    return bool(np.isfinite(ev.values(x[None, :]))[0])

