"""The baselines Argus is compared with, one definition each; the simulator and `argus up --mode` use these.

- Clipper-HA (`ha`): every GPU at the full-quality level, every prompt served there.
- Clipper-HT (`ht`): every GPU at the highest-throughput level that needs no cache hit (any prompt can run
  there), every prompt served there.
- NIRVANA (`nirvana`): GPUs over the cache levels only, in proportion to the work the cache-hit distribution
  puts on each (each prompt at the deepest cache level its hit allows); equal shares without a distribution.
  Prompts whose optimal level is a cache level are served there; the others (no usable hit) in full.
- Proteus-like (`proteus`): not fixed. The production control period run prompt-agnostic
  (`argus.control.loop.plan(agnostic=True)`), every prompt keyed at `argus.policy.profile.agnostic_key`.

Pure: allocations and router policies from level profiles, no I/O.
"""

from __future__ import annotations

import math

from argus.levels import FULL, level_named
from argus.policy.document import PolicyDocument
from argus.policy.profile import LevelProfile, agnostic_key

FIXED = ("ha", "ht", "nirvana")  # the baselines with a fixed allocation


class BaselineError(ValueError):
    """An unknown baseline or an allocation it cannot make; the message names it."""


def fastest_without_hit(profiles: tuple[LevelProfile, ...] | list[LevelProfile]) -> str:
    """Clipper-HT's level: the highest peak throughput among levels any prompt can run (no cache hit needed)."""
    usable = [lp for lp in profiles if not level_named(lp.level).needs_cache_hit]
    if not usable:
        raise BaselineError("no level that runs without a cache hit")
    return agnostic_key(usable)


def proportional(work: dict[str, float], gpus: int) -> dict[str, int]:
    """Split GPUs in proportion to work (largest remainder, first level on ties), at least one at the
    full-quality level (prompts without a usable hit run there)."""
    total = sum(work.values())
    if total <= 0 or gpus < 1:
        raise BaselineError("proportional: needs positive work and at least one GPU")
    exact = {k: gpus * v / total for k, v in work.items()}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[: gpus - sum(out.values())]:
        out[k] += 1
    if out.get(FULL, 0) == 0:
        donor = max(out, key=lambda k: out[k])
        out[donor] -= 1
        out[FULL] = 1
    return out


def nirvana_work(profiles: tuple[LevelProfile, ...] | list[LevelProfile],
                 hits: dict[int, float] | None) -> dict[str, float]:
    """GPU-seconds per request each cache level gets from the hit distribution (share of prompts whose
    deepest cache hit is K steps): a prompt runs at the deepest cache level with K' <= K. Without a
    distribution every cache level gets the same work."""
    cache = {level_named(lp.level).resume_step: lp for lp in profiles if level_named(lp.level).family == "cache"}
    if 0 not in cache:
        raise BaselineError(f"nirvana: the levels must include {FULL}")
    if not hits:
        return {lp.level: 1.0 for lp in cache.values()}
    work: dict[str, float] = {}
    for k, share in hits.items():
        lp = cache[max(kk for kk in cache if kk <= k)]
        work[lp.level] = work.get(lp.level, 0.0) + share / lp.peak_throughput
    return work


def allocation(mode: str, profiles: tuple[LevelProfile, ...] | list[LevelProfile], gpus: int,
               hits: dict[int, float] | None = None) -> dict[str, int]:
    """Replicas per level of a fixed baseline (levels without replicas left out)."""
    if mode == "ha":
        return {FULL: gpus}
    if mode == "ht":
        return {fastest_without_hit(profiles): gpus}
    if mode == "nirvana":
        return {k: v for k, v in proportional(nirvana_work(profiles, hits), gpus).items() if v > 0}
    raise BaselineError(f"unknown fixed baseline {mode!r}; expected one of {', '.join(FIXED)}")


def redirection(mode: str, profiles: tuple[LevelProfile, ...] | list[LevelProfile]) -> dict[str, dict[str, float]]:
    """Where the router sends a prompt of each optimal level, for a fixed baseline."""
    levels = [lp.level for lp in profiles]
    if mode == "ha":
        return {lv: {FULL: 1.0} for lv in levels}
    if mode == "ht":
        fast = fastest_without_hit(profiles)
        return {lv: {fast: 1.0} for lv in levels}
    if mode == "nirvana":
        return {lv: ({lv: 1.0} if level_named(lv).family == "cache" else {FULL: 1.0}) for lv in levels}
    raise BaselineError(f"unknown fixed baseline {mode!r}; expected one of {', '.join(FIXED)}")


def fixed_plan(mode: str, service: str, profiles: tuple[LevelProfile, ...] | list[LevelProfile], gpus: int,
               data_plane: dict, epoch: str = "", hits: dict[int, float] | None = None) -> tuple[dict[str, int], PolicyDocument]:
    """Allocation and router policy of a fixed baseline; `data_plane` is the service's per-service router
    settings (T2IServiceSpec.data_plane())."""
    alloc = allocation(mode, profiles, gpus, hits)
    doc = PolicyDocument(version=1, epoch=epoch, service=service, **data_plane, levels=[lp.level for lp in profiles],
                         allocation=alloc, redirection=redirection(mode, profiles),
                         reason=f"static baseline mode {mode}", level_quality={lp.level: lp.quality for lp in profiles})
    return alloc, doc
