"""A late batch: serve it at a faster level of the same weights rather than miss its SLO.

A worker serves any level of the weights it loaded per request (argus.levels.Level.runs_on). When the batch
it is about to start would finish after its oldest request's deadline at the requested level, it runs the
batch at the best rung of that level's ladder that still finishes in time; only if none does is the
oldest request given up (Clipper's early drop). This answers a burst the moment a queue forms, where the
control loop sees it only a rate window and a period later; the loop then moves replicas as before.

The ladder is what every prompt can take without other data: step-reduction levels of the main weights
that run fewer steps than the requested level, most steps first (a cache level needs its prompt's own hit,
a `model-*` level other weights). Pure functions: the worker (argus.worker.service) and the simulator's
kernel (argus.sim.kernel, compiled) both run `late_rung`.
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
    """The rung a batch runs at when its oldest request arrived at `oldest`: the first that finishes within
    `aim` x `slo` of it (`late_rung`), else the fastest if that still makes the SLO, else -1 (the oldest is
    lost whatever runs). Finishing by the aim, not the SLO itself, leaves the queue behind the batch room."""
    for k in range(len(times)):
        if start + times[k] - oldest <= aim * slo:
            return k
    last = len(times) - 1
    return last if start + times[last] - oldest <= slo else -1


def late_rung(start: float, oldest: float, slo: float, times) -> int:
    """The rung a batch starting at `start` runs at: 0 (its own level) if it finishes within `slo` of its
    oldest request's arrival `oldest`, else the first ladder rung k (times[k], k >= 1) that does; -1 if
    none does. `times[k]` is the batch's service time at rung k (times[0]: its own level)."""
    for k in range(len(times)):
        if start + times[k] - oldest <= slo:
            return k
    return -1
