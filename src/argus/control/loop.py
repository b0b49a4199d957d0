"""One control period as a pure function: (spec, observed metrics, last state, now) -> Plan.

Shared by the operator (Kubernetes actuator) and the local runtime (process actuator). No I/O, no
clock: the caller reads metrics and status, passes `now`, and applies the Plan it gets back.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from argus.control.narrate import reallocation_message
from argus.control.observed import MetricsSnapshot
from argus.control.state import ControlState
from argus.levels import FULL
from argus.policy.decision import Decision, to_policy_document
from argus.policy.demand import NOISE_BAND, DemandSettings, DemandState, estimate, estimate_shares
from argus.policy.document import PolicyDocument
from argus.policy import moves
from argus.policy.lateness import elastic_full_quality, in_flight_limits, overload_shares
from argus.policy.optimizer import evaluate, solve
from argus.policy.profile import LevelProfile, agnostic_key
from argus.policy.snapshot import Hysteresis, PromptClass, Snapshot
from argus.spec import T2IServiceSpec

DWELL_PERIODS = 4.0  # a new allocation is kept this many control periods before a non-urgent change
GROWTH_SIGMAS = 3.0  # a queue's growth counts as a burst's start beyond this many sigmas of arrival noise
MAX_PARTIAL_MOVES = 5  # partial moves weighed besides the whole one: 1, 2, 4, 8 and 16 replicas switched
DWELL_RELOADS = 3.0  # ... and at least this many replica reload times: undoing a move sooner costs more than it gains
ELASTIC_CALM_PERIODS = 2.0  # the elastic floor adds full-quality replicas once the allocation has stood this long
RECENT_RELOADS = 5  # measured reloads (change -> its replicas all ready) the loop plans reloads with
RELOAD_GAP_PERIODS = 3.0  # a reload is timed only by periods at most this many control periods apart
LOAD_PATIENCE = 3.0  # loading replicas hold the allocation this many load times (at least 2 periods), no longer


def dwell_s(period: float, profiles: tuple[LevelProfile, ...], in_place: bool = False) -> float:
    """How long a new allocation is kept unless it falls short: DWELL_PERIODS control periods, and at least
    DWELL_RELOADS of the slowest level's load time (a move idles each moved GPU for that long; a loop that
    undoes it within about one reload pays twice for nothing). With `in_place`, levels that share their model
    with another level are reached without a reload and add no dwell."""
    return max(DWELL_PERIODS * period, DWELL_RELOADS * max((p.load_time for p in reloading(profiles, in_place)),
                                                           default=0.0))


def reloading(profiles: tuple[LevelProfile, ...], in_place: bool) -> tuple[LevelProfile, ...]:
    """The levels a replica switch must reload to reach: all of them, or with `in_place` switches (a worker
    serves any level of the weights it loaded, `argus.worker.service`) those whose model no other level has."""
    if not in_place:
        return profiles
    models = [p.model for p in profiles]
    return tuple(p for p in profiles if models.count(p.model) == 1)


@dataclass(frozen=True)
class Plan:
    """What to apply after one period: replicas, the router's policy, the new state and what to tell people."""

    allocation: dict[str, int]
    policy: PolicyDocument
    state: ControlState
    changed: bool  # replicas differ from the last state's
    policy_changed: bool  # the policy document differs (a new version was issued)
    event: str | None  # Event text for a reallocation (None when nothing moved)
    status: dict[str, Any] = field(default_factory=dict)  # observation fields for .status
    decision: Decision | None = None  # None when the last allocation was kept without solving
    reason: str = ""
    progressing: bool = False  # kept while replicas of the allocation in force load (see plan's `loading`)


def prior_h(levels: list[str]) -> dict[str, float]:
    """h_k before any traffic was seen: every level equally likely to be a prompt's optimal one."""
    return {lv: 1.0 / len(levels) for lv in levels}


def with_measured_reloads(profiles: tuple[LevelProfile, ...], state: ControlState) -> tuple[LevelProfile, ...]:
    """Each level's load time at least the slowest of the last RECENT_RELOADS reloads measured on this
    service (a change to its added replicas all ready, at control-period resolution): a move's reloads are
    weighed at what they take where the service runs, not only at what the profile measured."""
    if not state.reload_times:
        return profiles
    took = max(state.reload_times[-RECENT_RELOADS:])
    return tuple(replace(p, load_time=max(p.load_time, took)) for p in profiles)


def with_reload_times(state: ControlState, seconds: tuple[float, ...]) -> ControlState:
    """`state` with reloads measured by a driver added (the local runtime times each worker process from its
    start to ready, boot included); the last RECENT_RELOADS are kept, as for the reloads the loop times."""
    if not seconds:
        return state
    times = (*state.reload_times, *(round(max(0.0, t), 3) for t in seconds))[-RECENT_RELOADS:]
    return replace(state, reload_times=times)


def _reload_clock(state: ControlState, loading: int, now: float, patience_s: float,
                  period_s: float) -> tuple[ControlState, int]:
    """The reload measurement after this period's readiness, and the loading count the plan may wait on.

    A reload started at a change that added replicas ends at the first period that sees none loading: its
    duration is recorded (an upper bound, to the control period), unless the last period was more than
    RELOAD_GAP_PERIODS periods ago (the loop was not running: when the replicas became ready is unknown).
    Replicas still not ready `patience_s` after the change (unschedulable pods, a crash-looping worker)
    are not waited on any longer.
    """
    if state.reload_started is None:
        return state, loading
    took = now - state.reload_started
    if loading == 0:
        seen = state.last_decision is not None and now - state.last_decision <= RELOAD_GAP_PERIODS * period_s
        state = replace(state, reload_started=None)
        return (with_reload_times(state, (took,)) if seen else state), 0
    return state, (loading if took < patience_s else 0)


def allocation_fits(alloc: dict[str, int], spec: T2IServiceSpec) -> bool:
    """Whether a stored allocation is still valid for this spec (same levels, within budget and minimum)."""
    return (bool(alloc) and set(alloc) == set(spec.levels) and sum(alloc.values()) <= spec.gpus
            and alloc.get(FULL, 0) >= spec.min_full_quality_replicas)


def plan(service: str, spec: T2IServiceSpec, profiles: tuple[LevelProfile, ...], observed: MetricsSnapshot | None,
         state: ControlState, now: float, generation: int | None = None, epoch: str = "",
         agnostic: bool = False, classes: tuple[PromptClass, ...] = (), loading: int = 0,
         in_place: bool = False) -> Plan:
    """Decide the next allocation and policy; keep the last allocation when metrics are missing.

    `epoch` names the lineage of the policy versions (the T2IService's uid; a run id locally): the
    router compares versions only within one epoch (argus.policy.document).
    `agnostic` plans as a prompt-agnostic peer (Proteus-like, a comparison mode): every prompt keyed at the
    most approximate level (so every level may serve it), the same optimizer trading mean level quality
    against capacity, and a policy that tells the router to ignore per-prompt predictions.
    `classes` plans per prompt class (argus.policy.classes; shares smoothed by the caller with
    `smooth_class_shares`); the spec's `qualityWeight` scales quality against capacity in the optimizer's objective.
    `loading`: replicas of the allocation in force that were started and are still loading. While any is,
    the allocation is kept (`Plan.progressing`): the capacity of the last change has not arrived, queues
    measured now say nothing about it, and re-planning on them replaced still-loading replicas period
    after period (measured on the local system: no cheaper replica ever became ready in a burst).
    `in_place`: the actuator switches a replica between levels of the same model without a reload (the
    local runtime does; a Deployment per level cannot), so such moves cost no load time.
    """
    profiles = with_measured_reloads(profiles, state)
    patience = max(2.0 * spec.control_period, LOAD_PATIENCE * max((p.load_time for p in profiles), default=0.0))
    state, loading = _reload_clock(state, loading, now, patience, spec.control_period)
    levels = [p.level for p in profiles]
    fits = allocation_fits(state.allocation, spec)
    spec_changed = generation is not None and generation != state.observed_generation
    current = {lv: state.allocation.get(lv, 0) for lv in levels} if fits else {}
    status = _observed_status(observed)
    key = agnostic_key(profiles) if agnostic else None
    late = key is None and spec.late_rungs  # prompt-agnostic peers serve their levels as they are
    if observed is None and fits and not spec_changed:
        # No fresh numbers: the safest plan is the one in force; re-issue it unchanged.
        return _keep(service, spec, state, now, status, generation, epoch, key)
    if loading > 0 and fits and not spec_changed:
        return _keep(service, spec, state, now, status, generation, epoch, key,
                     reason=f"kept the allocation in force: {loading} replica(s) still loading")
    dstate = state.demand
    if observed is None:
        demand, h, queues = spec.throughput_target, prior_h(levels), {}
    else:
        demand, h, dstate = smooth_demand(state.demand, observed, levels, now, demand_settings(spec))
        queues = {lv: max(0.0, q) for lv, q in observed.queues.items() if lv in levels}
    if key is not None:
        h = {key: 1.0}
    # The dwell protects allocations planned from observations; one planned from the prior (no metrics seen
    # yet: the demand EWMA is empty) is a guess, re-planned freely once numbers arrive.
    prior_plan = state.demand.rate is None
    last_change = None if spec_changed or not fits or prior_plan else state.last_change
    if last_change is not None and last_change > now:
        last_change = now
    rate = None if observed is None or dstate.rate is None else arrival_rate(state, dstate.rate, queues, current,
                                                                             profiles, now)
    elastic = _elastic_floor(spec, profiles, levels, rate, demand, current, last_change, now) if (
        late and in_place) else None
    snap = Snapshot(gpus=spec.gpus, profiles=profiles, demand=demand, h=h,
                    throughput_target=spec.throughput_target, quality_floor=spec.quality_floor,
                    latency_slo=spec.latency_slo, now=now, current=current, queues=queues,
                    last_change=last_change, min_full_quality=max(spec.min_full_quality_replicas, elastic or 0),
                    hysteresis=Hysteresis(min_dwell_s=dwell_s(spec.control_period, profiles, in_place)),
                    classes=() if key is not None else classes, quality_weight=spec.quality_weight, in_place=in_place)
    decision, released = solve_releasing_idle(snap)
    overload_since = _overload_since(state, rate, current, profiles, now)
    # With reloads the rungs carry a burst the allocation holds through (weighed so: `weigh_move`'s rungs), and the
    # router's shares follow the arrivals as the queue's growth shows them at once; in place the allocation itself
    # follows, and the shares the smoothed rate (the growth there overfilled the full-quality replicas at 3x)
    rungs = late and not in_place
    arriving = rate if rungs else dstate.rate
    if current and rate is not None and not spec_changed and not prior_plan and decision.replicas != current:
        warm_over = _warm_over(last_change, state.approx_busy, now, spec.keep_warm)
        decision = weigh_move(snap, decision, rate, moves.horizon(spec.burst_horizon, overload_since, now),
                              release=released and warm_over, rungs=rungs)
    if elastic is not None and elastic > spec.min_full_quality_replicas:
        decision = replace(decision, reason=f"{decision.reason}; at least {elastic} {FULL} replica(s): at "
                                            f"{rate:.3g} req/s their late rungs carry the headroom")
    alloc = dict(decision.replicas)
    changed = alloc != {lv: state.allocation.get(lv, 0) for lv in levels} or not fits
    doc = to_policy_document(decision, service=service, version=state.policy_version,
                             **spec.data_plane(), generated_at=now, epoch=epoch,
                             level_quality={p.level: p.quality for p in profiles}, late_rungs=late)
    if key is not None:
        doc = doc.model_copy(update={"agnostic_key": key, "prices": {}, "shares": {}})
    elif late and arriving is not None and arriving > moves.capacity(alloc, profiles):
        # the arrivals (not the headroom the plan adds) past what the allocation serves at its levels
        doc = doc.model_copy(update={"shares": overload_shares(
            alloc, {p.level: p.peak_throughput for p in profiles}, levels, arriving)})
    if late:
        doc = doc.model_copy(update={"max_in_flight": in_flight_limits(profiles, levels, spec.latency_slo)})
    digest = _digest(doc)
    policy_changed = digest != _stored_digest(state) or state.policy_version == 0
    version = state.policy_version + 1 if policy_changed else state.policy_version
    doc = doc.model_copy(update={"version": version})
    event = None
    if changed and state.allocation:
        event = reallocation_message(state.allocation, alloc, demand=demand,
                                     old_capacity=moves.capacity(state.allocation, profiles),
                                     new_capacity=moves.capacity(alloc, profiles),
                                     old_quality=state.quality, new_quality=decision.quality,
                                     queued=sum(queues.values()), degraded=decision.degraded_rate,
                                     shed=decision.shed_rate + decision.backlog_excess)
    # the dwell starts at a change, or when observations first confirm a prior-planned allocation
    started = now if changed or (prior_plan and observed is not None) else last_change
    new_state = ControlState(allocation=alloc, policy_version=version, last_change=started,
                             last_decision=now, quality=decision.quality,
                             observed_generation=generation if generation is not None else state.observed_generation,
                             policy_digest=digest, demand=dstate, overload_since=overload_since,
                             queued=sum(queues.values()) if observed is not None else None,
                             reload_started=now if _adds_replicas(current, alloc) else state.reload_started,
                             reload_times=state.reload_times,
                             approx_busy=now if _approx_busy(decision, queues) else state.approx_busy)
    if status.get("averageQuality") is None and decision.quality is not None:
        status["averageQuality"] = round(decision.quality, 3)
    status.update(demand=round(demand, 6), plannedThroughput=round(decision.throughput, 6),
                  overload=decision.overload, message=decision.reason[:1000])
    return Plan(allocation=alloc, policy=doc, state=new_state, changed=changed, policy_changed=policy_changed,
                event=event, status=status, decision=decision, reason=decision.reason)


def _has_load(decision: Decision, queues: dict[str, float], level: str) -> bool:
    """Whether the plan puts load on `level` or requests wait there."""
    return decision.served_by_level.get(level, 0.0) > 1e-9 or queues.get(level, 0.0) >= 0.5


def _approx_busy(decision: Decision, queues: dict[str, float], full: str = FULL) -> bool:
    """Whether an approximate level has load (`_has_load`): keepWarm's clock."""
    return any(lv != full and _has_load(decision, queues, lv) for lv in decision.replicas)


def _warm_over(last_change: float | None, busy: float | None, now: float, keep_warm_s: float) -> bool:
    """Whether idle approximate replicas have been kept warm for `keep_warm_s`: since the last change and since an
    approximate level last had load (a burst the warm replicas served without a move restarts the clock)."""
    since = max((t for t in (last_change, busy) if t is not None), default=None)
    return since is None or now - since >= keep_warm_s


def weigh_move(snap: Snapshot, decision: Decision, rate: float, horizon_s: float, release: bool = False,
               rungs: bool = False) -> Decision:
    """`decision`, a partial move toward it, or the allocation in force kept: whichever pays best over the
    horizon (argus.policy.moves); the reason starts with the weighing, in numbers.
    `release`: `decision` gives idle replicas back to full quality after the spec's keepWarm, so a move that
    adds no violations is made even when it serves no more quality (`moves.weigh`'s `release`).
    `rungs`: the workers run late rungs and moves reload (a Deployment per level), so every option is weighed
    with its replicas' fastest rungs, at the quality of the rungs that keep up with the rate (`moves.hold_option`):
    a full-quality replica on its fastest rung serves as fast as a replica reloaded to that level, and the
    reload idles it meanwhile. (Counted while the queue could ride at the aim's edge, before the surge rule, the
    rungs held a 2-hour plateau out at 46.5 violations/min; with it, and their quality counted, the plateau
    moves: bench/RESULTS.md.) In place a move costs nothing and the rungs are not counted."""
    held = evaluate(snap, snap.current, "")
    if held is None:  # the allocation in force is not one the optimizer may run (a level now too slow): move
        return decision
    steps = moves.steps_toward(snap.current, decision.replicas, snap.profiles)
    steps = [steps[i] for i in sorted({min(2 ** k - 1, len(steps) - 1) for k in range(MAX_PARTIAL_MOVES)} |
                                      {len(steps) - 1})]
    made = [d for d in (decision if a == decision.replicas else evaluate(snap, a, "") for a in steps) if d is not None]
    hold_q = held.quality or 0.0
    at = rate if rungs else None
    verdict = moves.weigh(moves.hold_option(snap.current, snap.profiles, hold_q, rate=at),
                          [moves.move_option(snap.current, d.replicas, snap.profiles, hold_q, d.quality or 0.0,
                                             in_place=snap.in_place, rate=at) for d in made],
                          rate, sum(snap.queues.values()), snap.latency_slo, horizon_s, release=release)
    chosen = held if verdict.choice is None else made[verdict.choice]
    notes = [verdict.reason, *(n for n in chosen.notes if n)]
    return replace(chosen, reason="; ".join(notes), notes=notes)


def _elastic_floor(spec: T2IServiceSpec, profiles: tuple[LevelProfile, ...], levels: list[str], rate: float | None,
                   demand: float, current: dict[str, int], last_change: float | None, now: float) -> int | None:
    """The full-quality replicas the plan keeps because their late rungs carry the headroom
    (`lateness.elastic_full_quality` at the arrival rate), in place only: with reloads the move weighing counts
    the rungs already, and a floor that follows the rate reloaded a replica at every dip (20 starts in the paper
    setup against 6). It adds a replica only once the allocation in force has stood ELASTIC_CALM_PERIODS control
    periods: a burst's first periods read a rate that jumps and falls back, and a floor that followed it moved
    replicas back to full quality in the burst's onset (in-place sweep, 2x for 1 minute: 0.00 -> 2.22 violations
    per burst minute over 3 seeds). Before that it only keeps the ones running."""
    if rate is None:
        return None
    floor = elastic_full_quality(spec.gpus, {p.level: p.peak_throughput for p in profiles}, levels, rate, demand,
                                 FULL)
    calm = last_change is None or now - last_change >= ELASTIC_CALM_PERIODS * spec.control_period
    if floor is not None and not calm:
        floor = min(floor, current.get(FULL, 0))
    return floor


def arrival_rate(state: ControlState, smoothed: float, queues: dict[str, float], current: dict[str, int],
                 profiles: tuple[LevelProfile, ...], now: float) -> float:
    """The arrival rate a move is weighed at: the smoothed rate, or, when the queue grew past one request per
    replica (every replica busy) since the last decision, the allocation's capacity plus that growth if more.
    The windowed rate lags a burst's start by the scrape and the window (75 s by default); a saturated queue's
    growth does not. (Counted only when the queue had been past one per replica at the last decision as well, a
    burst's first 15 s went unseen: a move toward quality reloaded 4 replicas 30 s into a 3x burst.)"""
    queued = sum(queues.values())
    if state.queued is None or state.last_decision is None or not now > state.last_decision or not current:
        return smoothed
    # the growth past one request per replica (fewer leave a replica idle, and the capacity overstates it)
    base = max(state.queued, float(sum(current.values())))
    if queued <= base:
        return smoothed
    cap, span = moves.capacity(current, profiles), now - state.last_decision
    # Poisson noise: in `span` a saturated allocation serves ~cap x span requests, and the arrivals of a load
    # at that rate vary by ~sqrt of it; a growth within GROWTH_SIGMAS of that is a few requests arriving together
    if queued - base <= GROWTH_SIGMAS * math.sqrt(cap * span + 1.0):
        return smoothed
    return max(smoothed, cap + (queued - base) / span)


def _overload_since(state: ControlState, rate: float | None, current: dict[str, int],
                    profiles: tuple[LevelProfile, ...], now: float) -> float | None:
    """Since when the smoothed arrival rate has exceeded the allocation in force's capacity (None: it does not)."""
    if rate is None or not current or rate <= moves.capacity(current, profiles):
        return None
    return state.overload_since if state.overload_since is not None and state.overload_since <= now else now


def solve_releasing_idle(snap: Snapshot, full: str = FULL) -> tuple[Decision, bool]:
    """solve(snap), with idle approximate replicas given back to the full-quality level; and whether any were.

    Hysteresis keeps an allocation when a change gains less than its threshold after switching
    cost. After a burst that leaves an approximate replica with no load planned on it (and nothing
    queued at it), moving it back to full quality gains nothing *now*, so it would stay there for
    good, and the next prompts that need the capacity would get it at the lower level. The switching
    cost charges a reload as lost capacity, but an idle replica serves nothing, so reloading it loses
    none: once the dwell time since the last change has passed (no flapping), outside overload, it
    goes back to the full-quality level, and the plan is re-solved on that allocation (its
    redirection then uses the capacity). The move weighing (`weigh_move`) then keeps such a replica warm
    for the next burst until the spec's keepWarm has passed since the last change and since an approximate
    level last had load (meanwhile the router's capacity shares give it arrivals: bench/RESULTS.md, "keepWarm").
    """
    decision = solve(snap)
    dwell_ok = snap.last_change is None or snap.now - snap.last_change >= snap.hysteresis.min_dwell_s
    if decision.overload or full not in decision.replicas or not sum(snap.current.values()) or not dwell_ok:
        return decision, False
    idle = [lv for lv, n in decision.replicas.items() if lv != full and n > 0
            and not _has_load(decision, snap.queues, lv)]
    if not idle:
        return decision, False
    alloc = dict(decision.replicas)
    for lv in idle:
        alloc[full] += alloc[lv]
        alloc[lv] = 0
    again = solve(replace(snap, current=alloc, last_change=snap.now))
    note = f"released idle replicas of {', '.join(idle)} to {full} (no load planned there)"
    notes = [note, *(n for n in again.notes if not n.startswith("hysteresis:"))]
    return replace(again, changed=again.replicas != snap.current, reason="; ".join(notes), notes=notes), True


def _keep(service: str, spec: T2IServiceSpec, state: ControlState, now: float, status: dict[str, Any],
          generation: int | None, epoch: str = "", agnostic_key: str | None = None,
          reason: str = "") -> Plan:
    """The allocation in force, re-issued unchanged: without fresh metrics (no `reason`), or while replicas
    of it load (`reason` says so; the Plan is `progressing`)."""
    alloc = dict(state.allocation)
    doc = PolicyDocument(version=max(state.policy_version, 1), epoch=epoch, service=service, generated_at=now,
                         **spec.data_plane(), levels=list(spec.levels), allocation=alloc, agnostic_key=agnostic_key,
                         late_rungs=agnostic_key is None and spec.late_rungs,
                         reason=reason or "kept the last allocation: no fresh metrics")
    new_state = ControlState(allocation=alloc, policy_version=doc.version, last_change=state.last_change,
                             last_decision=now, quality=state.quality,
                             observed_generation=generation if generation is not None else state.observed_generation,
                             policy_digest=state.policy_digest, demand=state.demand,
                             overload_since=state.overload_since, reload_started=state.reload_started,
                             reload_times=state.reload_times, approx_busy=state.approx_busy)
    if status.get("averageQuality") is None and state.quality is not None:
        status["averageQuality"] = round(state.quality, 3)
    return Plan(allocation=alloc, policy=doc, state=new_state, changed=False, policy_changed=False, event=None,
                status=status, decision=None, reason=doc.reason, progressing=bool(reason))


def _adds_replicas(current: dict[str, int], alloc: dict[str, int]) -> bool:
    """Whether a new allocation starts replicas: some level gets more than the allocation in force has (a
    first allocation counts: its replicas load too)."""
    return any(n > current.get(lv, 0) for lv, n in alloc.items())


def demand_settings(spec: T2IServiceSpec) -> DemandSettings:
    """The loop's demand EWMA for a service: the spec's headroom on the smoothed rate, rises beyond the noise
    band followed at once, drops with the spec's scaleDownHalfLife, h_k with a half-life of two control periods."""
    return DemandSettings(half_life_s=2.0 * spec.control_period, release_half_life_s=spec.scale_down_half_life,
                          headroom=spec.headroom, band=NOISE_BAND)


def smooth_demand(dstate: DemandState, observed: MetricsSnapshot, levels: list[str], now: float,
                  settings: DemandSettings) -> tuple[float, dict[str, float], DemandState]:
    """Demand with headroom and h_k through the EWMA (see demand_settings)."""
    if dstate.at is not None and dstate.at > now or dstate.shares_at is not None and dstate.shares_at > now:
        dstate = DemandState()  # clock went backwards (another replica's clock): start over
    demand, dstate = estimate(dstate, max(0.0, observed.demand), now, settings)
    shares, dstate = estimate_shares(dstate, _shares(observed.h, levels), now, settings)
    h = _shares(shares, levels)
    if demand > 0 and not h:
        h = prior_h(levels)
    return demand, h, dstate


def smooth_class_shares(cstate: DemandState, counts: dict[str, float], table: dict[str, PromptClass],
                        levels: list[str], now: float, settings: DemandSettings) -> tuple[tuple[PromptClass, ...], DemandState]:
    """The prompt classes to plan with: the table's classes (qualities restricted to `levels`) with shares
    from the arrivals per class through the h_k EWMA (the table's own shares until a class arrival is seen)."""
    seen = {k: v for k, v in counts.items() if k in table}
    shares, cstate = estimate_shares(cstate, seen, now, settings)
    if not shares:
        shares = {k: c.share for k, c in table.items()}
    keep = set(levels)
    return tuple(replace(table[k], share=v, quality={lv: q for lv, q in table[k].quality.items() if lv in keep})
                 for k, v in sorted(shares.items())), cstate


def _shares(raw: dict[str, float], levels: list[str]) -> dict[str, float]:
    """Normalize observed h_k to the spec's levels (levels no longer served are dropped)."""
    kept = {lv: max(0.0, raw.get(lv, 0.0)) for lv in levels}
    total = sum(kept.values())
    return {lv: v / total for lv, v in kept.items() if v > 0} if total > 0 else {}


def _digest(doc: PolicyDocument) -> str:
    """Content hash of a policy, ignoring version and time, rounded so noise does not bump versions."""
    body = doc.model_dump(exclude={"version", "generated_at", "reason"})
    body["redirection"] = {k: {d: round(p, 3) for d, p in row.items()} for k, row in body["redirection"].items()}
    body["shed_rate"] = round(body["shed_rate"], 3)
    body["prices"] = {k: round(v, 1) for k, v in body.get("prices", {}).items()}
    body["shares"] = {k: round(v, 2) for k, v in body.get("shares", {}).items()}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _stored_digest(state: ControlState) -> str | None:
    return state.policy_digest


def _observed_status(observed: MetricsSnapshot | None) -> dict[str, Any]:
    if observed is None:
        return {}
    return {"observedThroughput": round(observed.served, 6), "observedDemand": round(observed.demand, 6),
            "sloViolationRate": round(observed.slo_violation_rate, 6),
            "averageQuality": None if observed.quality is None else round(observed.quality, 3)}
