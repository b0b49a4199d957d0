"""The built-in demo service for `argus up` without `-f`: the world model (`world_manifest()`), and the same
service on the tiny random-weight model (`TINY_MANIFEST`) for fast tests where quality is not the point.

The world model is trained by `argus train-model` on the compositional world (`argus.world`), bundled under
`argus/data/models/world-sd` (model card: its README.md) and loaded through `model.weightsPath` like real SD
weights, with its measured level profile and predictor (`argus/data/predictors/world-sd.*`). An install
without the bundled weights (a trimmed wheel) falls back to the tiny model.
"""

from __future__ import annotations

import copy
from pathlib import Path

from argus.levels import FULL

DATA = Path(__file__).resolve().parents[1] / "data"
WORLD_MODEL = DATA / "models" / "world-sd"
WORLD_LEVELS = DATA / "predictors" / "world-sd.levels.json"
WORLD_PREDICTOR = DATA / "predictors" / "world-sd.predictor.json"
TINY_LEVELS = DATA / "predictors" / "demo-tiny.levels.json"

TINY_MANIFEST = {
    "apiVersion": "argus.dev/v1alpha1",
    "kind": "T2IService",
    "metadata": {"name": "demo"},
    "spec": {
        "model": {"name": "tiny-sd", "steps": 20, "height": 64, "width": 64},
        "levels": [FULL, "cache-k5", "cache-k10", "steps-10", "steps-5"],
        "throughputTarget": 1.0,
        "qualityFloor": 90,
        "gpus": 2,
        "latencySLO": 20,
        "controlPeriod": 5,
        # The demo's load changes within seconds (a few-minute trace); give capacity back on that scale.
        "scaleDownHalfLife": 10,
        # Its bursts last a minute or two and a slot reloads in ~10-20 s: a move must pay back within a minute
        # (a longer one stretches the horizon as it lasts; argus.policy.moves).
        "burstHorizon": 60,
        # An idle cheap slot left from a burst goes back to full quality after a minute (the production default,
        # 30 minutes, is for bursts that recur on that scale).
        "keepWarm": 60,
    },
}


def world_manifest() -> dict:
    """The demo service on the world model (weights loaded through `model.weightsPath`, like real SD)."""
    from argus.world.model import recommended_guidance

    m = copy.deepcopy(TINY_MANIFEST)
    m["spec"]["model"] = {"name": "world-sd", "steps": 20, "height": 64, "width": 64,
                          "weightsPath": str(WORLD_MODEL), "guidanceScale": recommended_guidance(WORLD_MODEL)}
    return m


DEMO_MANIFEST = world_manifest() if (WORLD_MODEL / "model_index.json").is_file() else TINY_MANIFEST
