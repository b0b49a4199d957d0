"""A late batch: serve it at a faster level of the same weights rather than miss its SLO.

A worker serves any level of the weights it loaded per request (argus.levels.Level.runs_on). When the batch
it is about to start would finish later than `AIM` x the SLO after its oldest request arrived, it runs the
batch at the first rung of that level's ladder that finishes by then; if none does, at the fastest rung, and
only if even that misses the SLO is the oldest request given up (Clipper's early drop; in production the
router's own deadline). Finishing by the aim rather than the SLO leaves the queue behind the batch room. This
answers a burst the moment a queue forms, where the control loop sees it only a rate window and a period
later; the loop then moves replicas as before.

The ladder is what every prompt can take without other data: step-reduction levels of the main weights
that run fewer steps than the requested level, most steps first (a cache level needs its prompt's own hit,
a `model-*` level other weights). Pure functions: the simulator's kernel (argus.sim.kernel, compiled) runs
`aimed_rung` on arrival times; the worker (argus.worker.pacing) runs it on the aimed deadline the router
sends (arrival + AIM x SLO: `aimed_rung(now, deadline, 0, 1, times)`).
"""

from __future__ import annotations

from collections.abc import Sequence

from argus.levels import Level, level_named

AIM = 0.75  # a request's batch runs faster once it would finish later than this share of the SLO after arrival


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

