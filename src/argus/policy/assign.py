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
from collections import deque

import numpy as np

from argus.levels import FULL
from argus.policy.document import PolicyDocument

BURST = 4.0  # requests a level may take beyond its share of the arrivals before it counts as full
ETA = 0.1  # quality points a level's learned price moves per arrival (see place_rows)
MAX_OFFSET = 50.0  # the most a level's learned price adds to the plan's
# each arrival pulls a level's credit this fraction of the way back to `burst` (see place_rows): without it the
# credit a level at its cap cannot take is lost, the ledger can owe on every level, and placement turns into
# turns by share (bench/RESULTS.md, "The router's ledger in debt")
LEAK = 0.003
FIT_WINDOW = 600  # recent prompts the learned prices are fitted on (fit_offsets)
REFIT_EVERY = 200  # arrivals between two fits (and a fit at every new policy)
MIN_FIT = 50  # the fewest recent prompts a fit is made on
FIT_ITERS = 80  # fit_offsets' steps


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
               burst: float = BURST, eta: float = ETA, leak: float = LEAK) -> np.ndarray:
    """Level index per prompt (row): the best score among levels with credit left, else the best score.

    `scores[i, j]` is prompt i's predicted quality at level j minus the level's price (-inf: not allowed).
    Every arrival gives each level `share[j]` credit (at most `burst`); a placement takes one. So no level
    receives more than its share of the arrivals beyond `burst` requests, whatever the prompts prefer. Each
    arrival also pulls every credit `leak` of the way back to `burst`: what a level at its cap cannot take
    is lost, so without the pull the ledger's total sinks until every level sits at or below 0. Then the
    level whose credit last crossed 0 takes the next prompt, whatever it prefers: turns by share. (On the
    paper setup with Azure arrivals, prices fitted as in fit_offsets: 89.51 % at peak without the pull, 89.98
    with it.) The pull lets a level that every prompt prefers take at most `leak` x `burst` more of the
    arrivals than its share (1.2 % at the defaults).

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
            c = credit[j] + share[j] + leak * (burst - credit[j])
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


def fit_offsets(scores: np.ndarray, share: np.ndarray, iters: int = FIT_ITERS) -> np.ndarray:
    """Learned prices (per level) under which each level is the first choice of its share of `scores`' prompts.

    `scores`: recent prompts' predicted quality minus the plan's prices (score_rows), -inf where not allowed.
    The per-prompt fluid optimum's dual on that sample: each step raises a level's price by how much more than
    its share prefers it (relative to the share) and lowers it where fewer do, with a shrinking step; prices
    stay in [0, MAX_OFFSET], and the lowest among the levels with a share is 0. `place_rows` learns the same prices one
    arrival at a time (`eta`), too slowly to follow a plan whose prices jump: after a new plan a cache-k0 share
    of 5 % went to prompts chosen by the credit rather than by their gain. Fitted on the last FIT_WINDOW
    prompts before the one being placed, when `refit_due`. Zeros for an empty sample."""
    s = scores[np.isfinite(scores).any(axis=1)]
    m = scores.shape[1]
    o = np.zeros(m)
    active = share > 0
    if len(s) == 0 or not active.any():
        return o
    step = 8.0
    for _ in range(iters):
        top = np.argmax(s - o[None, :], axis=1)
        frac = np.bincount(top, minlength=m) / len(s)
        o = np.clip(o + step * (frac - share) / np.maximum(share, 0.02), 0.0, MAX_OFFSET)
        o = np.maximum(o - o[active].min(), 0.0)
        step *= 0.93
    return o


def refit_due(n_recent: int, policy_key: tuple[str, int], fitted_for: tuple[str, int] | None, since_fit: int) -> bool:
    """Whether the learned prices are fitted again before the next placement: at least MIN_FIT recent prompts,
    and a policy (epoch, version) other than the last fit's, or REFIT_EVERY arrivals since it."""
    return n_recent >= MIN_FIT and (policy_key != fitted_for or since_fit >= REFIT_EVERY)


def until_due(n_recent: int, since_fit: int) -> int:
    """Placements until `refit_due` can next hold for the same policy (the simulator places in chunks of this)."""
    return MIN_FIT - n_recent if n_recent < MIN_FIT else REFIT_EVERY - since_fit


def full_credit(n: int) -> np.ndarray:
    """A new ledger's credit for `n` levels: each starts with a full burst (see place_rows)."""
    return np.full(n, BURST)


class Ledger:
    """Per-level credit and learned price of one service's placements (see place_rows), and the recent prompts'
    predictions the prices are fitted on (fit_offsets); lives in the router, one per service."""

    def __init__(self) -> None:
        self.credit: dict[str, float] = {}
        self.offset: dict[str, float] = {}
        self.recent: deque[dict[str, float]] = deque(maxlen=FIT_WINDOW)
        self.fitted_for: tuple[str, int] | None = None  # the policy (epoch, version) of the last fit
        self.since_fit = 0  # arrivals since then

    def refit(self, policy: PolicyDocument, available: np.ndarray | None, share: np.ndarray) -> None:
        """Fit the learned prices on the recent prompts when `refit_due`."""
        key = (policy.epoch, policy.version)
        if not refit_due(len(self.recent), key, self.fitted_for, self.since_fit):
            return
        rows = np.array([[p.get(lv, np.nan) for lv in policy.levels] for p in self.recent])
        offset = fit_offsets(score_rows(rows, policy, available), share)
        self.offset = dict(zip(policy.levels, offset.tolist()))
        self.fitted_for, self.since_fit = key, 0


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
    share = ready_shares(policy, ready)
    ledger.refit(policy, avail, share)
    ledger.recent.append(dict(predicted))
    ledger.since_fit += 1
    if not np.isfinite(scores).any():
        return None
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
