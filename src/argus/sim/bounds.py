"""Fluid upper bounds on mean quality: what a policy could reach with and without per-prompt knowledge.

Both bounds serve `rate` requests/s on `gpus` fractional GPUs that never idle (no queueing, no SLO, no
reloads); a level's cost per request is 1 / its peak throughput per GPU.

- `per_prompt`: every prompt may go to any level it is allowed at its own true quality there (Lagrangian on
  the GPU budget: each prompt takes the level maximizing quality - lam x cost; lam bisected until the mix
  fits `gpus`, the two choices either side of it mixed to spend the budget exactly: the LP's value).
- `agnostic`: a policy that ignores the prompt serves a fraction of all requests at each level and gets each
  level's population mean there: the upper concave envelope of (cost, mean quality) at the budget. Only the
  levels every prompt may use count (`open_levels_mean`), as in the simulator's Proteus-like.

At a rate past what the fastest level serves, both serve only that much (`served_rate`), all at the fastest
level, so the two bounds meet.
"""

from __future__ import annotations

import numpy as np


def served_rate(rate: float, tput: np.ndarray, gpus: float) -> float:
    """The part of `rate` (requests/s) that `gpus` GPUs can serve at all (at the fastest level)."""
    return min(rate, gpus * float(np.max(tput)))


def per_prompt(quality: np.ndarray, tput: np.ndarray, rate: float, gpus: float, iters: int = 60) -> float:
    """Mean quality with each prompt (row of `quality`, -inf where a level is not allowed) at its best level
    under the GPU budget; `tput`: peak requests/s per GPU per level (columns)."""
    n = len(quality)
    rate = served_rate(rate, tput, gpus)
    cost = 1.0 / np.asarray(tput, dtype=float)
    if rate <= 0:
        return float(np.max(quality, axis=1).mean())
    rows = np.arange(n)

    def at(lam: float) -> tuple[float, float]:  # (GPUs needed, mean quality) of the Lagrangian choice
        j = np.argmax(quality - lam * cost[None, :], axis=1)
        return rate * float(cost[j].mean()), float(quality[rows, j].mean())

    lo, hi = 0.0, 1e4
    need, q = at(lo)
    if need <= gpus:
        return q
    for _ in range(iters):
        lam = (lo + hi) / 2
        lo, hi = (lam, hi) if at(lam)[0] > gpus else (lo, lam)
    (n_lo, q_lo), (n_hi, q_hi) = at(lo), at(hi)
    # ties (prompts alike) make the choice jump at one lam: the LP mixes the two choices to spend the budget
    theta = min(1.0, max(0.0, (gpus - n_hi) / (n_lo - n_hi))) if n_lo > n_hi else 0.0
    return q_hi + theta * (q_lo - q_hi)


def agnostic(mean_quality: np.ndarray, tput: np.ndarray, rate: float, gpus: float) -> float:
    """Best mean quality of a prompt-blind mix of levels (each at its population mean `mean_quality`)."""
    rate = served_rate(rate, tput, gpus)
    cost = 1.0 / np.asarray(tput, dtype=float)
    q = np.asarray(mean_quality, dtype=float)
    if rate <= 0:
        return float(q.max())
    budget = gpus / rate  # GPU-seconds per request
    best = float(q[cost <= budget * (1 + 1e-12)].max())
    for a in range(len(q)):  # mixes of a cheaper level a and a dearer one b, spending the budget exactly
        for b in range(len(q)):
            if cost[a] < budget < cost[b]:
                x = (cost[b] - budget) / (cost[b] - cost[a])
                best = max(best, x * q[a] + (1 - x) * q[b])
    return best


def open_levels_mean(quality: np.ndarray) -> np.ndarray:
    """Population mean per level, over the levels every prompt may use (-inf elsewhere): a prompt-blind
    policy cannot send a prompt to a cache level deeper than its hit, since it does not look."""
    every = np.isfinite(quality).all(axis=0)
    return np.where(every, np.where(np.isfinite(quality), quality, 0.0).mean(axis=0), -np.inf)


def windowed(quality: np.ndarray, tput: np.ndarray, arrivals: np.ndarray, gpus: float, window_s: float,
             t0: float, t1: float) -> dict:
    """Both bounds window by window over [t0, t1) of `arrivals` (times, s), each window served on its own,
    and their means weighted by what each window serves.

    Returns per-window rates and bounds, the weighted means and the share of windows past the fastest level.
    """
    edges = np.arange(t0, t1 + 1e-9, window_s)
    counts = np.histogram(arrivals, bins=edges)[0]
    rates = counts / window_s
    mean_q = open_levels_mean(quality)
    pp = np.array([per_prompt(quality, tput, r, gpus) for r in rates])
    ag = np.array([agnostic(mean_q, tput, r, gpus) for r in rates])
    served = np.array([served_rate(r, tput, gpus) for r in rates])
    w = served / served.sum() if served.sum() > 0 else np.full(len(served), 1.0 / max(len(served), 1))
    return {"window_s": window_s, "rates": rates, "per_prompt": pp, "agnostic": ag,
            "mean_per_prompt": float(w @ pp), "mean_agnostic": float(w @ ag), "gap": float(w @ (pp - ag)),
            "past_fastest": float(np.mean(rates > gpus * np.max(tput)))}
