"""The data-plane kernel: one level's FIFO queue served by identical replicas with dynamic batching.

Per level the simulation is independent between control ticks (the router's assignment and the
replica set are fixed, replica ready times known), so the engine calls `run_level` once per level
and period. Compiled with numba when it is installed (a 1,000-GPU day has tens of millions of
requests); the same code runs as plain Python otherwise.
"""

from __future__ import annotations

import numpy as np

from argus.policy.lateness import AIM, SURGE, aimed_rung, kept_rung

try:  # numba is a dependency, but the kernel stays correct (only slower) without it
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    def njit(*args, **kwargs):
        """Identity decorator standing in for numba.njit."""
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

WAITING, SERVED, DROPPED = 0, 1, 2
_pick = njit(cache=True)(aimed_rung)  # the rung a late batch runs at (argus.policy.lateness), compiled
_keep = njit(cache=True)(kept_rung)  # the rung a replica's full batches keep up with its arrivals at, compiled
EMPTY = np.empty(0)


@njit(cache=True)
def _surged(seen, t, window, c, table, max_b, surge):
    """The rung a batch starting at `t` runs at for the surge rule: the level's arrivals (`seen`, sorted) in
    the last `window` seconds, per replica of `c` (argus.policy.lateness.kept_rung)."""
    n = np.searchsorted(seen, t, side="right") - np.searchsorted(seen, t - window, side="right")
    return _keep(n / window / c, max_b, table[:, max_b], surge)


@njit(cache=True)
def _sift_down(heap, aux, i, n):
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        small = left
        if left + 1 < n and heap[left + 1] < heap[left]:
            small = left + 1
        if heap[small] < heap[i]:
            tmp = heap[i]
            heap[i] = heap[small]
            heap[small] = tmp
            tmp = aux[i]
            aux[i] = aux[small]
            aux[small] = tmp
            i = small
        else:
            return


def run_level(arrivals, batch_time, slo, drop, free, ready, t_end, start, finish, status, ladder=None, rung=None,
              aim=AIM, seen=EMPTY, window=0.0, surge=SURGE):
    """Serve `arrivals` (sorted) FIFO on replicas free at `free` until `t_end`; return requests handled.

    batch_time[b] is the service time of a batch of b (index 0 unused; max batch = len - 1).
    A free replica takes every waiting request up to the max batch (Triton dynamic batching with
    no queue delay). With `drop`, a batch about to start runs at the first rung of `ladder` that finishes within
    `aim` x `slo` of its oldest member's arrival, else at the fastest rung if that makes the SLO, else that
    oldest member is dropped (Clipper-style early drop) and the batch reconsidered (argus.policy.lateness.
    aimed_rung: `ladder[k - 1]` is rung k's batch-time row; the rung served is written to `rung`).
    `free` is updated in place (as a heap; `ready`, the replicas' load-completion times, is permuted alongside);
    start/finish/status are written for the handled prefix; the rest stays WAITING.
    """
    table, rung = _table(batch_time, ladder, rung, arrivals.shape[0])
    return _run_level(arrivals, table, slo, drop, free, ready, t_end, start, finish, status, rung, aim, seen, window,
                      surge)


def _table(batch_time, ladder, rung, n):
    """Rung 0 (the level's own batch times) stacked over its ladder's rows; a rung array if none was given."""
    rows = [np.asarray(batch_time, dtype=np.float64)]
    if ladder is not None:
        rows += [np.asarray(r, dtype=np.float64) for r in ladder]
    table = np.ascontiguousarray(np.stack(rows))
    return table, (np.zeros(n, dtype=np.int8) if rung is None else rung)


@njit(cache=True)
def _run_level(arrivals, table, slo, drop, free, ready, t_end, start, finish, status, rung, aim, seen, window,
               surge):
    n = arrivals.shape[0]
    c = free.shape[0]
    max_b = table.shape[1] - 1
    for i in range(c // 2 - 1, -1, -1):
        _sift_down(free, ready, i, c)
    head = 0
    while head < n and c > 0:
        f = free[0]
        t = arrivals[head]
        if f > t:
            t = f
        if t >= t_end:
            break
        b = 0
        while head + b < n and b < max_b and arrivals[head + b] <= t:
            b += 1
        k = 0
        if drop:
            # the batch about to start takes table[k, b] at rung k; its oldest members may not make the SLO
            while b > 0:
                k = _pick(t, arrivals[head], slo, aim, table[:, b])
                if k >= 0:
                    break
                status[head] = DROPPED
                start[head] = t
                finish[head] = t
                head += 1
                if head + b - 1 < n and arrivals[head + b - 1] <= t:
                    continue  # the next waiting request takes the freed slot: same batch size
                b -= 1
            if b == 0:
                continue  # the drops emptied the queue; the replica waits for the next arrival
            if window > 0 and table.shape[0] > 1:
                k = max(k, _surged(seen, t, window, c, table, max_b, surge))
        done = t + table[k, b]
        for i in range(head, head + b):
            status[i] = SERVED
            start[i] = t
            finish[i] = done
            rung[i] = k
        head += b
        free[0] = done
        _sift_down(free, ready, 0, c)
    return head


@njit(cache=True)
def _start_batches(r, until, arrivals, table, slo, drop, free, qhead, qlen, nxt, run_n, start, finish, status, rung,
                   aim, seen, window, surge, c):
    """Start replica r's batches from its own FIFO while it frees before `until` (Triton's queue per replica)."""
    max_b = table.shape[1] - 1
    while qlen[r] > 0:
        t = free[r]
        first = arrivals[qhead[r]]
        if first > t:
            t = first
        if t >= until:
            return
        # the batch: waiting members of r's queue that arrived by t, up to the max batch
        b, i = 0, qhead[r]
        while b < qlen[r] and b < max_b and arrivals[i] <= t:
            b += 1
            if b < qlen[r]:
                i = nxt[i]
        k = 0
        if drop:
            while b > 0:
                k = _pick(t, arrivals[qhead[r]], slo, aim, table[:, b])
                if k >= 0:
                    break
                h = qhead[r]
                status[h] = DROPPED
                start[h] = t
                finish[h] = t
                qhead[r] = nxt[h]
                qlen[r] -= 1
                b = 0  # recount: the next member may take the freed place
                i = qhead[r]
                while b < qlen[r] and b < max_b and arrivals[i] <= t:
                    b += 1
                    if b < qlen[r]:
                        i = nxt[i]
            if b == 0:
                continue
            if window > 0 and table.shape[0] > 1:
                k = max(k, _surged(seen, t, window, c, table, max_b, surge))
        done = t + table[k, b]
        for _ in range(b):
            h = qhead[r]
            rung[h] = k
            status[h] = SERVED
            start[h] = t
            finish[h] = done
            qhead[r] = nxt[h]
            qlen[r] -= 1
        free[r] = done
        run_n[r] = b


def run_level_least_pending(arrivals, batch_time, slo, drop, free, ready, t_end, start, finish, status,
                            ladder=None, rung=None, aim=AIM, seen=EMPTY, window=0.0, surge=SURGE):
    """Like run_level, but each request is pushed on arrival to one replica's own queue (the router's dispatch).

    The router (argus.router.dispatch.Dispatcher.pick) sends a request to the ready replica with the
    fewest requests in flight (queued there or in its running batch; ties: the first one), and each
    Triton replica batches only its own queue. A replica takes every request waiting in its queue up
    to the max batch when it frees (no queue delay: Triton's 5 ms is negligible here). Unlike the shared
    queue, a request can wait behind a busy replica while another one idles. Requests still waiting at
    `t_end` stay WAITING and are dispatched again when the next call sees them (an approximation across
    control ticks: the engine carries them over; within one call the dispatch is exact). A late batch runs
    at a rung of `ladder` as in run_level.
    """
    table, rung = _table(batch_time, ladder, rung, arrivals.shape[0])
    return _run_least_pending(arrivals, table, slo, drop, free, ready, t_end, start, finish, status, rung, aim, seen,
                              window, surge)


@njit(cache=True)
def _run_least_pending(arrivals, table, slo, drop, free, ready, t_end, start, finish, status, rung, aim, seen, window,
                       surge):
    n = arrivals.shape[0]
    c = free.shape[0]
    if c == 0:
        return 0
    nxt = np.full(n, -1, dtype=np.int64)
    qhead = np.full(c, -1, dtype=np.int64)
    qtail = np.full(c, -1, dtype=np.int64)
    qlen = np.zeros(c, dtype=np.int64)
    # members of the batch a replica is running (until free[r]); one for a replica busy with a batch
    # from before this call, whose size the kernel no longer knows
    run_n = np.ones(c, dtype=np.int64)
    for i in range(n):
        t = arrivals[i]
        if t >= t_end:
            break
        best, best_load, first_ready = -1, 1 << 60, 0
        for r in range(c):
            # batches that started before t (one starting at t also takes what arrives at t)
            _start_batches(r, t, arrivals, table, slo, drop, free, qhead, qlen, nxt, run_n,
                           start, finish, status, rung, aim, seen, window, surge, c)
            if ready[r] < ready[first_ready]:
                first_ready = r
            if ready[r] > t:
                continue  # still loading: not in the router's endpoints yet
            load = qlen[r] + (run_n[r] if free[r] > t else 0)
            if load < best_load:
                best, best_load = r, load
        if best < 0:
            best = first_ready  # no ready replica: it waits for the first one to load
        if qlen[best] == 0:
            qhead[best] = i
        else:
            nxt[qtail[best]] = i
        qtail[best] = i
        qlen[best] += 1
    for r in range(c):
        _start_batches(r, t_end, arrivals, table, slo, drop, free, qhead, qlen, nxt, run_n,
                       start, finish, status, rung, aim, seen, window, surge, c)
    return n


def batch_times(throughput: dict[int, float]) -> np.ndarray:
    """Service time per batch size 1..max from profiled throughput (requests/s) at some batch sizes.

    Batch time b / T(b) is interpolated linearly between profiled sizes (an affine fixed + per-item
    cost, the usual shape of a GPU batch); below the smallest profiled size it scales with b.
    """
    sizes = sorted(throughput)
    times = [b / throughput[b] for b in sizes]
    grid = np.arange(0, sizes[-1] + 1, dtype=np.float64)
    out = np.interp(grid, sizes, times)
    small = grid < sizes[0]
    out[small] = grid[small] * times[0] / sizes[0]
    out[0] = 0.0
    return out
