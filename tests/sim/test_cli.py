"""`argus simulate` end to end on the synthetic trace.

Cases: two policies on a flat workload print the table and write summary.json, per-minute series
and the three plots; a bad profile path exits 2 with the file named.
"""

import json

from argus.cli import main


def test_simulate_writes_table_series_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--gpus", "2", "--shape", "flat", "--base-qpm", "20", "--duration-min", "5",
               "--policy", "clipper-ha", "--policy", "static:cache-k0=1,steps-20=1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| clipper-ha |" in text and "| static:cache-k0=1,steps-20=1 |" in text
    doc = json.loads((out / "summary.json").read_text())
    assert doc["clipper-ha"]["summary"]["quality"] == 100.0
    assert doc["static:cache-k0=1,steps-20=1"]["summary"]["arrivals"] == doc["clipper-ha"]["summary"]["arrivals"]
    assert (out / "series_clipper-ha.csv").read_text().startswith("t_min,throughput_qpm")
    assert {p.name for p in out.glob("*.png")} == {"sim_throughput_qpm.png", "sim_quality.png",
                                                   "sim_violations_per_min.png"}


def test_bad_profile_exits_2(tmp_path, capsys):
    rc = main(["simulate", "--profile", str(tmp_path / "none.json"), "--shape", "flat", "--duration-min", "1"])
    assert rc == 2
    assert "none.json: cannot read profile" in capsys.readouterr().err


def test_in_place_switches_start_no_replica(tmp_path, capsys):
    """A burst that moves Argus off full quality: with --in-place it switches replicas within SDXL instead of
    starting new ones."""
    runs = {}
    for flag in ([], ["--in-place"]):
        out = tmp_path / ("in-place" if flag else "reload")
        assert main(["simulate", "--gpus", "4", "--base-qpm", "20", "--burst-factor", "5", "--plateau-min", "10",
                     "--gap-min", "5", *flag, "--out", str(out)]) == 0
        runs[bool(flag)] = json.loads((out / "summary.json").read_text())["argus"]
    assert runs[False]["replica_starts"] > 0 and runs[False]["in_place_switches"] == 0
    assert runs[True]["replica_starts"] == 0 and runs[True]["in_place_switches"] > 0
