"""Queueing kernel against closed forms and hand-computed schedules.

Cases: M/D/1 mean wait (Pollaczek-Khinchine) at rho 0.5 and 0.8; M/D/1 share of requests that
do not wait (1 - rho); simultaneous arrivals batched up to the max batch; c replicas serve c
simultaneous requests at once; a loading replica (free in the future) starts late; the run stops
at t_end leaving the rest waiting; early drop of requests that would miss the SLO; batch times
interpolated from profiled throughput. The router's least-pending dispatch (run_level_least_pending):
on one replica it is the shared queue; a request waits behind the replica it was pushed to; simultaneous
arrivals are spread; a batch from an earlier call counts as in flight; loading replicas get nothing.
"""

import numpy as np
import pytest

from argus.sim.kernel import DROPPED, SERVED, WAITING, batch_times, run_level


def _run(arrivals, bt, free, t_end=np.inf, slo=1e9, drop=False):
    a = np.asarray(arrivals, dtype=float)
    n = len(a)
    start, finish, status = np.empty(n), np.empty(n), np.zeros(n, dtype=np.int8)
    free = np.asarray(free, dtype=float).copy()
    ready = np.zeros(len(free))
    head = run_level(a, np.asarray(bt, dtype=float), slo, drop, free, ready, t_end, start, finish, status)
    return head, start, finish, status, free


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho):
    rng = np.random.default_rng(1)
    d = 1.0
    a = np.cumsum(rng.exponential(d / rho, 400_000))
    _, start, _, status, _ = _run(a, [0.0, d], [0.0])
    assert (status == SERVED).all()
    wait = (start - a)[20_000:]  # skip the warm-up from an empty queue
    expected = rho * d / (2 * (1 - rho))
    assert wait.mean() == pytest.approx(expected, rel=0.05)


def test_md1_share_not_waiting_is_one_minus_rho():
    rng = np.random.default_rng(2)
    rho = 0.6
    a = np.cumsum(rng.exponential(1 / rho, 200_000))
    _, start, _, _, _ = _run(a, [0.0, 1.0], [0.0])
    assert np.mean(start - a < 1e-12) == pytest.approx(1 - rho, abs=0.01)


def test_simultaneous_arrivals_batch_up_to_max_batch():
    bt = batch_times({1: 1.0, 4: 2.0})  # batch time 1 s alone, 8 s for 4 -> affine
    _, start, finish, status, _ = _run([0.0] * 6, bt, [0.0])
    assert (status == SERVED).all()
    assert list(start) == [0, 0, 0, 0, bt[4], bt[4]]
    assert list(finish[:4]) == [bt[4]] * 4
    assert list(finish[4:]) == [bt[4] + bt[2]] * 2


def test_c_replicas_serve_c_requests_at_once():
    _, start, finish, _, free = _run([0.0, 0.0, 0.0], [0.0, 2.0], [0.0, 0.0, 0.0])
    assert list(start) == [0, 0, 0] and list(finish) == [2, 2, 2]
    assert sorted(free) == [2, 2, 2]


def test_loading_replica_starts_when_ready():
    _, start, finish, _, _ = _run([1.0, 1.0], [0.0, 3.0], [5.0, 0.0])
    assert list(start) == [1.0, 4.0]  # one replica at once; the other request waits for its batch


def test_stops_at_t_end_and_leaves_the_rest_waiting():
    head, start, _, status, _ = _run([0.0, 0.5, 2.0, 3.0], [0.0, 1.0], [0.0], t_end=2.0)
    assert head == 2
    assert list(status) == [SERVED, SERVED, WAITING, WAITING]


def test_early_drop_of_requests_that_would_miss_the_slo():
    # one replica busy until t=10; SLO 5 s; service 1 s: requests from t=0..3 cannot make it at t=10
    _, start, finish, status, _ = _run([0.0, 3.0, 9.5], [0.0, 1.0], [10.0], slo=5.0, drop=True)
    assert list(status) == [DROPPED, DROPPED, SERVED]
    assert finish[2] == 11.0


def test_without_drop_late_requests_are_still_served():
    _, _, finish, status, _ = _run([0.0, 3.0], [0.0, 1.0], [10.0], slo=5.0, drop=False)
    assert (status == SERVED).all() and finish[0] == 11.0


def test_batch_times_interpolate_profiled_throughput():
    bt = batch_times({1: 0.25, 8: 0.4})  # 4 s alone, 20 s for 8
    assert bt[1] == pytest.approx(4.0) and bt[8] == pytest.approx(20.0)
    assert bt[4] == pytest.approx(4.0 + 3 * 16.0 / 7)
    assert len(bt) == 9 and bt[0] == 0.0


def _run_lp(arrivals, bt, free, ready=None, t_end=np.inf, slo=1e9, drop=False):
    from argus.sim.kernel import run_level_least_pending

    a = np.asarray(arrivals, dtype=float)
    n = len(a)
    start, finish, status = np.empty(n), np.empty(n), np.zeros(n, dtype=np.int8)
    free = np.asarray(free, dtype=float).copy()
    ready = np.zeros(len(free)) if ready is None else np.asarray(ready, dtype=float)
    run_level_least_pending(a, np.asarray(bt, dtype=float), slo, drop, free, ready, t_end, start, finish, status)
    return start, finish, status, free


@pytest.mark.parametrize("drop", [False, True])
def test_least_pending_on_one_replica_is_the_shared_queue(drop):
    rng = np.random.default_rng(5)
    a = np.cumsum(rng.exponential(0.6, 3000))
    bt = batch_times({1: 1.0, 8: 2.0})
    _, s1, f1, st1, _ = _run(a, bt, [0.0], slo=6.0, drop=drop)
    s2, f2, st2, _ = _run_lp(a, bt, [0.0], slo=6.0, drop=drop)
    assert (st1 == st2).all() and np.allclose(s1, s2) and np.allclose(f1, f2)


def test_least_pending_pushes_to_a_replica_and_waits_there():
    # the router's dispatch: replica 0 runs a 10 s request from t=0, replica 1 a 1 s one from t=0.5
    # (ties go to the first replica); at t=0.7 both hold one, so the request queues at replica 0 and
    # starts at 10 although replica 1 frees at 1.5; the shared queue starts it at 1.5
    bt = np.array([0.0, 10.0])
    start, finish, _, _ = _run_lp([0.0, 0.5, 0.7], bt, [0.0, 0.0])
    assert list(start) == [0.0, 0.5, 10.0] and finish[2] == 20.0
    bt1 = np.array([0.0, 1.0])
    # 0.7 -> replica 0 (tie; starts when it frees at 1), 1.2 -> replica 0 again (tie: 1 each),
    # 1.6 -> replica 1 (idle since 1.5)
    start, _, _, _ = _run_lp([0.0, 0.5, 0.7, 1.2, 1.6], bt1, [0.0, 0.0])
    assert list(start) == [0.0, 0.5, 1.0, 2.0, 1.6]


def test_least_pending_spreads_simultaneous_arrivals_and_balances_queues():
    bt = batch_times({1: 1.0, 8: 1.0})  # no batching gain: b requests take b seconds
    start, finish, _, free = _run_lp([0.0] * 4, bt, [0.0, 0.0])
    assert list(start) == [0.0] * 4 and list(finish) == [2.0] * 4 and list(free) == [2.0, 2.0]
    # the shared queue lets the first free replica take all four in one batch
    _, _, f_shared, _, _ = _run([0.0] * 4, bt, [0.0, 0.0])
    assert list(f_shared) == [4.0] * 4


def test_least_pending_counts_a_batch_from_before_the_call_as_in_flight():
    # replica 0 busy until 10 from an earlier call, replica 1 idle: the request goes to replica 1
    start, _, _, _ = _run_lp([1.0], np.array([0.0, 1.0]), [10.0, 0.0])
    assert start[0] == 1.0


def test_least_pending_skips_loading_replicas():
    start, finish, _, _ = _run_lp([1.0, 1.0], [0.0, 3.0], [5.0, 0.0], ready=[5.0, 0.0])
    assert list(start) == [1.0, 4.0]  # both go to the ready replica; the loading one gets nothing


def test_least_pending_leaves_requests_after_t_end_waiting():
    _, _, status, _ = _run_lp([0.0, 0.5, 2.0, 3.0], [0.0, 1.0], [0.0], t_end=2.0)
    assert list(status) == [SERVED, SERVED, WAITING, WAITING]


@pytest.mark.parametrize("dispatch", ["queue", "least-pending"])
def test_a_late_batch_runs_at_the_first_rung_that_makes_the_aim(dispatch):
    """Three requests at t=0 on one replica, 1 s each alone at the level, 0.5 s and 0.2 s at its two rungs,
    SLO 2 s, aim 0.75 (1.5 s): the first runs at the level (done at 1 s); the second would be done at 2 s,
    so it runs at rung 1 (1.5 s); the third, at 1.5 s, makes 1.7 s only at rung 2, within the SLO."""
    from argus.sim.kernel import run_level_least_pending

    fn = run_level if dispatch == "queue" else run_level_least_pending
    a = np.zeros(3)
    start, finish, status = np.empty(3), np.empty(3), np.zeros(3, dtype=np.int8)
    rung = np.zeros(3, dtype=np.int8)
    fn(a, np.array([0.0, 1.0]), 2.0, True, np.zeros(1), np.zeros(1), np.inf, start, finish, status,
       [np.array([0.0, 0.5]), np.array([0.0, 0.2])], rung, aim=0.75)
    assert (status == SERVED).all()
    assert list(rung) == [0, 1, 2]
    assert list(finish) == pytest.approx([1.0, 1.5, 1.7])


def test_without_rungs_a_late_request_is_dropped_as_before():
    a = np.zeros(3)
    start, finish, status = np.empty(3), np.empty(3), np.zeros(3, dtype=np.int8)
    run_level(a, np.array([0.0, 1.0]), 2.0, True, np.zeros(1), np.zeros(1), np.inf, start, finish, status, aim=0.75)
    assert list(status) == [SERVED, SERVED, DROPPED]


@pytest.mark.parametrize("dispatch", ["queue", "least-pending"])
@pytest.mark.parametrize("recent, expected", [(20, 0), (40, 2)])
def test_a_surge_runs_full_batches_at_the_rung_that_keeps_up(dispatch, recent, expected):
    """Two requests at t=10 on one replica (max batch 2: 1.2 s at the level, 1.67/s; 0.6 s and 0.25 s at its
    rungs). None is late. With 20 arrivals in the last 10 s (2/s, within 1.5 x the level's speed) the batch
    runs at its level; with 40 (4/s) at the first rung that keeps up, the fastest (8/s)."""
    from argus.sim.kernel import run_level_least_pending

    fn = run_level if dispatch == "queue" else run_level_least_pending
    a = np.full(2, 10.0)
    seen = np.sort(np.concatenate([np.linspace(0.5, 9.9, recent - 2), a]))
    start, finish, status = np.empty(2), np.empty(2), np.zeros(2, dtype=np.int8)
    rung = np.zeros(2, dtype=np.int8)
    fn(a, np.array([0.0, 1.0, 1.2]), 10.0, True, np.zeros(1), np.zeros(1), np.inf, start, finish, status,
       [np.array([0.0, 0.5, 0.6]), np.array([0.0, 0.2, 0.25])], rung, aim=0.75, seen=seen, window=10.0)
    assert (status == SERVED).all()
    assert list(rung) == [expected, expected]
