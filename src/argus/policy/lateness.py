"""A late batch: serve it at a faster level of the same weights rather than miss its SLO.

A worker serves any level of the weights it loaded per request (argus.levels.Level.runs_on). When the batch
it is about to start would finish later than `AIM` x the SLO after its oldest request arrived, it runs the
batch at the first rung of that level's ladder that finishes by then; if none does, at the fastest rung, and
only if even that misses the SLO is the oldest request given up (Clipper's early drop; in production the
router's own deadline). Finishing by the aim rather than the SLO leaves the queue behind the batch room. This
answers a burst the moment a queue forms, where the control loop sees it only a rate window and a period
later; the loop then moves replicas as before. A surge well past the level's speed (3x) is answered sooner
still: once a replica's arrivals over the last RATE_WINDOW_S exceed SURGE x what its full batches serve, its
batches run at the rung that keeps up (`kept_rung`), before the queue is deep enough for any to be late.

The ladder is what every prompt can take without other data: step-reduction levels of the main weights
that run fewer steps than the requested level, most steps first (a cache level needs its prompt's own hit,
a `model-*` level other weights). Pure functions: the simulator's kernel (argus.sim.kernel, compiled) runs
`aimed_rung` on arrival times; the worker (argus.worker.pacing) runs it on the aimed deadline the router
sends (arrival + AIM x SLO: `aimed_rung(now, deadline, 0, 1, times)`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from argus.levels import Level, level_named

if TYPE_CHECKING:
    from argus.policy.profile import LevelProfile

# A request's batch runs faster once it would finish later than this share of the SLO after arrival (0.85: the
# paper setup's quality back at the shares' cap, the reload sweep 45 of 50; 0.75 before: bench/RESULTS.md)
AIM = 0.85
# A replica whose arrivals over the last RATE_WINDOW_S exceed SURGE x what its level's full batches serve runs
# its batches at the rung that keeps up, before any request is late (kept_rung; chosen on the burst sweep)
SURGE = 1.5
RATE_WINDOW_S = 10.0


def ladder(level: str, levels: Sequence[str], n_full: int = 50) -> list[str]:
    """The levels of `levels` a late batch at `level` may be served at, best first (most steps run)."""
    own = level_named(level)
    if not own.shares_main_weights:
        return []
    mine = own.steps_run(n_full)
    rungs: list[tuple[int, str]] = []
    for name in levels:
        lv: Level = level_named(name)
        if lv.family == "steps" and lv.runs_on(own) and lv.steps_run(n_full) < mine:
            rungs.append((lv.steps_run(n_full), name))
    return [name for _, name in sorted(rungs, reverse=True)]


def aimed_rung(start: float, oldest: float, slo: float, aim: float, times) -> int:
    """The rung a batch starting at `start` runs at when its oldest request arrived at `oldest`: the first
    (0: its own level; `times[k]` is the batch's service time at rung k) that finishes within `aim` x `slo`
    of that arrival, else the fastest if it still makes the SLO, else -1 (the oldest is lost whatever runs)."""
    for k in range(len(times)):
        if start + times[k] - oldest <= aim * slo:
            return k
    last = len(times) - 1
    return last if start + times[last] - oldest <= slo else -1


def kept_rung(rate: float, batch: int, times, surge: float) -> int:
    """The rung a replica runs at while its arrivals surge: 0 while its own level's full batches (`batch`
    requests in `times[0]`) serve at least 1/`surge` of `rate` (arrivals per second at this replica), else the
    first rung whose full batches keep up with `rate`, else the fastest. A queue that grows that fast will be
    late, however short it is now."""
    if rate * times[0] <= surge * batch:
        return 0
    for k in range(len(times)):
        if batch >= rate * times[k]:
            return k
    return len(times) - 1


def fastest_rung(level: str, levels: Sequence[str], throughput: Mapping[str, float]) -> str:
    """The level of `level`'s ladder (itself included) with the highest `throughput` (peak requests/s)."""
    return max([level] + [r for r in ladder(level, levels) if r in throughput], key=lambda x: throughput[x])


def overload_shares(replicas: Mapping[str, int], throughput: Mapping[str, float], levels: Sequence[str],
                    rate: float) -> dict[str, float]:
    """The router's shares once `rate` (arrivals/s) passes what the allocation serves at its own levels.
    Once it reaches what every replica serves at the fastest rung of its ladder: each level's capacity at that
    rung, over the allocation's. A replica kept at a slow level (the full-quality minimum) would otherwise get a
    share sized to its slow batches while the others' queues overflow; with this one its arrivals outrun its
    level's speed as much as the others', and the surge rule runs its batches at the fastest rung. Between the
    two, each level gets its own capacity plus the same fraction of its rungs' extra speed, up to SURGE x its own
    capacity: a level with no faster rung (steps-20) gets what it serves, and the excess goes to the replicas whose
    late batches run faster (at own shares steps-20's queue overflowed in 2x bursts while full-quality replicas had
    rungs to spare), but not so much that the surge rule runs all their batches at a rung (that cost the paper
    setup 0.2-0.3 points of quality for 0.3 violations/min: bench/RESULTS.md). At or below the own capacity: each
    level's own capacity. Empty when nothing runs."""
    own, fast = {}, {}
    for name, n in replicas.items():
        if n > 0 and throughput.get(name, 0.0) > 0:
            own[name] = n * throughput[name]
            fast[name] = n * throughput[fastest_rung(name, levels, throughput)]
    own_total, span = sum(own.values()), sum(fast.values()) - sum(own.values())
    x = 1.0 if span <= 0 else min(max((rate - own_total) / span, 0.0), 1.0)
    cap = {k: own[k] + x * (fast[k] - own[k]) for k in own}
    if x < 1.0:
        cap = {k: min(v, SURGE * own[k]) for k, v in cap.items()}
    total = sum(cap.values())
    return {k: round(v / total, 6) for k, v in cap.items()} if total > 0 else {}


def elastic_full_quality(gpus: int, throughput: Mapping[str, float], levels: Sequence[str], rate: float,
                         demand: float, full: str) -> int | None:
    """How many full-quality replicas a plan keeps when its late rungs carry the headroom; None: no such floor.

    With late rungs a full-quality replica is elastic: while the arrivals are at their rate it serves its own
    level, at their peaks its late batches run at the rungs of its ladder. Sized on the planned demand (the
    headroom on the smoothed rate's envelope) the plan gives those replicas up for the fastest level it has
    (the paper setup in place: 1 + 7 steps-20 at 390 q/min, 89.8 %), where 2 + 6 serve the plateau's rate at
    their own speeds and its peaks at their rungs (90.5 %, no violation; bench/RESULTS.md, "elastic").
    The floor is the most full-quality replicas whose own capacity, with every other replica at the fastest
    rung of `full`'s ladder, still serves `rate`: floor((gpus x T_fast - rate) / (T_fast - T_full)). None where
    it adds nothing or cannot hold: `full` has no faster rung; the planned `demand` passes what every replica
    serves at that rung (the rungs cannot carry the headroom: the plan's overload model decides); or every
    replica at full quality serves `rate` (the plan runs them all, or keeps a replica warm: keepWarm decides)."""
    own = throughput.get(full, 0.0)
    if own <= 0:
        return None
    fast = throughput[fastest_rung(full, levels, throughput)]
    if fast <= own or demand > gpus * fast:
        return None
    n = math.floor((gpus * fast - rate) / (fast - own) + 1e-9)
    return n if 0 <= n < gpus else None


def in_flight_limits(profiles: Sequence[LevelProfile], levels: Sequence[str], slo: float) -> dict[str, float]:
    """Per level of `profiles`, the requests in flight per replica it finishes
    within `slo` at the fastest rung of its ladder: that rung's peak throughput x (the SLO less its full batch's
    time). Past it a request sent there is lost whatever the worker runs, so the router places it at its next
    level with room (`PolicyDocument.max_in_flight`): a level with no faster rung (steps-20) no longer drops the
    excess of a burst while a replica whose rungs would serve it has room."""
    by = {p.level: p for p in profiles}
    peaks = {p.level: p.peak_throughput for p in profiles}
    out = {}
    for p in profiles:
        fast = by[fastest_rung(p.level, levels, peaks)]
        peak = fast.peak_throughput
        if peak <= 0:
            continue
        batch = max(b for b, t in fast.throughput.items() if t == peak)
        out[p.level] = round(peak * max(slo - batch / peak, 0.0), 3)
    return out
