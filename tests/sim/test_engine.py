"""End-to-end simulations on small synthetic workloads (no data files needed).

Cases: full quality under light load has no violations and serves everything; under overload
Clipper-HA's throughput is its capacity and the excess becomes violations; the router's draw
follows P(k -> j) and falls back like argus.policy.assign for levels without a ready replica; the
control loop sees only lagged, windowed measurements; Argus calls the production optimizer every
period and, on a bursty workload, serves more at the plateau than Clipper-HA with fewer violations
and quality above the floor's neighbourhood; every arrival is served or dropped (none lost
in backlogs); unknown policies are rejected with their name.
"""

import numpy as np
import pytest

from argus.policy.document import PolicyDocument
from argus.policy.profile import load_default_profile
from argus.sim.cluster import Cluster
from argus.sim.engine import SimConfig, _observe, route, simulate
from argus.sim.policies import PolicyError, Service, make_policy
from argus.sim.prompts import PromptModel
from argus.sim.trace import Workload, bursty, flat, poisson

PROFILE = load_default_profile()
NAMES = [lp.level for lp in PROFILE.levels]
MODEL = PromptModel()


def _svc(gpus):
    return Service(gpus=gpus, levels=PROFILE.levels, quality_floor=90.0, latency_slo=30.0)


def test_light_load_full_quality_no_violations():
    svc = _svc(2)
    wl = Workload(poisson(2000, seed=1), flat(0.1, 1200.0))
    r = simulate(wl, svc, make_policy("clipper-ha", svc, MODEL), MODEL)
    s = r.summary
    assert s.violation_rate == 0 and s.completed == s.arrivals and s.quality == 100.0
    assert s.p50_s == pytest.approx(PROFILE.get("cache-k0").service_time, abs=0.02)


def test_overload_throughput_is_capacity():
    svc = _svc(2)
    wl = Workload(poisson(5000, seed=2), flat(2.0, 1800.0))
    s = simulate(wl, svc, make_policy("clipper-ha", svc, MODEL), MODEL).summary
    capacity_qpm = 2 * PROFILE.get("cache-k0").peak_throughput * 60
    assert s.throughput_qpm == pytest.approx(capacity_qpm, rel=0.05)
    assert s.completed + s.violations_per_min * 30 >= s.arrivals * 0.99  # the rest are violations


def test_route_draws_from_rows_and_falls_back_like_the_router():
    doc = PolicyDocument(version=1, service="s", quality_floor=90, latency_slo_s=30, image_size="64x64", levels=NAMES,
                         redirection={"steps-20": {"steps-20": 0.25, "steps-25": 0.75}})
    keys = np.full(40_000, NAMES.index("steps-20"))
    rng = np.random.default_rng(0)
    dest = route(doc, NAMES, keys, [True] * len(NAMES), rng)
    assert np.mean(dest == NAMES.index("steps-20")) == pytest.approx(0.25, abs=0.01)
    avail = [n != "steps-25" and n != "steps-35" for n in NAMES]  # nearest safer with replicas: cache-k25
    dest = route(doc, NAMES, keys, avail, rng)
    assert set(dest.tolist()) == {NAMES.index("steps-20"), NAMES.index("cache-k25")}


def test_observation_is_lagged_and_windowed():
    cfg = SimConfig(period_s=15, scrape_lag_s=15, rate_window_s=30)
    hist = [(t, np.array([t, 0.0]), np.array([t, 0.0])) for t in (15.0, 30.0, 45.0, 60.0)]
    obs = _observe(hist, 60.0, cfg, ["a", "b"], Cluster(1, [1.0, 1.0], [1, 0]))
    assert obs.keys == {"a": 30.0 + 45.0}  # periods ending at 30 and 45; 60 is not scraped yet
    assert obs.rate == pytest.approx(75.0 / 30)
    assert obs.queues == {"a": 45.0}


def test_argus_calls_the_optimizer_and_beats_clipper_ha_at_the_plateau():
    svc = _svc(4)
    wl = Workload(poisson(20_000, seed=3), bursty(25 / 60, 7.8, plateau=900, gap=600))
    cfg = SimConfig(seed=3)
    ha = simulate(wl, svc, make_policy("clipper-ha", svc, MODEL), MODEL, cfg)
    ar = simulate(wl, svc, make_policy("argus", svc, MODEL), MODEL, cfg)
    ticks = int(np.ceil((wl.curve.duration + 60) / cfg.period_s))
    assert len(ar.solve_s) == ticks
    assert len(ar.replicas) > 1 and ar.starts > 0  # it reallocated, paying model loads
    assert ar.summary.peak_throughput_qpm > 1.3 * ha.summary.peak_throughput_qpm
    assert ar.summary.peak_violations_per_min < 0.5 * ha.summary.peak_violations_per_min
    assert ar.summary.peak_quality > 85.0 and ha.summary.peak_quality == 100.0


@pytest.mark.parametrize("policy", ["argus", "nirvana", "static:cache-k0=1,steps-20=1"])
def test_every_arrival_is_served_or_dropped(policy):
    svc = _svc(2)
    wl = Workload(poisson(5000, seed=6), bursty(10 / 60, 7.8, plateau=600, gap=300))
    s = simulate(wl, svc, make_policy(policy, svc, MODEL), MODEL, SimConfig(seed=6)).summary
    assert s.arrivals > 0 and s.completed + s.dropped == s.arrivals


def test_unknown_policy_is_rejected():
    with pytest.raises(PolicyError, match="unknown policy 'fastest'"):
        make_policy("fastest", _svc(2), MODEL)
    with pytest.raises(PolicyError, match="exceed the 2 GPUs"):
        make_policy("static:cache-k0=2,steps-20=1", _svc(2), MODEL)


def test_observed_queue_counts_requests_in_service():
    """The loop sees requests in flight per level (waiting or in service), as the router's pending gauge
    shows the production loop; a lone long request in service is load, not an empty queue."""
    from argus.policy.profile import LevelProfile
    from bench.fidelity import replay

    slow = LevelProfile(level="cache-k0", throughput={1: 1 / 20.0}, service_time=20.0, quality=100.0, model="m",
                        load_time=0.0)
    svc = Service(gpus=1, levels=(slow,), quality_floor=90.0, latency_slo=60.0)
    inner = make_policy("clipper-ha", svc, PromptModel(hits={0: 1.0}))
    seen = []

    class Recording:
        name = "recording"

        def keys(self, prompts):
            return inner.keys(prompts)

        def tick(self, obs):
            seen.append((obs.now, dict(obs.queues)))
            return inner.tick(obs)

    wl = replay(np.array([1.0, 1.5]))
    simulate(wl, svc, Recording(), PromptModel(hits={0: 1.0}),
             SimConfig(period_s=5, scrape_lag_s=0, rate_window_s=10, dispatch="least-pending"))
    at = dict(seen)
    assert at[5.0] == {"cache-k0": 2.0}  # one in service (started at 1.0), one waiting
    assert at[25.0] == {"cache-k0": 1.0}  # the first finished at 21; the second is in service until 41
    assert at[45.0] == {}


def test_vectorized_placement_is_the_routers():
    """The simulator places prompts with the router's own rule and ledger (argus.policy.assign.place)."""
    from argus.policy.document import PolicyDocument
    from argus.policy.assign import Ledger, full_credit, place as router_place
    from argus.sim.engine import place as sim_place

    names = ["cache-k0", "cache-k10", "steps-20"]
    doc = PolicyDocument(version=1, service="s", quality_floor=90.0, latency_slo_s=30, image_size="64x64", levels=names,
                         allocation={"cache-k0": 1, "cache-k10": 1, "steps-20": 4},
                         prices={"cache-k0": 12.0, "cache-k10": 4.0, "steps-20": 0.0},
                         shares={"cache-k0": 0.1, "cache-k10": 0.2, "steps-20": 0.7})
    rng = np.random.default_rng(0)
    pred = np.column_stack([np.full(300, 100.0), rng.uniform(90, 98, 300), rng.uniform(80, 99, 300)])
    pred[rng.random(300) < 0.4, 1] = np.nan  # no hit deep enough
    got, _, _ = sim_place(doc, names, pred, [True, True, True], full_credit(3), np.zeros(3))
    ledger = Ledger()
    want = [router_place({n: q for n, q in zip(names, row) if not np.isnan(q)}, doc, ledger) for row in pred]
    assert [names[j] for j in got] == want


def test_late_rungs_answer_a_short_burst_the_loop_sees_too_late():
    """A 60 s burst at 2x the full-quality capacity: Argus's plans turn late rungs on (argus.policy.lateness),
    so late batches run at faster steps-* levels of the same weights. It has far fewer violations than the same
    loop with them off (argus-late) and no more than Clipper-HT's plus 1 per burst minute; requests served at
    a rung count at that level. Proteus-like's plans leave them off."""
    svc = Service(gpus=8, levels=PROFILE.levels, quality_floor=90.0, latency_slo=30.0, in_place=True)
    capacity = 8 * PROFILE.get("cache-k0").peak_throughput
    wl = Workload(poisson(20_000, seed=4), bursty(0.4 * capacity, 5.0, plateau=60, gap=600, plateaus=1))
    runs = {n: simulate(wl, svc, make_policy(n, svc, MODEL), MODEL, SimConfig(seed=4))
            for n in ("argus", "argus-late", "clipper-ht")}
    viol = {n: float(r.series["violations_per_min"].sum()) for n, r in runs.items()}
    assert viol["argus-late"] > 20
    assert viol["argus"] <= 0.25 * viol["argus-late"] and viol["argus"] <= viol["clipper-ht"] + 1
    assert runs["argus"].summary.quality > runs["clipper-ht"].summary.quality + 2
    assert sum(v for n, v in runs["argus"].summary.served_share.items() if n.startswith("steps-")) > 0
    proteus = make_policy("proteus", svc, MODEL)
    from argus.sim.policies import Observation

    assert not proteus.tick(Observation(now=0.0, rate=1.0, keys={}, queues={}, replicas={})).doc.late_rungs
    argus = make_policy("argus", svc, MODEL)
    assert argus.tick(Observation(now=0.0, rate=1.0, keys={}, queues={}, replicas={})).doc.late_rungs


def test_a_surge_past_the_fastest_rungs_reach_runs_faster_before_anything_is_late():
    """A 30 s burst at 3x the full-quality capacity: the late rungs alone start only once batches would be
    late, behind a queue already too deep; with the surge rule (argus.policy.lateness.kept_rung) a replica
    whose arrivals outrun its level runs at the rung that keeps up at once. Far fewer violations."""
    svc = Service(gpus=8, levels=PROFILE.levels, quality_floor=90.0, latency_slo=30.0, in_place=True)
    capacity = 8 * PROFILE.get("cache-k0").peak_throughput
    wl = Workload(poisson(20_000, seed=4), bursty(0.4 * capacity, 7.5, plateau=30, gap=600, plateaus=1))
    viol = {w: float(simulate(wl, svc, make_policy("argus", svc, MODEL), MODEL,
                              SimConfig(seed=4, surge_window_s=w)).series["violations_per_min"].sum())
            for w in (0.0, 10.0)}
    assert viol[0.0] > 10  # (67 before the router's room rule and the queue that follows a switched replica)
    assert viol[10.0] <= 0.5 * viol[0.0]


def _two_level_service():
    levels = tuple(PROFILE.get(n) for n in ("cache-k0", "steps-20"))
    return Service(gpus=5, levels=levels, quality_floor=90.0, latency_slo=30.0, in_place=True)


def test_a_level_past_its_room_sends_the_newest_of_a_period_to_the_best_level_with_room():
    """The router's room rule in the simulator (argus.sim.engine._spill, PolicyDocument.max_in_flight): one
    steps-20 replica takes 22 in flight plus what it serves in the 15 s period at 0.98 req/s; the rest of the 50
    placed there go to cache-k0, whose four replicas run them at their fastest rung."""
    from argus.policy.lateness import in_flight_limits
    from argus.sim.engine import _Levels, _spill

    svc = _two_level_service()
    names = svc.names
    doc = PolicyDocument(version=1, service="s", quality_floor=90.0, latency_slo_s=30, image_size="64x64",
                         levels=names, allocation={"cache-k0": 4, "steps-20": 1}, late_rungs=True,
                         max_in_flight=in_flight_limits(svc.levels, names, 30.0))
    cluster = Cluster(5, [lp.load_time for lp in svc.levels], [4, 1])
    backlog = _Levels(2)
    dest = np.ones(50, dtype=np.int64)
    scores = np.column_stack([np.full(50, 100.0), np.full(50, 88.0)])
    out = _spill(dest, scores, [0, 1], doc, svc, cluster, backlog, [[0, 1], [1]], 0.0, 15.0)
    kept = int(doc.max_in_flight["steps-20"] + 15.0 * PROFILE.get("steps-20").peak_throughput)
    assert (out == 1).sum() == kept and (out[:kept] == 1).all() and (out[kept:] == 0).all()
    # what is in flight there counts against the room, in service as well as waiting (the router counts its
    # calls until they return); no limit in the document: nothing moves
    backlog.t[1] = np.zeros(2)
    backlog.in_flight[1] = 10.0  # 2 waiting, a batch of 8 in service
    assert (_spill(dest, scores, [0, 1], doc, svc, cluster, backlog, [[0, 1], [1]], 0.0, 15.0) == 1).sum() == kept - 10
    assert (_spill(dest, scores, [0, 1], doc.model_copy(update={"max_in_flight": {}}), svc, cluster, backlog,
                   [[0, 1], [1]], 0.0, 15.0) == 1).all()


def test_replicas_switched_in_place_to_a_rung_take_their_share_of_the_queue():
    """argus.sim.engine._follow: two of four cache-k0 replicas switched to steps-20 (a rung of its ladder) take
    the newest half of cache-k0's queue with them, merged into steps-20's in arrival order."""
    from argus.sim.engine import _Levels, _follow

    backlog = _Levels(2)
    backlog.t[0], backlog.q[0] = np.arange(10.0), np.column_stack([np.full(10, 100.0), np.arange(10.0)])
    backlog.t[1], backlog.q[1] = np.array([6.5]), np.array([[100.0, 50.0]])
    backlog.in_flight[:] = [18.0, 1.0]  # with a batch of 8 in service at cache-k0
    _follow(backlog, [4, 0], [2, 2], [[0, 1], [1]])
    assert backlog.t[0].tolist() == [0, 1, 2, 3, 4]
    assert backlog.in_flight.tolist() == [13.0, 6.0]  # the moved requests are in flight at steps-20 now
    assert backlog.t[1].tolist() == [5, 6, 6.5, 7, 8, 9] and backlog.q[1][:, 1].tolist() == [5, 6, 50, 7, 8, 9]
    _follow(backlog, [2, 2], [1, 2], [[0, 1], [1]])  # replicas given up, none gained: the queue stays
    assert len(backlog.t[0]) == 5


def test_replicas_removed_for_a_reload_finish_their_share_of_the_queue_first():
    """argus.sim.engine._drain: two of four ready cache-k0 replicas go (a reload). They take the newest half of
    the queue, serve it at cache-k0's peak throughput, and their GPUs load the next level only after that (the
    worker's drain, `WORKER_DRAIN_S`); a request that cannot finish within the SLO is given up at its deadline.
    The queue no longer stays with the two replicas left, which the real system never does."""
    from argus.sim.engine import _drain, _Levels
    from argus.sim.metrics import Recorder

    svc = _two_level_service()
    cluster = Cluster(5, [lp.load_time for lp in svc.levels], [4, 0])
    backlog = _Levels(2)
    backlog.t[0] = np.array([70.0] * 4 + [95.0] * 6)  # 4 waited 30 s by t=100: they cannot finish in time
    backlog.q[0] = np.column_stack([np.full(10, 100.0), np.full(10, 88.0)])
    backlog.in_flight[0] = 18.0
    rec = Recorder(1000.0, 30.0, svc.names)
    busy = _drain(backlog, [4, 0], [2, 2], cluster, svc.levels, rec, 100.0, 30.0)
    peak = svc.levels[0].peak_throughput
    assert len(backlog.t[0]) == 5 and backlog.t[0].tolist() == [70.0] * 4 + [95.0]  # the oldest stay
    assert backlog.in_flight[0] == 13.0
    assert busy[0] == pytest.approx(5 / (2 * peak)) and busy[1] == 0.0
    assert int(rec.completed.sum()) == 5 and int(rec.dropped.sum()) == 0
    cluster.apply([2, 2], 100.0, busy)
    load = svc.levels[1].load_time  # one steps-20 replica on the idle fifth GPU at once, one after the drain
    assert sorted(cluster.ready[1].tolist()) == pytest.approx([100.0 + load, 100.0 + busy[0] + load])
    # none left to serve it by the SLO: given up at the deadline; past the worker's drain limit: cut
    late = _Levels(2)
    late.t[0], late.q[0] = np.array([60.0, 99.0]), np.full((2, 2), 90.0)
    rec = Recorder(1000.0, 30.0, svc.names)
    _drain(late, [1, 0], [0, 1], Cluster(5, [lp.load_time for lp in svc.levels], [1, 0]), svc.levels, rec, 100.0,
           30.0)
    assert int(rec.dropped.sum()) == 1 and int(rec.completed.sum()) == 1
    assert _drain(_Levels(2), [4, 0], [4, 0], cluster, svc.levels, rec, 100.0, 30.0) == [0.0, 0.0]


def test_replicas_switched_in_place_off_their_ladder_finish_their_queue_where_it_was_queued():
    """In place, two of three steps-20 replicas switched to cache-k0 (slower: not a rung of steps-20's ladder)
    take the newest two thirds of steps-20's queue and finish it at steps-20, as the local runtime's workers do
    (argus.local.runtime.switch_worker), then serve cache-k0. Before, that queue stayed with the level's one
    replica left, or with none, and ran late. A switch to a rung (`_follow`) is left to move its queue."""
    from argus.sim.engine import _drain, _followed, _Levels
    from argus.sim.metrics import Recorder

    svc = _two_level_service()
    cluster = Cluster(5, [lp.load_time for lp in svc.levels], [2, 3], models=[lp.model for lp in svc.levels])
    backlog = _Levels(2)
    backlog.t[1] = np.arange(90.0, 99.0)
    backlog.q[1] = np.column_stack([np.full(9, 100.0), np.full(9, 88.0)])
    rungs = [[0, 1], [1]]  # cache-k0's ladder reaches steps-20; steps-20 has no faster rung
    skip = _followed([2, 3], [4, 1], rungs)
    assert skip == [False, False]
    rec = Recorder(1000.0, 30.0, svc.names)
    busy = _drain(backlog, [2, 3], [4, 1], cluster, svc.levels, rec, 100.0, 30.0, skip=skip)
    assert len(backlog.t[1]) == 3 and int(rec.completed.sum()) == 6 and int(rec.dropped.sum()) == 0
    assert busy[1] == pytest.approx(6 / (2 * svc.levels[1].peak_throughput)) and busy[0] == 0.0
    cluster.apply([4, 1], 100.0, busy)
    assert cluster.switches == 2 and cluster.starts == 0
    assert sorted(cluster.free[0].tolist())[-2:] == pytest.approx([100.0 + busy[1]] * 2)  # after their drain
    # a switch to a rung of the ladder: _follow moves the queue, the drain leaves it
    assert _followed([4, 0], [2, 2], rungs) == [True, False]
