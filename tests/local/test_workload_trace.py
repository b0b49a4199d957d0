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
