"""`argus load`'s trace reading goes through the simulator's reader.

Cases: a CSV (TIMESTAMP) and a JSONL (timestamp, ms) give arrival seconds from the first request,
sorted, the same shape the simulator normalizes; a file without timestamps and an empty trace are
WorkloadErrors naming the file.
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.sim.trace import load_trace as sim_load_trace
from argus.tools.workload import WorkloadError, read_arrivals


def test_csv_and_jsonl(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("TIMESTAMP,x\n2023-11-16 18:15:46.6805900,1\n2023-11-16 18:15:45.6805900,1\n"
                   "2023-11-16 18:15:50.1805900,1\n")
    js = tmp_path / "t.jsonl"
    js.write_text('{"timestamp": 2000}\n{"timestamp": 500}\n\n{"timestamp": 4500}\n')
    assert np.allclose(read_arrivals(csv), [0.0, 1.0, 4.5])
    assert np.allclose(read_arrivals(js), [0.0, 1.5, 4.0])
    u = sim_load_trace(js).u  # the simulator's unit-rate version of the same arrivals
    assert np.allclose(u / u[-1], read_arrivals(js) / 4.0)


def test_bad_traces(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("WHEN\n1\n")
    with pytest.raises(WorkloadError, match="bad.csv.*TIMESTAMP"):
        read_arrivals(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(WorkloadError, match="empty.jsonl: trace is empty"):
        read_arrivals(empty)


@pytest.mark.parametrize("seed", range(8))
def test_a_bursty_trace_keeps_its_plateau_from_its_start(seed):
    """An off-peak gap drawn at the low rate must not run into the plateau (it once skipped up to 40 s of a
    60 s burst): the plateau's arrivals start within a few of its own gaps of its start and number about
    peak x length."""
    from argus.tools.workload import bursty_arrivals

    a = bursty_arrivals(base_rate=0.11, peak_rate=2.6, duration=110.0, peak_start=20.0, peak_len=60.0, seed=seed)
    burst = a[(a >= 20.0) & (a < 80.0)]
    assert burst[0] < 20.0 + 5 / 2.6
    assert abs(len(burst) - 156) < 4 * 156 ** 0.5
    assert np.all(np.diff(a) > 0) and a[-1] < 110.0
