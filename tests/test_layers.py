"""The package's layers hold: `lint-imports` passes the contracts in .importlinter.

Cases:
- core (levels, telemetry, policy, spec, control) < adapters < worker, prompt, router < drivers
  (controlplane | local | sim, independent) < commands < cli; the simulator imports no data-plane code;
  the core imports no I/O library. Run on the checkout under test (its src/), not an installed copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import argus

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    src = Path(argus.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / ".importlinter"),
                          "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
