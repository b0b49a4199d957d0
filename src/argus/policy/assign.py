"""Per-prompt level assignment: pure functions of the prompt, the policy in force and a per-level ledger.

With prices in the policy (argus.policy.optimizer._prices) and a per-level quality prediction for the
prompt, the prompt goes to the allowed level with the highest predicted quality minus price, among the
levels still within their planned share of the arrivals (`place`); cache levels are open to every prompt
whose hit is deep enough (the predictor predicts exactly those). Otherwise its level is drawn from the
redirection row of its optimal level (`served_level`).
"""

from __future__ import annotations

import math
import random

import numpy as np

from argus.levels import FULL
from argus.policy.document import PolicyDocument

BURST = 4.0  # requests a level may take beyond its share of the arrivals before it counts as full
ETA = 0.1  # quality points a level's learned price moves per arrival (see place_rows)
MAX_OFFSET = 50.0  # the most a level's learned price adds to the plan's


def served_level(optimal: str, policy: PolicyDocument | None, rng: random.Random,
                 available: set[str] | None = None) -> str:
    """Draw the level that serves a prompt from the redirection row of its optimal level.

    Without a policy (or row) the prompt is served at its optimal level. Levels with no
    ready replica (`available`) are skipped in favour of the next safer one.
    """
    level = optimal
    if policy is not None:
        row = policy.redirection.get(optimal)
        if row:
            levels, weights = zip(*sorted(row.items()))
            level = rng.choices(levels, weights=weights, k=1)[0]
    if available is not None and level not in available and policy is not None:
        order = policy.levels
        idx = order.index(level) if level in order else 0
        for cand in list(reversed(order[: idx + 1])) + order[idx + 1:]:
            if cand in available:
                return cand
    return level


def safer_levels(level: str, policy: PolicyDocument | None) -> list[str]:
    """Levels safer than `level`, nearest first (the fallback order after a failure)."""
    if policy is None or level not in policy.levels:
        return []
    idx = policy.levels.index(level)
    return list(reversed(policy.levels[:idx]))


def place_rows(scores: np.ndarray, share: np.ndarray, credit: np.ndarray, offset: np.ndarray,
               burst: float = BURST, eta: float = ETA) -> np.ndarray:
    """Level index per prompt (row): the best score among levels with credit left, else the best score.

    `scores[i, j]` is prompt i's predicted quality at level j minus the level's price (-inf: not allowed).
    Every arrival gives each level `share[j]` credit (at most `burst`); a placement takes one. So no level
    receives more than its share of the arrivals beyond `burst` requests, whatever the prompts prefer.

    Which prompts fill a level's share: those that gain most there. The plan's prices come from classes, so
    within a class more prompts may prefer a level than its share holds, and the credit alone would give it
    to whichever came first. `offset[j]` is a price the ledger learns on top of the plan's: it rises by
    `eta` x (1 - share) with each arrival that prefers level j, falls by `eta` x share with each other one
    (never below 0, at most MAX_OFFSET), so it settles where the share of arrivals preferring the level is
    its share: a threshold on the prompts' own gains (the per-prompt fluid optimum's dual).

    A new ledger starts with a full `burst` per level (`full_credit`): an empty one diverts the first prompts that
    gain most at a level with a small share, and every level is new after a router start or a plan that changes
    the document's levels. In the simulator that cost 0.16 points at the paper's plateau (headroom 1.0) and
    violations in 2x and 3x bursts (bench/RESULTS.md, "The router's ledger"). The burst stays small: at a level's
    own share the credit is a walk without drift that runs dry by chance and sends prompts to their second
    choice (on a plateau's prompts alone, 90.9 % with 4 against 91.8 % with 32 and 91.9 % for the assignment LP
    at the same shares), but a deeper one lets steps-20, which has no faster rung, take more than it serves
    while a 3x burst's plans move replicas to it (with 32: 37 violations in three 1-minute bursts instead of 0,
    24 of them drops at steps-20 46-75 s into the first).

    `credit` and `offset` are updated in place (the caller keeps them between calls). -1 for a prompt with
    no allowed level. Plain loops over arrays: the simulator compiles this very function with numba.
    """
    n, m = scores.shape
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        best, best_s, top, top_s = -1, -math.inf, -1, -math.inf
        for j in range(m):
            c = credit[j] + share[j]
            credit[j] = c if c < burst else burst
            v = scores[i, j] - offset[j]
            if v > top_s:
                top, top_s = j, v
            if credit[j] > 0.0 and v > best_s:
                best, best_s = j, v
        if best < 0:
            best = top
        if best >= 0:
            credit[best] -= 1.0
        if top >= 0:
            for j in range(m):
                o = offset[j] + eta * ((1.0 if j == top else 0.0) - share[j])
                offset[j] = 0.0 if o < 0.0 else (MAX_OFFSET if o > MAX_OFFSET else o)
        out[i] = best
    return out


def full_credit(n: int) -> np.ndarray:
    """A new ledger's credit for `n` levels: each starts with a full burst (see place_rows)."""
    return np.full(n, BURST)


class Ledger:
    """Per-level credit and learned price of one service's placements (see place_rows); lives in the router,
    one per service."""

    def __init__(self) -> None:
        self.credit: dict[str, float] = {}
        self.offset: dict[str, float] = {}


def score_rows(predicted: np.ndarray, policy: PolicyDocument, available: np.ndarray | None = None) -> np.ndarray:
    """Predicted quality minus price, (prompts x policy levels); -inf where a prompt may not go: no prediction
    (NaN: a cache level deeper than its hit), no replica planned or ready (`available`, per level), or
    below the quality floor outside overload (cache-k0 always allowed). Under overload a level predicted
    below the prompt's floor costs the policy's `degrade_price` more, as it does in the plan the prices
    come from."""
    levels = policy.levels
    price = np.array([policy.prices.get(lv, 0.0) for lv in levels])
    ok = np.array([policy.allocation.get(lv, 0) > 0 for lv in levels])
    if available is not None:
        ok &= available
    allowed = ~np.isnan(predicted) & ok[None, :]
    full = np.array([lv == FULL for lv in levels])
    below = (predicted < policy.quality_floor) & ~full[None, :]
    if not policy.overload:
        allowed &= ~below
    scores = np.nan_to_num(predicted) - price[None, :] - np.where(below, policy.degrade_price, 0.0)
    return np.where(allowed, scores, -math.inf)


def ready_shares(policy: PolicyDocument, ready: dict[str, int] | None) -> np.ndarray:
    """The policy's shares (per `policy.levels`), each scaled by the share of the level's planned replicas that
    are ready, then summing to 1 again. The plan's shares count every replica it allocates, but one still
    loading serves nothing: a level reloaded into for a burst would otherwise take the share of all its
    replicas on the first one ready, and drop what its queue cannot finish in time. `ready`: ready replicas
    per level (the router's endpoints); None: the shares as planned."""
    share = np.array([policy.shares.get(lv, 0.0) for lv in policy.levels])
    if ready is None:
        return share
    planned = np.array([policy.allocation.get(lv, 0) for lv in policy.levels], dtype=float)
    have = np.array([ready.get(lv, 0) for lv in policy.levels], dtype=float)
    scaled = share * np.where(planned > 0, np.minimum(have / np.maximum(planned, 1.0), 1.0), 1.0)
    total = scaled.sum()
    return scaled / total if total > 0 else share


def place(predicted: dict[str, float], policy: PolicyDocument, ledger: Ledger,
          available: set[str] | None = None, ready: dict[str, int] | None = None) -> str | None:
    """The level for one prompt with per-level predictions under a policy with prices; None if it has none.
    `ready`: ready replicas per level (`ready_shares`)."""
    if not policy.prices or len(predicted) < 2:
        # No per-level prediction (a router without a predictor plans every prompt as {FULL: 100}): placing
        # it would pin it to full quality even in overload; the redirection row decides instead.
        return None
    row = np.array([[predicted.get(lv, np.nan) for lv in policy.levels]])
    avail = None if available is None else np.array([lv in available for lv in policy.levels])
    scores = score_rows(row, policy, avail)[0]
    if not np.isfinite(scores).any():
        return None
    share = ready_shares(policy, ready)
    credit = np.array([ledger.credit.get(lv, BURST) for lv in policy.levels])
    offset = np.array([ledger.offset.get(lv, 0.0) for lv in policy.levels])
    j = int(place_rows(scores[None, :], share, credit, offset)[0])
    ledger.credit = dict(zip(policy.levels, credit.tolist()))
    ledger.offset = dict(zip(policy.levels, offset.tolist()))
    return policy.levels[j]


def assigned_level(optimal: str, predicted: dict[str, float], policy: PolicyDocument | None, rng: random.Random,
                   ledger: Ledger, available: set[str] | None = None, ready: dict[str, int] | None = None) -> str:
    """Per-prompt placement when the policy has prices and the prompt has predictions, else the redirection row.

    A prompt-agnostic policy (`agnostic_key`) keys every prompt at that level and ignores its predictions."""
    if policy is not None and policy.agnostic_key is not None:
        return served_level(policy.agnostic_key, policy, rng, available)
    if policy is not None:
        level = place(predicted, policy, ledger, available, ready)
        if level is not None:
            return level
    return served_level(optimal, policy, rng, available)
