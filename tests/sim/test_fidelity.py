"""Fidelity harness: exact replay of an `argus load` run, calibration, comparison.

Cases: replayed arrivals equal the run's send times (with and without a lead-in); calibration
takes the median latency of requests that found the worker idle; a synthetic run produced by an
independent single-server FIFO recursion (Lindley) at utilization 0.5 is matched within 15 % (also from a later start)
without batching, and is told apart from batching without a batching gain; affine batch times
are recovered from a batched run's completions and that run is matched;
a report without records, or whose allocation changed, is refused; an independent two-replica run of
the router's dispatch is matched from measured batch times plus the front-door overhead (and told apart
from a shared queue), and batch times are fitted per replica.
"""

import numpy as np
import pytest

from bench.fidelity import FidelityError, solo_service_time, compare, replay


@pytest.mark.parametrize("lead", [0.0, 7.5])
def test_replay_reproduces_send_times(lead):
    t = np.sort(np.random.default_rng(0).uniform(0, 100, 80)) + lead
    t -= t[0] - lead
    w = replay(t)
    assert np.allclose(w.arrivals(0, w.curve.duration), t)


def test_calibration_uses_requests_that_found_the_worker_idle():
    recs = [{"t_sent": 0.0, "latency": 1.0, "status": 200}, {"t_sent": 0.5, "latency": 3.0, "status": 200},
            {"t_sent": 10.0, "latency": 1.2, "status": 200}, {"t_sent": 20.0, "latency": 0.9, "status": 200}]
    assert solo_service_time(recs) == pytest.approx(1.0)  # 0.5 s request queued behind the first one


def _lindley_report(n=1500, rate=0.5, service=1.0, seed=4):
    a = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    free, recs = 0.0, []
    for t in a:
        start = max(t, free)
        free = start + service
        recs.append({"t_sent": float(t), "latency": free - t, "status": 200})
    return {"records": recs, "allocation": [{"t": 0.0, "allocation": {"cache-k0": 1, "steps-5": 0}}],
            "summary": {"slo_s": 60.0, "duration_s": float(a[-1] + service)}}


@pytest.mark.parametrize("since", [0.0, 1000.0])
def test_matches_an_independent_fifo_run_within_tolerance(since):
    cmp = compare(_lindley_report(), max_batch=1, since=since)
    assert cmp.within, (cmp.measured, cmp.simulated)
    assert cmp.ratios["throughput_rps"] == pytest.approx(1.0, abs=0.01)
    assert cmp.ratios["p99_s"] == pytest.approx(1.0, abs=0.02)


def test_detects_a_different_queueing_model():
    # batching without a batching gain makes early batch members wait for the whole batch
    cmp = compare(_lindley_report(), max_batch=8)
    assert not cmp.within and cmp.ratios["p99_s"] > 1.15


def _batched_report(n=1500, rate=0.8, a=0.5, c=0.5, seed=7):
    """An independent single-replica dynamic-batching run (batch time a + c*b, max batch 8)."""
    arr = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    recs, free, i = [], 0.0, 0
    while i < n:
        start = max(free, arr[i])
        j = i
        while j < n and j - i < 8 and arr[j] <= start:
            j += 1
        free = start + a + c * (j - i)
        recs += [{"t_sent": float(arr[k]), "latency": float(free - arr[k]), "status": 200} for k in range(i, j)]
        i = j
    return {"records": recs, "allocation": {"cache-k0": 1}, "summary": {"slo_s": 60.0, "duration_s": float(free)}}


def test_batch_fit_recovers_batch_times_and_matches():
    from bench.fidelity import batch_fit

    rep = _batched_report()
    a, c, n = batch_fit(rep["records"])
    assert n > 100 and a == pytest.approx(0.5, abs=0.05) and c == pytest.approx(0.5, abs=0.05)
    cmp = compare(rep, calibration="batches")
    assert cmp.within, (cmp.measured, cmp.simulated)


def test_report_without_records_is_refused():
    with pytest.raises(FidelityError, match="no records"):
        compare({"summary": {}})


def test_changing_allocation_is_refused():
    rep = _lindley_report(n=10)
    rep["allocation"].append({"t": 5.0, "allocation": {"cache-k0": 2}})
    with pytest.raises(FidelityError, match="allocation changed"):
        compare(rep)


def _router_report(n=1500, rate=0.8, a=0.3, c=1.0, replicas=2, overhead=0.0, seed=11):
    """An independent run of the router's dispatch: each arrival goes to the replica with the fewest
    requests in flight (ties: the first), each replica batches its own FIFO (batch time a + c*b, max 8)."""
    arr = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    queues = [[] for _ in range(replicas)]  # (arrival index) waiting at each replica
    running = [[] for _ in range(replicas)]  # indices in the running batch
    free = [0.0] * replicas
    done = {}

    def advance(r, until):  # start replica r's batches that begin before `until`
        while queues[r]:
            start = max(free[r], arr[queues[r][0]])
            if start >= until:
                return
            batch = [i for i in queues[r] if arr[i] <= start][:8]
            queues[r] = queues[r][len(batch):]
            free[r] = start + a + c * len(batch)
            running[r] = batch
            for i in batch:
                done[i] = (free[r], r)

    for i, t in enumerate(arr):
        for r in range(replicas):
            advance(r, t)
        load = [len(queues[r]) + (len(running[r]) if free[r] > t else 0) for r in range(replicas)]
        queues[load.index(min(load))].append(i)
    for r in range(replicas):
        advance(r, np.inf)
    recs = [{"t_sent": float(arr[i]), "latency": float(done[i][0] - arr[i] + overhead), "status": 200,
             "replica": f"127.0.0.1:{9000 + done[i][1]}"} for i in range(n)]
    return {"records": recs, "allocation": {"cache-k0": replicas},
            "summary": {"slo_s": 60.0, "duration_s": float(max(f for f, _ in done.values()) + overhead)}}


def test_measured_profile_and_overhead_match_an_independent_two_replica_router_run():
    from bench.fidelity import measured_profile

    a, c, over = 0.3, 1.0, 0.5
    rep = _router_report(a=a, c=c, overhead=over)
    cal = {"level": "cache-k0", "throughput": {str(b): b / (a + c * b) for b in (1, 2, 4, 8)}, "overhead_s": over}
    prof, o = measured_profile(cal)
    assert o == over and prof.throughput[8] == pytest.approx(8 / 8.3)
    cmp = compare(rep, profile=(prof,), overhead_s=o)
    assert cmp.within, (cmp.measured, cmp.simulated)
    assert cmp.ratios["p50_s"] == pytest.approx(1.0, abs=0.03)
    # the overhead is latency outside the replica: leaving it out shifts the percentiles by it
    bare = compare(rep, profile=(prof,))
    assert cmp.simulated["p50_s"] - bare.simulated["p50_s"] == pytest.approx(over)
    # a shared queue (the first free replica takes everything waiting) is a different system here
    shared = compare(rep, profile=(prof,), overhead_s=o, dispatch="queue")
    assert not shared.within and shared.ratios["p99_s"] > 1.15


def test_batch_fit_works_per_replica():
    from bench.fidelity import batch_fit

    a, c, n = batch_fit(_router_report(a=0.3, c=1.0)["records"])
    assert n > 100 and a == pytest.approx(0.3, abs=0.05) and c == pytest.approx(1.0, abs=0.05)


def _demo_spec(target: float = 1.0):
    """The service of the replayed runs (2026-11-29): replicas reloaded, no late rungs yet (with them the loop
    rides a burst the rungs serve rather than reload: argus.policy.moves.rung_quality)."""
    from argus.spec import parse_spec

    return parse_spec({"model": {"name": "tiny-sd", "steps": 20}, "levels": ["cache-k0", "steps-5"], "gpus": 2,
                       "throughputTarget": target, "latencySLO": 12, "controlPeriod": 5, "scaleDownHalfLife": 10,
                       "lateRungs": False})


def test_controlled_replay_runs_the_loop_and_matches_a_light_load_run():
    """With the control loop on (production demand, hysteresis and optimizer settings of the spec) a
    light load stays at full quality on both sides and the queueing matches."""
    from argus.tools.experiment import default_profile
    from bench.fidelity import compare_controlled

    spec = _demo_spec()
    rep = _router_report(rate=0.3, a=0.3, c=1.0)
    for r in rep["records"]:
        r["level"] = "cache-k0"
    cmp, detail = compare_controlled(rep, spec, default_profile(spec).levels)
    assert cmp.within, (cmp.measured, cmp.simulated)
    assert detail["served_share"]["simulated"] == {"cache-k0": 1.0, "steps-5": 0.0}
    assert [a for _, a in detail["allocation"]["simulated"]] == [{"cache-k0": 2, "steps-5": 0}]
    assert detail["fits"]["cache-k0"]["c_s"] == pytest.approx(1.0, abs=0.1)


def _overload():
    """~1.6 req/s against two full-quality replicas that serve ~1.1, all at full quality: the spec (its target
    covers the burst, as the local experiments set it: planned demand is then the measured one; a target below
    it caps the plan), the run and per-level batch fits."""
    spec = _demo_spec(target=2.0)
    rep = _router_report(n=300, rate=1.6, a=0.5, c=1.7)
    for r in rep["records"]:
        r["level"] = "cache-k0"
    return spec, rep, {"cache-k0": (0.5, 1.7, 50), "steps-5": (0.0, 0.6, 50)}


def test_controlled_replay_moves_capacity_under_overload_and_needs_a_full_quality_fit():
    from argus.tools.experiment import default_profile
    from bench.fidelity import compare_controlled

    # the loop must move one replica to steps-5
    spec, rep, fits = _overload()
    _, detail = compare_controlled(rep, spec, default_profile(spec).levels, fits=fits)
    assert any(a.get("steps-5", 0) >= 1 for _, a in detail["allocation"]["simulated"])
    assert detail["served_share"]["simulated"]["steps-5"] > 0.2
    with pytest.raises(FidelityError, match="cache-k0"):
        compare_controlled(rep, spec, default_profile(spec).levels, fits={"steps-5": (0.0, 0.6, 50)})


def test_controlled_replay_of_an_in_place_run_switches_without_a_reload():
    from argus.tools.experiment import default_profile
    from bench.fidelity import compare_controlled

    # `argus up` switches a slot between levels of its weights in place: the replay must too, or a 60 s reload
    # keeps the moved slot idle through most of the burst
    spec, rep, fits = _overload()
    plan = default_profile(spec).levels
    _, reloaded = compare_controlled(rep, spec, plan, fits=fits, load_time_s=60.0)
    _, switched = compare_controlled(rep, spec, plan, fits=fits, load_time_s=60.0, in_place=True)
    assert reloaded["in_place_switches"] == 0 and switched["in_place_switches"] >= 1
    assert switched["served_share"]["simulated"]["steps-5"] > reloaded["served_share"]["simulated"]["steps-5"] + 0.1
