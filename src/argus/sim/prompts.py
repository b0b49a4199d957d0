"""Synthetic prompt population: per-prompt cache hits, per-prompt quality per level, optimal level.

Stands in for the router's predictor (argus.prompt has no predictor yet): each simulated prompt
draws the deepest cache level its most similar cached prompt allows (by default the split the Argus
prototype's published 20k-prompt log gives with its CLIP thresholds, ARGUS_LOG_HITS) and a sensitivity to step reduction. Its relative quality per level:

- cache-k0: 100; cache-kK with K <= its hit: the profile's mean quality of level K (the published
  per-level means are over hits); deeper than its hit: that mean minus `overreach_pp` per 5 steps;
- steps-S: 100 - (100 - Q_S) * z with z ~ Gamma(shape, 1/shape) (mean 1, so the profile mean is
  kept; the spread is an assumption, see DEFAULT_*), a lighter model level: its mean.

The optimal level is chosen by the router's rule (argus.prompt.predictor.Predictor.choose, with
the profile's seconds per image as costs): the cheapest level whose predicted quality is at or
above the floor, cache levels only up to the prompt's hit. Predictions are the truth plus optional
Gaussian noise (the trained predictor needs embeddings and profiled labels the simulator lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from argus.levels import FULL, parse_level, parse_levels
from argus.policy.profile import LevelProfile
from argus.prompt.index import Thresholds
from argus.prompt.predictor import Predictor, level_costs

# The Argus prototype's published 20k-prompt log with its CLIP thresholds: K = 0, 5, ..., 25 for
# 22.5 / 42.6 / 21.3 / 4.6 / 3.2 / 5.9 % of prompts (77.5 % hits; the published figures sum to 100.1 %,
# normalized here). Mean K 7.1.
_LOG = {0: 22.5, 5: 42.6, 10: 21.3, 15: 4.6, 20: 3.2, 25: 5.9}
ARGUS_LOG_HITS = {k: v / sum(_LOG.values()) for k, v in _LOG.items()}
# The split this simulator assumed before the log's numbers were used (NIRVANA's 77.5 % hits, mean K 7.1).
NIRVANA_HITS = {0: 0.225, 5: 0.42, 10: 0.18, 15: 0.095, 20: 0.045, 25: 0.035}
DEFAULT_STEPS_SHAPE = 2.0  # assumption: Gamma shape of per-prompt step-reduction sensitivity
DEFAULT_OVERREACH_PP = 3.0  # assumption: quality lost per 5 steps resumed beyond the prompt's own hit


class PromptModelError(ValueError):
    """A prompt-population setting is invalid; the message names the field."""


@dataclass(frozen=True)
class PromptModel:
    """How simulated prompts are drawn and how good each level is for each of them."""

    hits: dict[int, float] = field(default_factory=lambda: dict(ARGUS_LOG_HITS))  # K -> share (0 = miss)
    steps_shape: float = DEFAULT_STEPS_SHAPE
    overreach_pp: float = DEFAULT_OVERREACH_PP
    predictor_noise_pp: float = 0.0  # std of the predictor's error, percentage points

    def __post_init__(self) -> None:
        total = sum(self.hits.values())
        if abs(total - 1.0) > 1e-6 or any(v < 0 for v in self.hits.values()):
            raise PromptModelError(f"hits: shares must be >= 0 and sum to 1, got {total:.6f}")
        if self.steps_shape <= 0:
            raise PromptModelError(f"steps_shape: {self.steps_shape} must be > 0")
        if self.predictor_noise_pp < 0:
            raise PromptModelError(f"predictor_noise_pp: {self.predictor_noise_pp} must be >= 0")

    @property
    def hit_rate(self) -> float:
        """Share of prompts with a usable cache hit (K > 0)."""
        return sum(v for k, v in self.hits.items() if k > 0)

    @property
    def mean_k(self) -> float:
        """Mean K over all prompts (misses count as 0)."""
        return sum(k * v for k, v in self.hits.items())

    def draw(self, levels: tuple[LevelProfile, ...], floor: float, n: int, rng: np.random.Generator) -> "Prompts":
        """n simulated prompts (see `draw`)."""
        return _draw_synthetic(self, levels, floor, n, rng)

    def profiled(self, levels: tuple[LevelProfile, ...], floor: float, n: int,
                 rng: np.random.Generator) -> "Prompts":
        """The population the planner's class table is estimated from: a sample of the same model."""
        return _draw_synthetic(self, levels, floor, n, rng)


class PromptSource(Protocol):
    """What the engine and the policies need of a prompt population (PromptModel, or a measured one:
    argus.sim.measured.EmpiricalPromptModel)."""

    @property
    def hits(self) -> dict[int, float]:
        """K -> share of prompts whose deepest allowed cache level is cache-kK (0: a miss)."""

    def draw(self, levels: tuple[LevelProfile, ...], floor: float, n: int, rng: np.random.Generator) -> "Prompts":
        """n simulated prompts: true quality per level, predictions, optimal level, cache-hit depth."""

    def profiled(self, levels: tuple[LevelProfile, ...], floor: float, n: int,
                 rng: np.random.Generator) -> "Prompts":
        """n prompts of the population the planner knows (its class table is estimated from them)."""


@dataclass(frozen=True)
class Prompts:
    """A batch of simulated prompts: true quality and the predictor's optimal level per prompt."""

    quality: np.ndarray  # (n, L) true relative quality at each level, percent
    optimal: np.ndarray  # (n,) index of the optimal level under the floor
    kmax: np.ndarray  # (n,) deepest cache level the prompt's most similar cached prompt allows (0: miss)
    predicted: np.ndarray | None = None  # (n, L) the predictor's quality per level; NaN where it predicts none


def quality_table(model: PromptModel, levels: tuple[LevelProfile, ...], kmax: np.ndarray,
                  z: np.ndarray) -> np.ndarray:
    """True relative quality (n, L) of prompts with cache hits `kmax` and step sensitivity `z`."""
    out = np.empty((len(kmax), len(levels)))
    for j, lp in enumerate(levels):
        lv = parse_level(lp.level, 1000)
        if lv.family == "cache":
            if lv.resume_step == 0:
                out[:, j] = 100.0
            else:
                over = np.maximum(lv.resume_step - kmax, 0) / 5.0
                out[:, j] = lp.quality - model.overreach_pp * over
        elif lv.family == "steps":
            out[:, j] = 100.0 - (100.0 - lp.quality) * z
        else:
            out[:, j] = lp.quality
    return np.clip(out, 0.0, 100.0)


def cache_allowed(levels: tuple[LevelProfile, ...], kmax: np.ndarray) -> np.ndarray:
    """(n, L) mask: non-cache levels, and cache levels no deeper than the prompt's hit (similarity bound)."""
    skip = np.array([parse_level(lp.level, 1000).resume_step for lp in levels])
    return skip[None, :] <= kmax[:, None]


def chooser(levels: tuple[LevelProfile, ...]) -> Predictor:
    """The router's predictor with this profile's costs (seconds per image at peak batch), for `choose`."""
    names = tuple(lp.level for lp in levels)
    costs = level_costs(parse_levels(list(names), 1000), 1000, {lp.level: 1.0 / lp.peak_throughput for lp in levels})
    return Predictor(encoder="sim", dim=1, model="sim", steps=1000, levels=names,
                     thresholds=Thresholds("sim", ()), ridge_levels=(), ridge_w=np.zeros((0, 1)),
                     ridge_b=np.zeros(0), cache_lines={}, costs=costs)


def cheapest_first(levels: tuple[LevelProfile, ...]) -> list[int]:
    """Level indices in the order argus.prompt.predictor.Predictor.choose tries them (asked, not copied)."""
    pred, names = chooser(levels), [lp.level for lp in levels]
    left, order = set(names), []
    while left:
        pick = pred.choose({n: 100.0 for n in left}, 50.0)
        pick = pick if pick in left else sorted(left, key=names.index)[0]
        order.append(names.index(pick))
        left.discard(pick)
    return order


def optimal_levels(predicted: np.ndarray, levels: tuple[LevelProfile, ...], floor: float,
                   kmax: np.ndarray) -> np.ndarray:
    """Vectorized Predictor.choose: the first level, cheapest first, with predicted quality >= floor.

    Cache levels deeper than the prompt's hit are not offered (the predictor only predicts cache
    levels the similarity index allows); full quality when nothing qualifies.
    """
    order = np.array(cheapest_first(levels))
    ok = (predicted >= floor) & cache_allowed(levels, kmax)
    ok[:, [lp.level for lp in levels].index(FULL)] = True
    first = np.argmax(ok[:, order], axis=1)
    return order[first]


def draw(model: PromptSource, levels: tuple[LevelProfile, ...], floor: float, n: int,
         rng: np.random.Generator) -> Prompts:
    """Draw n prompts, their true qualities and the predictor's optimal level."""
    return model.draw(levels, floor, n, rng)


def _draw_synthetic(model: PromptModel, levels: tuple[LevelProfile, ...], floor: float, n: int,
                    rng: np.random.Generator) -> Prompts:
    ks = np.array(sorted(model.hits))
    kmax = rng.choice(ks, size=n, p=np.array([model.hits[k] for k in ks]))
    z = rng.gamma(model.steps_shape, 1.0 / model.steps_shape, size=n)
    q = quality_table(model, levels, kmax, z)
    pred = q if model.predictor_noise_pp == 0 else q + rng.normal(0.0, model.predictor_noise_pp, q.shape)
    shown = np.where(cache_allowed(levels, kmax), pred, np.nan)  # it predicts cache levels up to the hit only
    return Prompts(quality=q, optimal=optimal_levels(pred, levels, floor, kmax), kmax=kmax, predicted=shown)
