"""How long this worker takes per denoising step, measured, and the level a late group runs at.

The worker times every sub-batch it runs (seconds per step at that batch size, an exponential average), so
it can tell before starting a group whether the group finishes by its requests' deadlines
(argus.policy.lateness: a late group runs at the first rung of its level's ladder that makes the earliest
deadline it still can). Before any measurement at a batch size the nearest measured size is scaled by the
batch ratio (a batch costs at most proportionally more), and with no measurement at all nothing is moved.
"""

from __future__ import annotations

from collections.abc import Sequence

from argus.levels import Level
from argus.policy.lateness import aimed_rung

ALPHA = 0.3  # weight of the newest timing in the per-step average


class StepClock:
    """Seconds per denoising step per batch size, from the worker's own runs."""

    def __init__(self) -> None:
        self.per_step: dict[int, float] = {}

    def record(self, batch: int, steps: int, seconds: float) -> None:
        """Fold in one sub-batch of `batch` requests that ran `steps` steps in `seconds`."""
        if batch < 1 or steps < 1 or seconds <= 0:
            return
        x = seconds / steps
        old = self.per_step.get(batch)
        self.per_step[batch] = x if old is None else (1 - ALPHA) * old + ALPHA * x

    def estimate(self, batch: int, steps: int) -> float | None:
        """Expected seconds for `batch` requests running `steps` steps; None before any measurement."""
        if not self.per_step:
            return None
        if batch in self.per_step:
            return self.per_step[batch] * steps
        near = min(self.per_step, key=lambda b: (abs(b - batch), -b))
        return self.per_step[near] * steps * max(1.0, batch / near)


def rung_for(now: float, deadlines: Sequence[float], times: Sequence[float | None]) -> int:
    """The rung (index in `times`: 0 the group's own level, then its ladder) a group runs at.

    The first rung that finishes by the earliest deadline that some rung can still make (a request no rung
    can save is late whatever runs; the others may not be); the fastest rung when none can be saved; 0 when
    a time is unknown or no request has a deadline.
    """
    if not deadlines or len(times) < 2 or any(t is None for t in times):
        return 0
    for d in sorted(deadlines):
        k = aimed_rung(now, d, 0.0, 1.0, times)  # the deadline is already the aim: finish by it
        if k >= 0:
            return k
    return len(times) - 1


def group_rung(clock: StepClock, now: float, deadlines: Sequence[float], level: Level,
               rungs: Sequence[Level], n_full: int, batch: int) -> int:
    """`rung_for` with the clock's estimates for `batch` requests at `level` (0) and each of `rungs`."""
    times = [clock.estimate(batch, lv.steps_run(n_full)) for lv in (level, *rungs)]
    return rung_for(now, deadlines, times)
