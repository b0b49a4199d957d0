"""Moves that pay: whether a reallocation is worth what its reloads cost, over a horizon.

A move (a change of replicas per level) idles every GPU it reloads for the new level's load time:
the replicas it removes stop serving at once, the ones it adds serve only once loaded. The optimizer
values allocations in steady state; whether the steady state is reached soon enough to pay for the
transition depends on how long the load that asks for the move lasts. `weigh` compares keeping the
allocation in force (hold) with moving, over a horizon, in a fluid model of the service:

- one pooled FIFO queue served at the allocation's capacity (sum of replicas x peak throughput; the
  router moves prompts between levels, and which prompts a level may take is the optimizer's part);
- arrivals at the smoothed arrival rate (no headroom: the horizon is what is expected to happen,
  the headroom is the optimizer's safety margin); the queue starts at the requests in flight now;
- while the move's replicas load (the slowest added level's load time), only the replicas both
  allocations have serve; after it, the new allocation's capacity (a replica added on a spare GPU
  costs nothing: make-before-break whenever the budget has room);
- a request that cannot start within the SLO is a violation and leaves the queue (what the router's
  deadline and the simulator's drop do), so the queue never holds more than the capacity can serve
  within the SLO;
- with late rungs and reloads (`rate` given to the options), a replica serves up to its fastest rung's
  speed (argus.policy.lateness), and past its level's capacity the arrivals are served at the quality of the
  rungs that keep up with them (`rung_quality`): holding full-quality replicas through a burst of minutes
  serves it as fast as reloading them would, without the reload.

Candidates are the whole move and partial moves toward it (`steps_toward`); the best of them is the
one with the fewest expected violations over the horizon (within a tie band), then the most quality
served (served requests x their expected quality). The verdict is lexicographic: that candidate is made
if it saves more than the tie band's expected violations over holding; not if it adds more; between
them, if it serves at least `QUALITY_GAIN` more quality (an idle replica moved to a better level serves
nothing more, so it stays where it is, warm for the next burst, until the service's keepWarm has passed) and
keeps up with the arrivals while it loads (the smooth rate lets a queue build within the tie band that a
burst's real arrivals overflow; the best such candidate is taken: a burst moves one replica at a time where
there is room for one).
The horizon is the service's burst horizon (the T2IService field `burstHorizon`), stretched to how long
demand has exceeded the allocation's capacity so far (a burst that has lasted t is expected to last about
t more), up to `MAX_STRETCH` times the setting. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argus.policy.lateness import SURGE, fastest_rung, ladder
from argus.policy.profile import LevelProfile

MAX_STRETCH = 10.0  # the horizon grows with an ongoing overload up to this multiple of the setting
STEPS = 400  # fluid-model time steps over the horizon
TIE = 1.0  # expected violations: differences within max(TIE, TIE_SHARE x the larger count) are a tie
TIE_SHARE = 0.05
QUALITY_GAIN = 0.01  # a move that saves no violations must serve this much more quality (share of the hold's)


@dataclass(frozen=True)
class Option:
    """One course over the horizon: capacity while the move's replicas load, then after; quality served."""

    during: float  # requests/s served while added replicas load
    after: float  # requests/s served once they have loaded
    transition_s: float  # how long the loading lasts (0: nothing loads)
    quality_before: float  # mean expected quality (%) of what is served while loading
    quality_after: float  # ... and after
    service_s: float  # a request's time in service (capacity-weighted over the allocation's levels)


@dataclass(frozen=True)
class Outlook:
    """What the fluid model expects of one option over the horizon."""

    violations: float  # requests expected to miss the SLO (shed at the deadline)
    served: float  # requests expected to be served within it
    quality: float  # requests served or still queued at the end x their expected quality (%)
    backlog_end: float  # requests still queued at the horizon's end

    @property
    def mean_quality(self) -> float:
        """Mean expected quality (%) of the requests served or queued."""
        return self.quality / max(self.served + self.backlog_end, 1e-9)


@dataclass(frozen=True)
class Verdict:
    """Whether to move, the two outlooks it weighed and why, in numbers."""

    choice: int | None  # index of the chosen candidate move; None: hold
    horizon_s: float
    hold: Outlook
    change: Outlook  # the outlook of the best candidate, chosen or not
    reason: str

    @property
    def move(self) -> bool:
        """Whether a move was chosen."""
        return self.choice is not None


def horizon(setting_s: float, overload_since: float | None, now: float) -> float:
    """The horizon a move's gain is counted over: the setting, or how long demand has exceeded the
    allocation's capacity so far if longer, up to MAX_STRETCH times the setting."""
    elapsed = 0.0 if overload_since is None else max(0.0, now - overload_since)
    return min(max(setting_s, elapsed), MAX_STRETCH * setting_s)


def capacity(alloc: dict[str, int], profiles: tuple[LevelProfile, ...]) -> float:
    """Requests/s an allocation serves at its levels' peak throughput."""
    return float(sum(alloc.get(p.level, 0) * p.peak_throughput for p in profiles))


def _service_s(alloc: dict[str, int], profiles: tuple[LevelProfile, ...]) -> float:
    cap = [(alloc.get(p.level, 0) * p.peak_throughput, p.service_time) for p in profiles]
    total = sum(c for c, _ in cap)
    return sum(c * s for c, s in cap) / total if total > 0 else max((p.service_time for p in profiles), default=0.0)


def rung_capacity(alloc: dict[str, int], profiles: tuple[LevelProfile, ...]) -> float:
    """Requests/s an allocation serves with every replica at the fastest rung of its level's ladder
    (argus.policy.lateness: what late batches and surges run at, without a reload)."""
    speed = {p.level: p.peak_throughput for p in profiles}
    levels = [p.level for p in profiles]
    return float(sum(n * speed[fastest_rung(lv, levels, speed)] for lv, n in alloc.items() if n > 0 and lv in speed))


def rung_quality(alloc: dict[str, int], profiles: tuple[LevelProfile, ...], rate: float, quality: float) -> float:
    """Mean quality (%) an allocation serves `rate` at: `quality` (its plan's) while its levels keep up. Past that,
    each level takes its share of `rate` by its capacity; its replicas run the first rung of its ladder that keeps
    up (the fastest if none does): all their batches once the share is past SURGE x the level's speed (the surge
    rule), otherwise only the late ones, as many as make up the difference (argus.policy.lateness). The mean is
    over what is served: past the fastest rungs the rest waits or misses the SLO (the fluid model counts it)."""
    own = capacity(alloc, profiles)
    if rate <= own or own <= 0:
        return quality
    prof = {p.level: p for p in profiles}
    levels = [p.level for p in profiles]
    total = served = 0.0
    for lv, n in alloc.items():
        if n <= 0 or lv not in prof:
            continue
        mine = n * prof[lv].peak_throughput
        share = rate * mine / own
        rungs = [r for r in ladder(lv, levels) if r in prof]
        keeps = [r for r in rungs if n * prof[r].peak_throughput >= share]
        rung = keeps[0] if keeps else max(rungs, key=lambda r: prof[r].peak_throughput, default=lv)
        fast = n * prof[rung].peak_throughput
        if share > SURGE * mine or fast <= mine:
            done = min(share, max(fast, mine))
            total += done * prof[rung if fast > mine else lv].quality
        else:  # time-shared: a fraction x of the batches at the rung serves what the level's own speed leaves
            x = (share - mine) / (fast - mine)
            done = share
            total += (1 - x) * mine * prof[lv].quality + x * fast * prof[rung].quality
        served += done
    return total / served if served > 0 else quality


def hold_option(current: dict[str, int], profiles: tuple[LevelProfile, ...], quality: float,
                rate: float | None = None) -> Option:
    """Keeping `current`: its capacity throughout. With `rate` (late rungs on), its replicas' fastest rungs
    count (`rung_capacity`) at the quality of the rungs that keep up with it (`rung_quality`)."""
    if rate is not None:
        cap, quality = rung_capacity(current, profiles), rung_quality(current, profiles, rate, quality)
    else:
        cap = capacity(current, profiles)
    return Option(during=cap, after=cap, transition_s=0.0, quality_before=quality, quality_after=quality,
                  service_s=_service_s(current, profiles))


def switched_in_place(current: dict[str, int], proposed: dict[str, int],
                      profiles: tuple[LevelProfile, ...]) -> dict[str, int]:
    """Replicas a move adds per level that a worker given up by a level of the same model (weights) serves
    at once, switched in place (the actuator sends it the new level per request; nothing reloads)."""
    freed: dict[str, int] = {}
    for p in profiles:
        freed[p.model] = freed.get(p.model, 0) + max(current.get(p.level, 0) - proposed.get(p.level, 0), 0)
    out: dict[str, int] = {}
    for p in profiles:
        n = min(max(proposed.get(p.level, 0) - current.get(p.level, 0), 0), freed[p.model])
        if n:
            out[p.level], freed[p.model] = n, freed[p.model] - n
    return out


def move_option(current: dict[str, int], proposed: dict[str, int], profiles: tuple[LevelProfile, ...],
                hold_quality: float, move_quality: float, in_place: bool = False, rate: float | None = None) -> Option:
    """Moving from `current` to `proposed`: the replicas both have serve while the added ones load. With
    `in_place`, a replica switched to a level of its own weights serves there at once (`switched_in_place`).
    With `rate`, the rungs count as in `hold_option`, for the replicas kept while loading and after."""
    switched = switched_in_place(current, proposed, profiles) if in_place else {}
    kept = {p.level: min(current.get(p.level, 0), proposed.get(p.level, 0)) + switched.get(p.level, 0)
            for p in profiles}
    added = [p.load_time for p in profiles if proposed.get(p.level, 0) > kept[p.level]]
    if rate is None:
        during, after = capacity(kept, profiles), capacity(proposed, profiles)
    else:
        during, after = rung_capacity(kept, profiles), rung_capacity(proposed, profiles)
        hold_quality = rung_quality(kept, profiles, rate, hold_quality)
        move_quality = rung_quality(proposed, profiles, rate, move_quality)
    return Option(during=during, after=after, transition_s=max(added, default=0.0), quality_before=hold_quality,
                  quality_after=move_quality, service_s=_service_s(proposed, profiles))


def steps_toward(current: dict[str, int], proposed: dict[str, int],
                 profiles: tuple[LevelProfile, ...]) -> list[dict[str, int]]:
    """The partial moves from `current` toward `proposed`, one replica switched more each, then `proposed`.

    A partial move reloads fewer GPUs at once, so it may pay where the whole move does not. The replicas
    given up first are those whose loss hurts least (the levels with the lowest throughput per replica),
    the ones added first those that bring most (the highest); replicas for spare GPUs come first of all
    (they cost no capacity while loading)."""
    order = sorted(profiles, key=lambda p: p.peak_throughput)
    out_units = [p.level for p in order for _ in range(max(current.get(p.level, 0) - proposed.get(p.level, 0), 0))]
    in_units = [p.level for p in reversed(order) for _ in range(max(proposed.get(p.level, 0) - current.get(p.level, 0), 0))]
    spare = max(sum(proposed.values()) - sum(current.values()), 0)
    steps: list[dict[str, int]] = []
    alloc = {p.level: current.get(p.level, 0) for p in profiles}
    for i, lv in enumerate(in_units):
        alloc = dict(alloc)
        alloc[lv] += 1
        if i >= spare and i - spare < len(out_units):
            alloc[out_units[i - spare]] -= 1
        steps.append(alloc)
    final = {p.level: proposed.get(p.level, 0) for p in profiles}
    return [a for a in steps if a != final] + [final]


def outlook(opt: Option, rate: float, backlog: float, slo_s: float, horizon_s: float,
            steps: int = STEPS) -> Outlook:
    """The fluid model of `opt` over `horizon_s` (see the module docstring)."""
    slack = max(slo_s - opt.service_s, 0.0)
    dt = horizon_s / steps
    t = np.arange(steps + 1) * dt

    def served_by(u: np.ndarray) -> np.ndarray:  # cumulative capacity from 0 to u
        first = np.minimum(u, opt.transition_s)
        return opt.during * first + opt.after * np.maximum(u - opt.transition_s, 0.0)

    # the most the queue may hold at t: what the capacity serves within the slack from t
    room = (served_by(t + slack) - served_by(t)).tolist()
    loading = (t < opt.transition_s).tolist()
    # (plain floats in the loop below: numpy scalars made it ~3x slower, and it runs per candidate per period)
    q = float(backlog)
    violations = max(q - room[0], 0.0)
    q -= violations
    served_before = served_after = 0.0
    for i in range(steps):
        done = min(q + rate * dt, (opt.during if loading[i] else opt.after) * dt)
        if loading[i]:
            served_before += done
        else:
            served_after += done
        q = q + rate * dt - done
        over = max(q - room[i + 1], 0.0)
        violations += over
        q -= over
    served = served_before + served_after
    # what is still queued at the horizon's end is served after it, at the allocation's quality: counting it
    # keeps an option that defers work from looking like one that serves less
    quality = served_before * opt.quality_before + (served_after + q) * opt.quality_after
    return Outlook(violations=violations, served=served, quality=quality, backlog_end=q)


def weigh(hold: Option, candidates: list[Option], rate: float, backlog: float, slo_s: float,
          horizon_s: float, release: bool = False) -> Verdict:
    """Hold, or the candidate move that does best over the horizon (see the module docstring): fewest
    expected violations (within the tie band of the fewest), then most quality served. The reason gives
    the hold's and the chosen move's outlooks in numbers. `release`: the move gives idle replicas back to full
    quality once they have been kept warm long enough (the spec's keepWarm), so within the tie band it is made
    even when it serves no more quality."""
    h = outlook(hold, rate, backlog, slo_s, horizon_s)
    looks = [outlook(c, rate, backlog, slo_s, horizon_s) for c in candidates]
    fewest = min(o.violations for o in looks)
    near = [i for i, o in enumerate(looks) if o.violations <= fewest + max(TIE, TIE_SHARE * fewest)]
    pick = max(near, key=lambda i: (looks[i].quality, -i))
    keeps_up = True
    if h.violations - looks[pick].violations <= _tie(h, looks[pick]):
        # made for quality alone, a move must keep up with the arrivals while it loads: the fluid model's
        # smooth rate lets a queue build within the tie band that a burst's real arrivals overflow
        steady = [i for i in near if candidates[i].transition_s <= 0 or candidates[i].during >= rate]
        pick = max(steady, key=lambda i: (looks[i].quality, -i)) if steady else pick
        keeps_up = bool(steady)
    m, move = looks[pick], candidates[pick]
    tie = _tie(h, m)
    saved = h.violations - m.violations
    which = "the whole move" if pick == len(candidates) - 1 else f"partial move {pick + 1} of {len(candidates)}"
    numbers = (f"over {horizon_s:.0f} s at {rate:.3g} req/s with {backlog:.0f} queued: hold {h.violations:.1f} "
               f"violations, {h.served:.0f} served + {h.backlog_end:.0f} queued at {h.mean_quality:.1f} %; {which} "
               f"{m.violations:.1f} violations ({move.transition_s:.0f} s at {move.during:.3g} req/s while "
               f"loading), {m.served:.0f} served + {m.backlog_end:.0f} queued at {m.mean_quality:.1f} %")
    gains = m.quality > h.quality * (1 + QUALITY_GAIN)
    if saved > tie or (saved >= -tie and (gains or release) and keeps_up):
        why = (f"saves {saved:.1f} SLO violations" if saved > tie else
               f"more quality served, violations within {tie:.1f}" if gains else
               f"idle replicas kept warm long enough go back to full quality, violations within {tie:.1f}")
        return Verdict(pick, horizon_s, h, m, f"move pays: {why} {numbers}")
    why = (f"would add {-saved:.1f} SLO violations" if saved < -tie else
           f"saves no violations and leaves less than the {rate:.3g} req/s arriving while it loads" if not keeps_up
           else f"saves no violations and gains less than {QUALITY_GAIN:.0%} quality")
    return Verdict(None, horizon_s, h, m, f"held: the move {why} {numbers}")


def _tie(a: Outlook, b: Outlook) -> float:
    """Expected violations within which two outlooks are a tie."""
    return max(TIE, TIE_SHARE * max(a.violations, b.violations))
