"""bench/bench_local_sweep.py's summary: one row per cell and mode, and issue 19's local targets.

Cases: rows carry each mode's violation rate, quality and rung count; at 1.1x Argus's rate must be at most
Clipper-HA's and at 2x at most a third of it; Argus's quality must be 5 points above Clipper-HT's only where
Clipper-HT has violations; the plot is written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_local_sweep", ROOT / "bench" / "bench_local_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def _doc(**modes):
    return {"runs": {m: {"summary": {"requests": 100, "slo_violation_rate": v, "avg_level_quality": q,
                                     "late_rungs": 3}} for m, (v, q) in modes.items()}}


def test_rows_and_the_local_targets(tmp_path):
    cells = {(1.1, 60.0): _doc(argus=(0.05, 95.0), ha=(0.10, 100.0), ht=(0.0, 84.0)),
             (2.0, 60.0): _doc(argus=(0.40, 90.0), ha=(0.90, 100.0), ht=(0.02, 84.0)),
             (3.0, 60.0): _doc(argus=(0.10, 88.0), ha=(0.95, 100.0), ht=(0.05, 84.0))}
    table = sweep.rows(cells)
    assert len(table) == 9
    assert table[0] == {"size": 1.1, "length_s": 60.0, "mode": "argus", "requests": 100, "violation_rate": 0.05,
                        "quality": 95.0, "late_rungs": 3}
    checks = dict(sweep.targets(table))
    assert len(checks) == 4  # 1.1x and 2x against HA; 2x and 3x against HT (it has violations there)
    verdicts = sorted(checks.items())
    assert [ok for text, ok in verdicts if text.startswith("1.1x") and "Clipper-HA" in text] == [True]
    assert [ok for text, ok in verdicts if text.startswith("2x") and "Clipper-HA" in text] == [False]  # 0.40 > 0.30
    assert [ok for text, ok in verdicts if text.startswith("2x") and "Clipper-HT" in text] == [True]
    assert [ok for text, ok in verdicts if text.startswith("3x") and "Clipper-HT" in text] == [False]  # 88 < 89
    assert sweep.plot(table, tmp_path / "sweep.png").stat().st_size > 0


def test_a_burst_size_is_a_multiple_of_the_full_quality_allocations_profiled_rate():
    assert 1.0 < sweep.full_quality_rps() < 1.5  # 2 slots of the tiny model at full quality, by its profile
    path = sweep.cell_path(1.5, 60)
    assert path.name == "burst_1p5x_60s" and path.with_suffix(".json").name == "burst_1p5x_60s.json"
