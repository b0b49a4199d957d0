"""Builders shared by the policy tests: snapshots over the bundled SDXL profile."""

from __future__ import annotations

from argus.policy.profile import load_default_profile
from argus.policy.snapshot import Hysteresis, Snapshot

SDXL = load_default_profile()
CACHE = ["cache-k0", "cache-k5", "cache-k10", "cache-k15", "cache-k20", "cache-k25"]
ALL = [lp.level for lp in SDXL.levels]


def snap(gpus: int = 8, levels: list[str] | None = None, demand: float = 3.0,
         h: dict[str, float] | None = None, **kw) -> Snapshot:
    """An SDXL snapshot; h defaults to the prototype's hit mix (22.5% misses)."""
    levels = levels or ALL
    if h is None:
        h = {"cache-k0": 0.225, "cache-k5": 0.15, "cache-k10": 0.2, "cache-k15": 0.15,
             "cache-k20": 0.1, "cache-k25": 0.175}
    base = dict(gpus=gpus, profiles=tuple(SDXL.select(levels)), demand=demand, h=h, throughput_target=100.0,
                quality_floor=90.0, latency_slo=30.0, now=1000.0, hysteresis=Hysteresis())
    base.update(kw)
    return Snapshot(**base)
