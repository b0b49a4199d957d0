"""`argus solve SNAPSHOT.json`.

Cases:
- a snapshot naming levels (profiles from the bundled SDXL file) prints a JSON decision, exit 0;
  the printed replicas fit the budget and the rows sum to 1 (a real `argus` process);
- a snapshot with inline profiles works in-process through cli.main;
- malformed or contradictory snapshots exit 2 with a message naming the field: negative demand,
  floor above 100, empty level set, unknown level in h, broken JSON, missing file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.support.snapshots import snap

from argus.cli import main

GOOD = {"gpus": 8, "levels": ["cache-k0", "cache-k5", "cache-k10", "cache-k25", "steps-25"],
        "demand": 3.0, "h": {"cache-k0": 0.3, "cache-k10": 0.3, "cache-k25": 0.2, "steps-25": 0.2},
        "throughput_target": 10, "quality_floor": 90, "latency_slo": 30}


def test_cli_process_prints_decision(tmp_path):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(GOOD))
    out = subprocess.run([sys.executable, "-m", "argus.cli", "solve", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert sum(d["replicas"].values()) <= 8 and d["overload"] is False
    assert all(abs(sum(row.values()) - 1) < 1e-9 for row in d["redirection"].values())
    assert d["reason"]


def test_cli_inline_profiles(tmp_path, capsys):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snap(demand=2.0).to_dict()))
    assert main(["solve", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["throughput"] == pytest.approx(2.0)


@pytest.mark.parametrize("change, needle", [
    ({"demand": -2}, "demand: -2 requests/s must be >= 0"),
    ({"quality_floor": 120}, "quality_floor: 120% must be in [0, 100]"),
    ({"levels": [], "h": {}}, "levels: must contain at least one level"),
    ({"h": {"cache-k0": 0.5, "cache-k99": 0.5}}, "h: unknown level 'cache-k99'"),
])
def test_cli_bad_snapshot_exits_2(tmp_path, capsys, change, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**GOOD, **change}))
    assert main(["solve", str(path)]) == 2
    assert needle in capsys.readouterr().err


def test_cli_broken_json_and_missing_file(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{\"gpus\": ")
    assert main(["solve", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err


def test_cli_process_exit_code_on_bad_input(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**GOOD, "demand": -1}))
    out = subprocess.run([sys.executable, "-m", "argus.cli", "solve", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "demand" in out.stderr and out.stdout == ""
