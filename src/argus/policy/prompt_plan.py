"""What the router decides about a prompt before dispatch: optimal level, predicted quality, cache keys.

Pure (no I/O): the router's planners (FullQualityPlanner here, argus.prompt.planner.PredictivePlanner)
return a PromptPlan; store_key names the latent a full run stores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from argus.levels import FULL


@dataclass(frozen=True)
class PromptPlan:
    """The per-prompt decision: optimal level, predicted quality per level, cache keys."""

    optimal_level: str
    predicted_quality: dict[str, float] = field(default_factory=dict)
    cache_key: str | None = None  # similar earlier prompt's latent-store key (cache levels)
    store_key: str | None = None  # key under which a full run stores its checkpoints
    similarity: float | None = None


class Planner(Protocol):
    """Decides a PromptPlan for one prompt of one service."""

    async def plan(self, service: str, prompt: str, tenant: str, floor: float) -> PromptPlan:
        """The plan for `prompt` under the quality `floor` (percent)."""


def store_key(tenant: str, prompt: str) -> str:
    """Latent-store key of a prompt: `<tenant>/<sha256 of the prompt, 40 hex>`."""
    return f"{tenant or 'default'}/{hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:40]}"


class FullQualityPlanner:
    """No predictor: every prompt's optimal level is the full-quality level; full runs feed the cache."""

    async def plan(self, service: str, prompt: str, tenant: str, floor: float) -> PromptPlan:
        """Always FULL at 100% predicted quality."""
        return PromptPlan(FULL, {FULL: 100.0}, None, store_key(tenant, prompt))
