"""The operator's heap snapshot (SIGUSR1 with traceHeap, what bench_operator compares) is written whole."""

from __future__ import annotations

import tracemalloc

from argus.controlplane.handlers import write_heap_snapshot


def test_a_heap_snapshot_is_written_whole_and_loads(tmp_path):
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        kept = [bytearray(1000) for _ in range(100)]  # something to find in it
        path = write_heap_snapshot(tmp_path / "heap-0.snap")
    finally:
        if started:
            tracemalloc.stop()
    assert [p.name for p in tmp_path.iterdir()] == ["heap-0.snap"]  # no .part left behind
    snap = tracemalloc.Snapshot.load(str(path))
    assert sum(t.size for t in snap.traces) >= 100_000 and kept
