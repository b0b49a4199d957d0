"""Demand estimation: time-aware EWMA of the observed arrival rate times a headroom factor.

Planned demand = headroom (1.2) x the smoothed rate. The headroom is the band the estimate tolerates
without reacting: an observation within [rate / headroom, rate x headroom] (the noise of a steady load)
moves the EWMA with `half_life_s` both ways, so a steady load is planned at headroom x its mean, as
documented. A rise beyond the band is taken at once (`burst_follow`); a drop beyond twice the band
(headroom^2: a spike taken at once leaves the steady level one band below) is followed with
`release_half_life_s` (capacity is given back slowly after a burst). Before this rule, every
upward fluctuation was taken at once and released slowly, so the plan sat on the noise's upper
envelope: ~1.3x the mean at the simulated plateau, not 1.2x (tests/policy/test_demand.py).

Ray Serve style: the policy is pure, `(state, observation, now) -> (estimate, new_state)`; the
caller keeps the state (the control loop stores it with the service) and passes it back next time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


# The release half-life the simulator measured best for the paper setup (bench/RESULTS.md, simulator):
# it equals Hysteresis.amortize_s, the horizon over which the optimizer charges a reload.
RELEASE_HALF_LIFE_S = 300.0
DEFAULT_HEADROOM = 1.2  # DiffServe's; the T2IService field `headroom` sets it per service
NOISE_BAND = 1.2  # the band a steady load's windowed rate moves in without the estimate following at once


class DemandError(ValueError):
    """An observation or setting is invalid; the message names the field."""


@dataclass(frozen=True)
class DemandSettings:
    """How quickly the estimate follows the observations and how much headroom it adds."""

    half_life_s: float = 30.0  # an observation's weight halves after this many seconds
    headroom: float = DEFAULT_HEADROOM  # multiplier on the smoothed rate (DiffServe's 1.2x)
    burst_follow: bool = True  # a rate above the smoothed one is taken at once: under-provisioning costs SLOs
    # Half-life of decreases of the rate (None: half_life_s): how fast capacity is given back after a
    # burst. A replica reload idles a GPU for its load time and the optimizer amortizes that over
    # Hysteresis.amortize_s (300 s), so giving capacity back faster than that buys churn, not quality
    # (Kubernetes' HPA keeps a 300 s scale-down stabilization window for the same reason). The h_k
    # shares keep half_life_s: a shift in the prompt mix must still switch strategies quickly.
    release_half_life_s: float | None = None
    # Noise band (None: the headroom): observations within [rate / band, rate x band] only move the EWMA.
    # Apart from the headroom so that a service planning with little headroom (T2IService `headroom`, the
    # quality/violation trade) still ignores the windowed rate's noise.
    band: float | None = None
    # Dead band: an observation within this fraction of the smoothed rate leaves it where it is. A steady
    # load's windowed rate jitters by a percent or two from scrape to scrape; followed, every period re-plans
    # a slightly different policy (a new version for the router, a status write) for nothing.
    deadband: float = 0.03

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_s) and self.half_life_s > 0):
            raise DemandError(f"half_life_s: {self.half_life_s} must be > 0")
        r = self.release_half_life_s
        if r is not None and not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise DemandError(f"release_half_life_s: {r} must be > 0 (or None)")
        if not (math.isfinite(self.headroom) and self.headroom >= 1.0):
            raise DemandError(f"headroom: {self.headroom} must be >= 1")
        if self.band is not None and not (isinstance(self.band, (int, float)) and math.isfinite(self.band)
                                          and self.band >= 1.0):
            raise DemandError(f"band: {self.band} must be >= 1 (or None)")


@dataclass(frozen=True)
class DemandState:
    """The smoothed rate (requests/s) and the time it refers to; empty before the first observation."""

    rate: float | None = None
    at: float | None = None
    shares: dict[str, float] = field(default_factory=dict)  # smoothed h_k
    shares_at: float | None = None  # the time `shares` refers to (kept apart: both may update at one `now`)


def estimate(state: DemandState, observed_rate: float, now: float,
             settings: DemandSettings = DemandSettings()) -> tuple[float, DemandState]:
    """Fold one observed arrival rate into the EWMA; return (rate with headroom, new state)."""
    if not (isinstance(observed_rate, (int, float)) and math.isfinite(observed_rate) and observed_rate >= 0):
        raise DemandError(f"observed_rate: {observed_rate!r} must be a finite number >= 0")
    if not math.isfinite(now):
        raise DemandError(f"now: {now!r} must be finite")
    if state.rate is None or state.at is None:
        smoothed = float(observed_rate)
    elif now < state.at:
        raise DemandError(f"now: {now} is before the state's time {state.at}")
    else:
        band = settings.headroom if settings.band is None else settings.band
        half_life = settings.half_life_s
        if observed_rate * band * band < state.rate and settings.release_half_life_s is not None:
            # a drop beyond the band, and beyond the band above a rise just taken at once (a noise spike
            # past the band is followed at once, so the steady level is one band below it): release slowly
            half_life = settings.release_half_life_s
        alpha = 1.0 - 0.5 ** ((now - state.at) / half_life)
        smoothed = state.rate + alpha * (observed_rate - state.rate)
        if abs(observed_rate - state.rate) <= settings.deadband * state.rate:
            smoothed = state.rate
        if settings.burst_follow and observed_rate > state.rate * band:
            smoothed = max(smoothed, float(observed_rate))  # a rise beyond the band: at once
    return smoothed * settings.headroom, DemandState(rate=smoothed, at=now, shares=dict(state.shares),
                                                     shares_at=state.shares_at)


def estimate_shares(state: DemandState, observed: dict[str, float], now: float,
                    settings: DemandSettings = DemandSettings()) -> tuple[dict[str, float], DemandState]:
    """Smooth the distribution of optimal levels h_k the same way; the result sums to 1 (or is empty)."""
    total = 0.0
    for k, v in observed.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise DemandError(f"observed[{k}]: {v!r} must be a finite number >= 0")
        total += v
    obs = {k: v / total for k, v in observed.items()} if total > 0 else {}
    if not state.shares or state.shares_at is None or not obs:
        mixed = obs or dict(state.shares)
    else:
        alpha = 1.0 - 0.5 ** (max(now - state.shares_at, 0.0) / settings.half_life_s)
        keys = sorted(set(obs) | set(state.shares))
        mixed = {k: (1 - alpha) * state.shares.get(k, 0.0) + alpha * obs.get(k, 0.0) for k in keys}
    norm = sum(mixed.values())
    shares = {k: v / norm for k, v in mixed.items() if v > 0} if norm > 0 else {}
    return shares, DemandState(rate=state.rate, at=state.at, shares=shares, shares_at=now)
