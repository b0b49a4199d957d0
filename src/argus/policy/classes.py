"""Prompt classes: keyed by cache-hit depth and step sensitivity, valued by profiled per-prompt qualities.

The optimizer plans per class (argus.policy.snapshot.PromptClass): a class is the prompts with the same
cache-hit depth K (the deepest cache level their most similar cached prompt allows) and the same
sensitivity bucket (how much they lose to step reduction, relative to the profile's mean loss at the
most approximate step level). Its expected quality at each level is the mean of the profiled per-prompt
qualities of its members (the predictor's training data, or a simulated population); its optimal level
is its members' most common one.
"""

from __future__ import annotations

import numpy as np

from argus.levels import parse_level
from argus.policy.profile import LevelProfile
from argus.policy.snapshot import PromptClass

# Buckets of step sensitivity z = (100 - q_S) / (100 - Q_S) at the most approximate steps level S
# (1 = the profile's mean loss); finer at the sensitive end, where full-quality capacity is rationed.
SENSITIVITY_EDGES = (0.5, 0.85, 1.35, 2.0)


def sensitivity(predicted: np.ndarray, levels: tuple[LevelProfile, ...]) -> np.ndarray:
    """Relative step-reduction loss of each prompt (rows of predicted quality per level); 1 without steps levels."""
    steps = [j for j, lp in enumerate(levels) if parse_level(lp.level, 1000).family == "steps"]
    if not steps:
        return np.ones(len(predicted))
    j = min(steps, key=lambda j: levels[j].quality)
    loss = max(100.0 - levels[j].quality, 1e-9)
    return (100.0 - predicted[:, j]) / loss


def keys(hits: np.ndarray, predicted: np.ndarray, levels: tuple[LevelProfile, ...]) -> list[str]:
    """Class name of each prompt: 'k<hit>-s<bucket>'."""
    b = np.searchsorted(SENSITIVITY_EDGES, sensitivity(predicted, levels))
    return [f"k{int(k)}-s{int(s)}" for k, s in zip(hits, b)]


def table(hits: np.ndarray, quality: np.ndarray, predicted: np.ndarray, optimal: np.ndarray,
          levels: tuple[LevelProfile, ...]) -> dict[str, PromptClass]:
    """Classes of a profiled population: expected quality per level (mean over members; cache levels
    deeper than the class's hit are left out), the members' most common optimal level, their share."""
    names = keys(hits, predicted, levels)
    skip = np.array([parse_level(lp.level, 1000).resume_step for lp in levels])
    out = {}
    arr = np.array(names)
    for name in sorted(set(names)):
        m = arr == name
        hit = int(hits[m][0])
        mean = quality[m].mean(axis=0)
        opt = np.bincount(optimal[m], minlength=len(levels)).argmax()
        out[name] = PromptClass(name=name, share=float(m.mean()), optimal=levels[opt].level, hit=hit,
                                quality={lp.level: round(float(mean[j]), 4) for j, lp in enumerate(levels)
                                         if skip[j] <= hit})
    return out
