"""How long this worker takes per denoising step, measured, and the level a late group runs at.

The worker times every sub-batch it runs (seconds per step at that batch size, an exponential average), so
it can tell before starting a group whether the group finishes by its requests' deadlines
(argus.policy.lateness: a late group runs at the first rung of its level's ladder that makes the earliest
deadline it still can). Before any measurement at a batch size the nearest measured size is scaled by the
batch ratio (a batch costs at most proportionally more), and with no measurement at all nothing is moved.

It also meters its own arrivals (`ArrivalMeter`, fed from Triton's counters: what it has answered plus what
waits in its queue), so a surge past its level's speed runs at the rung that keeps up before any request is
late (argus.policy.lateness.kept_rung), as the simulator's kernel does with the same rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from argus.levels import Level
from argus.policy.lateness import RATE_WINDOW_S, SURGE, aimed_rung, kept_rung

ALPHA = 0.3  # weight of the newest timing in the per-step average
MIN_SPAN_S = 1.0  # an arrival rate needs samples at least this far apart
# Triton's per-model counters whose sum counts the requests that have reached the model (the running batch aside)
ARRIVED = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_pending_request_count")


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


class ArrivalMeter:
    """Requests per second reaching this worker over about the last `window` seconds, from samples of a
    cumulative count (answered + failed + queued + running)."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def observe(self, now: float, arrived: int) -> None:
        """Record that `arrived` requests in all had reached the worker at `now`."""
        self.samples.append((now, arrived))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()  # keep the newest sample at or before the window's start

    def rate(self) -> float | None:
        """Arrivals per second since the window's first sample; None before two samples MIN_SPAN_S apart."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 >= MIN_SPAN_S else None


def arrived_from_metrics(text: str, model: str) -> int | None:
    """The requests that have reached `model` by Triton's Prometheus text (`ARRIVED`'s sum), the batch it is
    running aside; None when the text has none of them."""
    label = f'model="{model}"'
    total, seen = 0.0, False
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in ARRIVED and label in line:
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return int(total) if seen else None


def surge_rung(clock: StepClock, rate: float | None, level: Level, rungs: Sequence[Level], n_full: int,
               batch: int) -> int:
    """`kept_rung` with the clock's estimates for full batches of `batch` at `level` (0) and each of `rungs`;
    0 without a rate or before a full batch has been timed (a guess from smaller ones would overstate it)."""
    if batch not in clock.per_step:
        return 0
    times = [clock.estimate(batch, lv.steps_run(n_full)) for lv in (level, *rungs)]
    if rate is None or len(times) < 2 or any(t is None for t in times):
        return 0
    return kept_rung(rate, batch, times, SURGE)
