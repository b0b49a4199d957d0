"""Per-prompt level assignment: pure functions of the prompt's optimal level and the policy in force."""

from __future__ import annotations

import random

from argus.policy.document import PolicyDocument


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
