"""`argus up --calibrate`: the profile is rescaled to the machine before the control loop starts.

Cases: on the real local system (Prometheus, Envoy, router, two full-quality Triton workers) the
probe's measured saturated rate becomes the profile's full-quality capacity (status
`fullQualityCapacityRps` = measured, the assumption is stated, the factor is measured/profiled); the
loop does not read the probe as demand (with no load afterwards it keeps both slots at full quality
and plans no demand); `argus load --machine-scaled` multiplies the rates by the factor and refuses a
system that was not calibrated. `rescaled` itself is tested in test_demo_profile.py.
"""

from __future__ import annotations

import copy
import json
import shutil
import time

import pytest

from argus import cli
from argus.local.defaults import TINY_MANIFEST
from argus.tools.experiment import boot
from argus.local.runtime import read_state
from argus.spec import parse_manifest
from argus.tools.workload import read_prompts

pytestmark = [pytest.mark.skipif(not (shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")),
                                 reason="needs the prometheus binary (scripts/setup.sh installs it)"),
              pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    m = copy.deepcopy(TINY_MANIFEST)
    m["spec"].update(levels=["cache-k0", "steps-2"], controlPeriod=2, gpus=2, throughputTarget=0.5)
    # 4 steps, 32x32: the probe's bursts (two of 16 requests, after a warm-up) took ~4 of this test's ~5 minutes
    # with the demo's 20-step 64x64 model on a busy 2-core machine; calibration is the same at any model speed.
    m["spec"]["model"].update(steps=4, height=32, width=32)
    name, spec = parse_manifest(m)
    system, ctl = boot(name, spec, tmp_path_factory.mktemp("cal"), mode="argus", window="10s",
                       calibrate_with=read_prompts())
    try:
        time.sleep(8)  # four control periods with no load
        yield system, ctl, read_state(system.workdir)
    finally:
        ctl.stop()
        system.stop()


def test_profile_rescaled_to_the_measured_rate(calibrated):
    system, ctl, state = calibrated
    cal = state["status"]["calibration"]
    assert cal["allocation"] == {"cache-k0": 2}
    assert cal["measuredRps"] > 0 and cal["profiledRps"] > 0
    assert cal["factor"] == pytest.approx(cal["measuredRps"] / cal["profiledRps"], rel=1e-3)
    # two full-quality slots of the rescaled profile serve what was measured
    assert state["status"]["fullQualityCapacityRps"] == pytest.approx(cal["measuredRps"], rel=1e-3)
    assert any("calibrated" in a and "x " in a for a in state["status"]["profileAssumptions"])


def test_probe_is_not_read_as_demand(calibrated):
    system, ctl, state = calibrated
    st = state["status"]
    assert st["allocation"] == {"cache-k0": 2, "steps-2": 0} or st["allocation"] == {"cache-k0": 2}, st
    assert system.counts() == {"cache-k0": 2}
    assert st["observed"]["demand"] < 0.5 * st["fullQualityCapacityRps"], st["observed"]
    assert not ctl.events, ctl.events  # no reallocation


def test_load_machine_scaled_multiplies_rates_and_needs_a_calibration(calibrated, tmp_path, capsys):
    system, ctl, state = calibrated
    factor = state["status"]["calibration"]["factor"]
    out = tmp_path / "out"
    rc = cli.main(["load", "bursty", "--workdir", str(system.workdir), "--duration", "6", "--rate", "0.2",
                   "--peak-rate", "0.5", "--machine-scaled", "--size", "32x32", "--out", str(out), "--label", "scaled"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"peak {0.5 * factor:.2f} req/s" in text and f"{0.2 * factor:.2f} req/s" in text, text
    assert json.loads((out / "scaled" / "report.json").read_text())["summary"]["requests"] >= 1

    # a system without a calibration: a clear error, exit code 2
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "state.json").write_text(json.dumps({"url": system.url, "status": {"calibration": None}}))
    rc = cli.main(["load", "bursty", "--workdir", str(plain), "--duration", "5", "--machine-scaled",
                   "--out", str(tmp_path / "o2")])
    assert rc == 2
    assert "argus up --calibrate" in capsys.readouterr().err
