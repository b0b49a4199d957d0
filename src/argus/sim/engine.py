"""The simulation loop: control ticks, the router's per-prompt assignment, per-level queues.

Time advances one control period at a time. At each tick the policy sees Prometheus-like
lagged, windowed measurements and returns replicas plus a redirection matrix; the cluster starts
and drains replicas (start-up = model load time); arrivals of the period are drawn from the
workload, keyed by the predictor, routed by sampling the redirection row with the router's
fallback for levels without a ready replica (argus.policy.assign.served_level) and its room rule
(`_spill`); each level's queue then runs in the compiled kernel until the next tick. A replica switched in
place to a rung of its level takes its share of that level's queue with it (`_follow`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np

from argus.contract import WORKER_DRAIN_S
from argus.policy.document import PolicyDocument
from argus.policy.assign import (BURST, ETA, FIT_WINDOW, LEAK, fit_offsets, full_credit, place_rows, ready_shares,
                                 refit_due, score_rows, served_level, until_due)
from argus.policy.lateness import RATE_WINDOW_S, ladder
from argus.sim.cluster import Cluster
from argus.sim.kernel import DROPPED, SERVED, WAITING, batch_times, njit, run_level, run_level_least_pending
from argus.sim.metrics import Recorder, Summary
from argus.sim.policies import Observation, Plan, Policy, Service
from argus.sim.prompts import PromptSource, draw
from argus.sim.trace import Workload


DISPATCH = {"queue": run_level, "least-pending": run_level_least_pending}
_place_rows = njit(cache=True)(place_rows)  # the router's own placement loop, compiled


@dataclass(frozen=True)
class SimConfig:
    """How the simulated control loop and measurements behave."""

    period_s: float = 15.0  # control period (the spec's controlPeriod default)
    scrape_lag_s: float = 15.0  # Prometheus scrape interval: the newest sample is this old
    rate_window_s: float = 60.0  # rate(...[1m]) window for arrivals and optimal-level shares
    drop: bool = True  # drop a request that cannot meet the SLO when a replica reaches it
    drain_s: float | None = None  # run on after the last arrival (default: 2 x SLO)
    seed: int = 0
    # a late-rung replica's surge rule (argus.policy.lateness.kept_rung) counts arrivals over this window; 0: off
    surge_window_s: float = RATE_WINDOW_S
    # "queue": one FIFO per level that every replica of it serves; "least-pending": the router's push
    # to the replica with the fewest requests in flight, each replica batching its own queue
    dispatch: str = "queue"

    def __post_init__(self):
        if self.dispatch not in DISPATCH:
            raise ValueError(f"dispatch {self.dispatch!r}: expected one of {', '.join(DISPATCH)}")


@dataclass
class Result:
    """A finished run: its table row, per-minute series, decisions and timings."""

    summary: Summary
    series: dict[str, np.ndarray]
    replicas: list[tuple[float, dict[str, int]]]  # (tick time, replicas per level)
    solve_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    starts: int = 0  # replica start-ups (model loads)
    switches: int = 0  # replicas switched in place between levels of one model (Service.in_place)


@dataclass
class Refits:
    """The router ledger's fitting state (argus.policy.assign.Ledger): the last prompts' predictions (rows over
    the simulator's levels), the policy the prices were last fitted for and the arrivals since."""

    recent: np.ndarray
    fitted_for: tuple[str, int] | None = None
    since_fit: int = 0


def place(doc: PolicyDocument, names: list[str], predicted: np.ndarray, available: list[bool],
          credit: np.ndarray, offset: np.ndarray, ready: list[int] | None = None,
          refits: Refits | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per-prompt placement (argus.policy.assign.place, vectorized): served level index per prompt in
    `names`, -1 where the prompt has no allowed level; `credit` and `offset` (per doc level) are the router's ledger;
    `ready`: ready replicas per level of `names` (argus.policy.assign.ready_shares); `refits`: the ledger's
    fitting state (updated): the prompts are placed in chunks between the fits the router makes
    (argus.policy.assign.refit_due), each fit on the prompts before it. A new state each call: as a new router.
    Also the scores it placed by (prompts x doc levels) and each doc level's index in `names`."""
    cols = [names.index(lv) for lv in doc.levels]
    avail = np.array([available[c] for c in cols])
    scores = score_rows(predicted[:, cols], doc, avail)
    share = ready_shares(doc, None if ready is None else dict(zip(names, ready)))
    fit = refits if refits is not None else Refits(np.empty((0, len(names))))
    key = (doc.epoch, doc.version)
    j = np.empty(len(predicted), dtype=np.int64)
    i = 0
    while i < len(predicted):
        if refit_due(len(fit.recent), key, fit.fitted_for, fit.since_fit):
            offset[:] = fit_offsets(score_rows(fit.recent[:, cols], doc, avail), share)
            fit.fitted_for, fit.since_fit = key, 0
        k = min(len(predicted) - i, max(1, until_due(len(fit.recent), fit.since_fit)))
        j[i:i + k] = _place_rows(scores[i:i + k], share, credit, offset, BURST, ETA, LEAK)
        fit.recent = np.concatenate([fit.recent, predicted[i:i + k]])[-FIT_WINDOW:]
        fit.since_fit += k
        i += k
    return np.where(j >= 0, np.array(cols)[np.maximum(j, 0)], -1), scores, cols


def route(doc: PolicyDocument, names: list[str], keys: np.ndarray, available: list[bool],
          rng: np.random.Generator) -> np.ndarray:
    """Served level per prompt: draw from P(key -> level), then the router's no-replica fallback."""
    dest = keys.copy()
    u = rng.random(len(keys))
    for k in np.unique(keys):
        row = doc.redirection.get(names[k])
        if not row:
            continue
        lv = np.array([names.index(x) for x in row])
        cum = np.cumsum(list(row.values()))
        m = keys == k
        dest[m] = lv[np.minimum(np.searchsorted(cum / cum[-1], u[m], side="right"), len(lv) - 1)]
    bare = doc.model_copy(update={"redirection": {}})
    avail = {n for n, a in zip(names, available) if a}
    rnd = random.Random(0)  # the fallback is deterministic; served_level only draws from rows
    fallback = np.array([names.index(served_level(n, bare, rnd, avail)) if n in bare.levels else i
                         for i, n in enumerate(names)])
    return fallback[dest]


def _spill(dest: np.ndarray, scores: np.ndarray, cols: list[int], doc: PolicyDocument, svc: Service,
           cluster: Cluster, backlog: "_Levels", rungs: list[list[int]], t0: float, t1: float) -> np.ndarray:
    """The router's room rule (PolicyDocument.max_in_flight; `rungs`: each level's ladder), per period: a level takes no more of the period's
    arrivals than its ready replicas hold in flight within the limit (less what is in flight there: waiting or in
    service, as the router counts its calls, `argus.router.dispatch`) plus what they serve at their fastest rung in
    the period. The newest beyond it go, one by one, to their best-scoring level (`scores`,
    over the document's levels `cols`) with room left; none left: they stay."""
    n = len(svc.levels)
    cap = np.full(n, np.inf)
    ready = cluster.ready_counts(t0)
    for j, name in enumerate(svc.names):
        limit = doc.max_in_flight.get(name)
        if limit is None:
            continue
        c = ready[j]
        fast = max(svc.levels[x].peak_throughput for x in rungs[j])
        cap[j] = max(limit * c - backlog.in_flight[j], 0.0) + fast * c * (t1 - t0)
    counts = np.bincount(dest[dest >= 0], minlength=n).astype(float)
    room = cap - counts
    if not (room < 0).any():
        return dest
    dest = dest.copy()
    at = {c: k for k, c in enumerate(cols)}  # level index -> column of `scores`
    for j in np.nonzero(room < 0)[0]:
        for i in np.nonzero(dest == j)[0][int(np.floor(cap[j])):]:
            best, best_s = -1, -np.inf
            for x in range(n):
                if x != j and room[x] >= 1 and x in at and scores[i, at[x]] > best_s:
                    best, best_s = x, scores[i, at[x]]
            if best < 0:
                break
            dest[i], room[best], room[j] = best, room[best] - 1, room[j] + 1
    return dest


def _follow(backlog: "_Levels", before: list[int], after: list[int], rungs: list[list[int]]) -> None:
    """Replicas switched in place from level a to a rung of a's ladder take their share of a's queue with them:
    each worker keeps its own Triton queue, and runs what waits there at the rung, as the late and surge rules
    do under the load that made the loop switch it (the shared queue per level would leave it all to a's
    remaining replicas). The newest of a's queue move, to the fastest rung that gained replicas."""
    for a in range(len(before)):
        lost = before[a] - after[a]
        gainers = _rung_gainers(a, before, after, rungs)
        k = int(round(len(backlog.t[a]) * lost / before[a])) if lost > 0 and gainers else 0
        if k <= 0:
            continue
        b = gainers[-1]
        t = np.concatenate([backlog.t[b], backlog.t[a][-k:]])
        q = np.concatenate([backlog.q[b], backlog.q[a][-k:]])
        order = np.argsort(t, kind="stable")
        backlog.t[b], backlog.q[b] = t[order], q[order]
        backlog.t[a], backlog.q[a] = backlog.t[a][:-k], backlog.q[a][:-k]
        backlog.in_flight[a], backlog.in_flight[b] = backlog.in_flight[a] - k, backlog.in_flight[b] + k


def _rung_gainers(a: int, before: list[int], after: list[int], rungs: list[list[int]]) -> list[int]:
    """The rungs of level a's ladder that gain replicas."""
    return [b for b in rungs[a][1:] if after[b] > before[b]]


def _followed(before: list[int], target: list[int], rungs: list[list[int]]) -> list[bool]:
    """Per level: whether replicas it loses go to a rung of its ladder that gains replicas (`_follow` moves its
    queue there) rather than elsewhere."""
    return [before[a] > target[a] and bool(_rung_gainers(a, before, target, rungs)) for a in range(len(before))]


def _drain(backlog: "_Levels", before: list[int], target: list[int], cluster: Cluster, levels, rec: Recorder,
           now: float, slo: float, limit_s: float = WORKER_DRAIN_S, skip: list[bool] | None = None) -> list[float]:
    """Replicas removed from a level take their share of the level's queue with them and finish it before they
    serve anything else: each worker keeps its own Triton queue. A stopping one (a reload) finishes what it
    accepted for up to `limit_s` (argus.contract.WORKER_DRAIN_S; the rest is cut) before its GPU is released;
    one switched in place to a level off its ladder finishes it at the level it was queued for, as the local
    runtime's workers do (argus.local.runtime.switch_worker), then serves its new level. Without it the queue
    stayed with the level's remaining replicas, or with none (in place, 14-18 requests at a 2x burst's end ran
    late), which the real system never does. `skip`: levels whose queue `_follow` moves instead. Returns, per
    level, how long its removed replicas stay busy (Cluster.apply). Loading replicas are removed first and hold no queue; the ready
    ones that go serve the newest of their share (as `_follow`) in arrival order at the level's peak
    throughput, in batches no faster than its service time; a request that cannot finish within the SLO is
    given up at its deadline, as the router's deadline does."""
    busy = [0.0] * len(before)
    for j, (was, want, ready) in enumerate(zip(before, target, cluster.ready_counts(now))):
        if skip is not None and skip[j]:
            continue
        leaving = max(ready - want, 0)  # ready replicas that go (loading ones go first)
        k = int(round(len(backlog.t[j]) * leaving / ready)) if leaving else 0
        if k <= 0:
            continue
        t, q = backlog.t[j][-k:], backlog.q[j][-k:]
        backlog.t[j], backlog.q[j] = backlog.t[j][:-k], backlog.q[j][:-k]
        backlog.in_flight[j] = max(backlog.in_flight[j] - k, 0.0)
        finish = now + np.maximum(levels[j].service_time, np.arange(1, k + 1) / (leaving * levels[j].peak_throughput))
        cut = finish > now + limit_s
        late = ~cut & (finish - t > slo)
        ok = ~cut & ~late
        rec.served(t[ok], finish[ok], q[ok, j], j)
        rec.drops(np.concatenate([t[late] + slo, np.full(int(cut.sum()), now + limit_s)]), j)
        busy[j] = float(min(finish.max() - now, limit_s))
    return busy


class _Levels:
    """Per-level backlog (arrival time, the prompt's quality at every level) carried between periods."""

    def __init__(self, n: int) -> None:
        self.t = [np.empty(0) for _ in range(n)]
        self.q = [np.empty((0, n)) for _ in range(n)]
        self.credit = full_credit(n)  # the router's per-level placement ledger (argus.policy.assign.place_rows)
        self.offset = np.zeros(n)  # ... and its learned prices
        self.refits = Refits(np.empty((0, n)))  # ... and what they are fitted on
        self.classes: dict[str, float] = {}  # arrivals per prompt class in the last period
        self.seen = [np.empty(0) for _ in range(n)]  # arrivals sent to each level lately (its replicas' rate)
        self.in_flight = np.zeros(n)  # requests waiting or in service per level at the period's end


def simulate(workload: Workload, svc: Service, policy: Policy, model: PromptSource,
             cfg: SimConfig = SimConfig()) -> Result:
    """Run one policy over the workload; return the table row and time series."""
    wall = time.perf_counter()
    names, levels = svc.names, svc.levels
    n_lv = len(levels)
    bt = [batch_times(lp.throughput) for lp in levels]
    rng = np.random.default_rng(cfg.seed)
    duration = workload.curve.duration
    drain = cfg.drain_s if cfg.drain_s is not None else 2 * svc.latency_slo
    end = duration + drain
    rec = Recorder(end, svc.latency_slo, names, floor=svc.quality_floor)
    history: list[tuple[float, np.ndarray, np.ndarray]] = []
    plan = policy.tick(Observation(now=0.0, rate=0.0, keys={}, queues={}, replicas={}))
    cluster = Cluster(svc.gpus, [lp.load_time for lp in levels], [plan.replicas.get(n, 0) for n in names],
                      models=[lp.model for lp in levels] if svc.in_place else None)
    backlog = _Levels(n_lv)
    decisions = [(0.0, dict(plan.replicas))]
    solve_s = [plan.solve_s] if plan.solve_s else []
    t0 = 0.0
    while t0 < end:
        t1 = t0 + cfg.period_s
        if t0 > 0:
            plan = policy.tick(_observe(history, t0, cfg, names, cluster))
            if plan.solve_s:
                solve_s.append(plan.solve_s)
            target = [plan.replicas.get(n, 0) for n in names]
            before = cluster.replicas()
            if target != before:
                decisions.append((t0, dict(plan.replicas)))
            busy = None
            if target != before:
                # with reloads every removed replica finishes its queue first; in place those switched to a rung
                # of their level's ladder take it along (_follow, below), the others finish it where it was queued
                followed = (_followed(before, target, _rungs(plan.doc, names)) if svc.in_place and plan.doc.late_rungs
                            else [False] * n_lv)
                busy = _drain(backlog, before, target, cluster, levels, rec, t0, svc.latency_slo,
                              skip=followed)
            cluster.apply(target, t0, busy)
            if svc.in_place and plan.doc.late_rungs and target != before:
                _follow(backlog, before, cluster.replicas(), _rungs(plan.doc, names))
        counts, in_flight = _period(workload, svc, policy, model, plan, cluster, backlog, rec, bt, rng, cfg,
                                    t0, min(t1, duration) if t0 < duration else t0, t1)
        history.append((t1, counts, in_flight, backlog.classes))
        t0 = t1
    for j in range(n_lv):  # whatever is still queued after the drain never gets served
        if len(backlog.t[j]):
            rec.drops(np.full(len(backlog.t[j]), end - 1e-9), j)
    peak = workload.curve.is_peak(np.arange(len(rec.arrived)) * rec.bin_s + rec.bin_s / 2)
    peak &= np.arange(len(rec.arrived)) * rec.bin_s + rec.bin_s <= duration
    return Result(summary=rec.summary(policy.name, duration, peak), series=rec.series(), replicas=decisions,
                  solve_s=solve_s, wall_s=time.perf_counter() - wall, starts=cluster.starts,
                  switches=cluster.switches)


def _rungs(doc: PolicyDocument, names: list[str]) -> list[list[int]]:
    """Per level: itself, then the ladder a late batch of it may run at (argus.policy.lateness), among the
    document's levels."""
    return [[j] + [names.index(x) for x in ladder(n, doc.levels) if x in names] if n in doc.levels else [j]
            for j, n in enumerate(names)]


def _row(times: np.ndarray, n: int) -> np.ndarray:
    """A rung's batch times over a level's batch sizes: a size beyond the rung's largest batch never fits."""
    out = np.full(n, np.inf)
    out[:min(n, len(times))] = times[:n]
    return out


def _observe(history, now: float, cfg: SimConfig, names: list[str], cluster: Cluster) -> Observation:
    """The lagged, windowed view a Prometheus-fed control loop has at `now`."""
    newest = now - cfg.scrape_lag_s
    win = [h for h in history if newest - cfg.rate_window_s < h[0] <= newest + 1e-9]
    reps = dict(zip(names, cluster.replicas()))
    if not win:
        return Observation(now=now, rate=0.0, keys={}, queues={}, replicas=reps)
    counts = sum(h[1] for h in win)
    span = min(cfg.rate_window_s, len(win) * cfg.period_s)
    classes: dict[str, float] = {}
    for h in win:
        for k, v in (h[3] if len(h) > 3 else {}).items():  # arrivals per prompt class, when the policy has classes
            classes[k] = classes.get(k, 0.0) + v
    return Observation(now=now, rate=float(counts.sum() / span),
                       keys={n: float(c) for n, c in zip(names, counts) if c > 0},
                       queues={n: float(q) for n, q in zip(names, win[-1][2]) if q > 0}, replicas=reps,
                       classes=classes)


def _period(workload, svc, policy, model, plan: Plan, cluster: Cluster, backlog: _Levels, rec: Recorder,
            bt, rng, cfg: SimConfig, t0: float, t_arr_end: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw, key and route the period's arrivals, run every level's queue to t1; return the key counts and
    the requests in flight per level at t1 (waiting or in service: what the router's pending gauge,
    argus_router_pending, shows the production loop)."""
    names = svc.names
    n_lv = len(names)
    arr = workload.arrivals(t0, t_arr_end) if t_arr_end > t0 else np.empty(0)
    counts = np.zeros(n_lv)
    in_flight = np.zeros(n_lv)
    dest = np.empty(0, dtype=np.int64)
    qual = np.empty((0, n_lv))
    backlog.classes = {}
    rungs = _rungs(plan.doc, names) if plan.doc.late_rungs else [[j] for j in range(n_lv)]
    if len(arr):
        rec.arrivals(arr)
        prompts = draw(model, svc.levels, svc.quality_floor, len(arr), rng)
        keys = policy.keys(prompts)
        counts = np.bincount(keys, minlength=n_lv).astype(float)
        classify = getattr(policy, "classify", None)
        cls = classify(prompts) if classify is not None else None
        if cls is not None:
            u, c = np.unique(np.array(cls), return_counts=True)
            backlog.classes = {str(k): float(v) for k, v in zip(u, c)}
        avail = cluster.available(t0)
        dest = route(plan.doc, names, keys, avail, rng)
        if plan.doc.prices and prompts.predicted is not None:
            if len(backlog.credit) != len(plan.doc.levels):
                backlog.credit, backlog.offset = full_credit(len(plan.doc.levels)), np.zeros(len(plan.doc.levels))
            placed, scores, cols = place(plan.doc, names, prompts.predicted, avail, backlog.credit, backlog.offset,
                                         cluster.ready_counts(t0), backlog.refits)
            dest = np.where(placed >= 0, placed, dest)
            if plan.doc.max_in_flight:
                dest = _spill(dest, scores, cols, plan.doc, svc, cluster, backlog, rungs, t0, t1)
        qual = prompts.quality
    for j in range(n_lv):
        m = dest == j
        t = np.concatenate([backlog.t[j], arr[m]])
        q = np.concatenate([backlog.q[j], qual[m]]) if len(arr) else backlog.q[j]
        if len(t) == 0:
            continue
        seen = backlog.seen[j]
        backlog.seen[j] = seen = np.concatenate([seen[seen > t0 - cfg.surge_window_s], arr[m]])
        start, finish = np.empty(len(t)), np.empty(len(t))
        status = np.zeros(len(t), dtype=np.int8)
        rung = np.zeros(len(t), dtype=np.int8)
        DISPATCH[cfg.dispatch](t, bt[j], svc.latency_slo, cfg.drop, cluster.free[j], cluster.ready[j], t1,
                               start, finish, status, [_row(bt[x], len(bt[j])) for x in rungs[j][1:]], rung,
                               seen=seen, window=cfg.surge_window_s if len(rungs[j]) > 1 else 0.0)
        s, d = status == SERVED, status == DROPPED
        in_flight[j] = np.count_nonzero(s & (finish > t1)) + np.count_nonzero(status == WAITING)
        for k, lv in enumerate(rungs[j]):  # served at the level itself (rung 0) or, late, at a ladder rung
            sk = s & (rung == k)
            if sk.any():
                rec.served(t[sk], finish[sk], q[sk, lv], lv)
        if d.any():
            rec.drops(finish[d], j)
        w = status == WAITING
        t, q = t[w], q[w]
        if len(cluster.free[j]) == 0 and len(t):  # no replica will ever reach them: give up at the deadline
            gone = t + svc.latency_slo < t1
            rec.drops(t[gone] + svc.latency_slo, j)
            t, q = t[~gone], q[~gone]
        backlog.t[j], backlog.q[j] = t, q
    backlog.in_flight = in_flight
    return counts, in_flight
