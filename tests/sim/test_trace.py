"""Workloads: trace normalization, tiling, time-warping onto flat and bursty rate curves, file formats.

Cases: raw timestamps normalized to unit mean rate; tiling repeats the trace seamlessly; a flat
curve yields rate x duration arrivals, the trace's own pattern time-scaled; the bursty curve's
plateaus carry factor x base load while
keeping the base trace's arrival order; windows partition the arrivals; Azure CSV and Mooncake
JSONL parsing and their error messages; requests released at one instant spread over its tick; the real traces
(skipped without ../shared/data).
"""

from pathlib import Path

import numpy as np
import pytest

from argus.sim.trace import TraceError, Workload, bursty, flat, from_timestamps, load_trace, poisson, spread_ticks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


def test_timestamps_normalized_to_unit_rate():
    tr = from_timestamps("x", np.array([10.0, 12.0, 14.0, 16.0]))
    assert tr.u[0] == 0 and len(tr.u) / tr.period == pytest.approx(1.0)


def test_tiling_repeats_the_trace():
    tr = from_timestamps("x", np.array([0.0, 1.0, 3.0]))  # period 4 s -> 3 arrivals per 3 units
    u = tr.between(0, 3 * tr.period)
    assert len(u) == 9
    assert np.all(np.diff(u) > 0)
    assert np.allclose(u[3:6] - u[:3], tr.period)


def test_flat_curve_gives_rate_times_duration():
    tr = poisson(5000, seed=3)
    wl = Workload(tr, flat(2.0, 3 * tr.period / 2.0))  # three tiles of the trace at twice its rate
    t = wl.arrivals(0, wl.curve.duration)
    assert len(t) == 3 * 5000
    assert np.allclose(t[:5000] * 2.0, tr.u)


def test_bursty_plateau_carries_factor_times_base():
    curve = bursty(1.0, factor=8.0, plateau=600, gap=300, plateaus=2)
    assert curve.duration == pytest.approx(300 + 600 + 300 + 600 + 300)
    wl = Workload(poisson(50_000, seed=4), curve)
    base = len(wl.arrivals(0, 300))
    peak = len(wl.arrivals(300, 900))
    assert base == pytest.approx(300, rel=0.15)
    assert peak / 600 == pytest.approx(8.0 * base / 300, rel=0.15)
    assert curve.is_peak(np.array([100.0, 500.0, 1000.0, 1500.0])).tolist() == [False, True, False, True]


def test_windows_partition_arrivals():
    wl = Workload(poisson(3000, seed=5), bursty(0.5, 4.0, 200, 100))
    whole = wl.arrivals(0, wl.curve.duration)
    parts = np.concatenate([wl.arrivals(t, t + 15) for t in np.arange(0, wl.curve.duration, 15)])
    assert np.allclose(whole, parts)


def test_parse_azure_csv_and_mooncake_jsonl(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,1,1\n"
                   "2023-11-16 18:17:05.9799600,1,1\n2023-11-16 18:17:07.9799600,1,1\n")
    assert len(load_trace(csv).u) == 3
    js = tmp_path / "m.jsonl"
    js.write_text('{"timestamp": 0}\n{"timestamp": 1500}\n{"timestamp": 3000}\n')
    tr = load_trace(js)
    assert np.allclose(np.diff(tr.u), 1.0)


@pytest.mark.parametrize("name,text,message", [
    ("bad.csv", "TIME,x\n1,2\n", "expected a CSV with a TIMESTAMP column"),
    ("bad.jsonl", '{"ts": 1}\n', "bad.jsonl:1: expected a JSON object with a numeric 'timestamp'"),
    ("one.jsonl", '{"timestamp": 1}\n', "needs at least two distinct arrival times"),
])
def test_trace_errors_name_the_problem(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(p)


@pytest.mark.skipif(not DATA.is_dir(), reason="real traces live in ../shared/data (absent here)")
@pytest.mark.parametrize("name,rows,rate", [("azure_llm_2023_code.csv", 8819, 2.6),
                                            ("mooncake_conversation_trace.jsonl", 12031, 3.4)])
def test_real_traces_load_with_manifest_rates(name, rows, rate):
    tr = load_trace(DATA / name)
    assert len(tr.u) == rows
    assert rows / tr.period == pytest.approx(1.0)


def test_requests_released_at_one_instant_are_spread_over_its_tick(tmp_path):
    # Mooncake-style: groups released every 3 s; each group is spread evenly over the 3 s to the next one
    t = spread_ticks(np.array([0.0, 0.0, 0.0, 3.0, 3.0, 6.0]))
    assert t.tolist() == pytest.approx([0.5, 1.5, 2.5, 3.75, 5.25, 7.5])  # the last group: the median tick
    assert len(np.unique(t)) == 6 and np.all(np.diff(t) > 0)
    # a trace without repeated instants (Azure's) is left as it is
    assert spread_ticks(np.array([0.1, 0.5, 2.0])).tolist() == [0.1, 0.5, 2.0]
    p = tmp_path / "m.jsonl"
    p.write_text("".join(f'{{"timestamp": {ms}}}\n' for ms in (0, 0, 3000, 3000, 6000, 6000)))
    spread, written = load_trace(p, spread=True), load_trace(p)
    assert len(np.unique(spread.u)) == 6 and len(np.unique(written.u)) == 3
