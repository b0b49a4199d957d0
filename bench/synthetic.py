"""Synthetic level profiles and snapshots for tests, benchmarks and the simulator (pure; rng passed in).

Profiles follow the 84 ms/step model of ARGUS.md with the prototype's batching gain; cache levels
use the published SDXL qualities where they exist and interpolate otherwise.
"""

from __future__ import annotations

import random

import numpy as np

from argus.levels import FULL, parse_level
from argus.policy.profile import LevelProfile
from argus.policy.snapshot import Hysteresis, PromptClass, Snapshot

STEP_S = 0.084  # seconds per denoising step at batch 1 (SDXL on an A100, ARGUS.md)
BATCH_GAIN = 1.65  # batched / batch-1 throughput implied by the published numbers
N_FULL = 50

# Level sets by size, in order of increasing approximation (cache chain first, then step reduction).
LEVEL_SETS = {
    1: [FULL],
    2: [FULL, "steps-25"],
    3: [FULL, "cache-k10", "steps-25"],
    4: [FULL, "cache-k10", "cache-k25", "steps-25"],
    5: [FULL, "cache-k10", "cache-k25", "steps-35", "steps-20"],
    6: [FULL, "cache-k10", "cache-k20", "steps-35", "steps-25", "steps-20"],
    9: [FULL, "cache-k5", "cache-k10", "cache-k15", "cache-k20", "cache-k25",
        "steps-35", "steps-25", "steps-20"],
    12: [FULL, "cache-k5", "cache-k10", "cache-k15", "cache-k20", "cache-k25",
         "steps-40", "steps-35", "steps-30", "steps-25", "steps-20", "steps-15"],
}


def level_profile(name: str, load_time: float = 47.0) -> LevelProfile:
    """A profile for a cache-k<K> or steps-<S> level from the step-time model."""
    lv = parse_level(name, N_FULL)
    if lv.family == "cache":
        run = N_FULL - lv.resume_step
        quality = 100.0 - 0.34 * (N_FULL - run)  # published SDXL: 91.52% at K=25
    else:
        run = lv.steps_run(N_FULL)
        quality = 100.0 - 0.40 * (N_FULL - run)  # assumption: below caching at equal steps run
    svc = STEP_S * run
    return LevelProfile(level=name, throughput={1: 1 / svc, 8: BATCH_GAIN / svc}, service_time=svc,
                        quality=quality, model="sdxl", load_time=load_time, note="synthetic")


def random_snapshot(rng: random.Random, gpus: int, n_levels: int, load: float | None = None,
                    queues: bool = False) -> Snapshot:
    """A random snapshot: demand at `load` x full-quality capacity (random if None), random h_k."""
    names = LEVEL_SETS[n_levels]
    profiles = tuple(level_profile(n) for n in names)
    weights = [rng.random() ** 2 for _ in names]
    total = sum(weights)
    h = {n: w / total for n, w in zip(names, weights)}
    if load is None:
        load = rng.uniform(0.2, 2.6)
    demand = load * gpus * profiles[0].peak_throughput
    q = {n: float(rng.randint(0, 3 * gpus)) for n in names if rng.random() < 0.3} if queues else {}
    return Snapshot(gpus=gpus, profiles=profiles, demand=demand, h=h, throughput_target=demand * 2,
                    quality_floor=90.0, latency_slo=30.0, now=1000.0, queues=q,
                    min_full_quality=1, hysteresis=Hysteresis())


def random_classes(s: Snapshot, m: int, rng) -> Snapshot:
    """The snapshot with its demand split over m random prompt classes (argus.policy.snapshot.PromptClass):
    random per-level qualities around the level means, random optimal levels and cache-hit depths.
    `rng` is a numpy Generator."""
    names = s.levels
    skips = sorted({parse_level(n, 1000).resume_step for n in names if parse_level(n, 1000).family == "cache"})
    shares = rng.dirichlet(np.ones(m))
    out = []
    for i in range(m):
        q = {lp.level: float(min(100.0, lp.quality * rng.uniform(0.9, 1.05))) for lp in s.profiles}
        q[FULL] = 100.0
        out.append(PromptClass(name=f"c{i}", share=float(shares[i]), optimal=str(rng.choice(names)),
                               hit=int(rng.choice(skips)), quality=q))
    return s.with_(classes=tuple(out))
