"""Fidelity harness: exact replay of an `argus load` run, calibration, comparison.

Cases: replayed arrivals equal the run's send times (with and without a lead-in); calibration
takes the median latency of requests that found the worker idle; a synthetic run produced by an
independent single-server FIFO recursion (Lindley) at utilization 0.5 is matched within 15 % (also from a later start)
without batching, and is told apart from batching without a batching gain; affine batch times
are recovered from a batched run's completions and that run is matched;
a report without records, or whose allocation changed, is refused.
"""

import numpy as np
import pytest

from argus.sim.fidelity import FidelityError, calibrate, compare, replay


@pytest.mark.parametrize("lead", [0.0, 7.5])
def test_replay_reproduces_send_times(lead):
    t = np.sort(np.random.default_rng(0).uniform(0, 100, 80)) + lead
    t -= t[0] - lead
    w = replay(t)
    assert np.allclose(w.arrivals(0, w.curve.duration), t)


def test_calibration_uses_requests_that_found_the_worker_idle():
    recs = [{"t_sent": 0.0, "latency": 1.0, "status": 200}, {"t_sent": 0.5, "latency": 3.0, "status": 200},
            {"t_sent": 10.0, "latency": 1.2, "status": 200}, {"t_sent": 20.0, "latency": 0.9, "status": 200}]
    assert calibrate(recs) == pytest.approx(1.0)  # 0.5 s request queued behind the first one


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
    from argus.sim.fidelity import batch_fit

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
