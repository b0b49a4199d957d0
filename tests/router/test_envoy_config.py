"""The Envoy bootstrap generator.

Cases: the generated bootstrap passes `envoy --mode validate` (with and without the local
rate limit); the request-size limit, circuit breaker and route timeout come from settings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from argus.adapters.envoy_config import EnvoySettings, build_bootstrap

ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")


@pytest.mark.parametrize("rps", [0, 5])
def test_bootstrap_validates_with_real_envoy(tmp_path, rps):
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(build_bootstrap(EnvoySettings(rate_limit_rps=rps))))
    out = subprocess.run([ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout + out.stderr


def test_limits_come_from_settings():
    b = build_bootstrap(EnvoySettings(max_request_bytes=1234, max_pending_requests=7, route_timeout_s=9))
    hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_filters"][0]["typed_config"]["max_request_bytes"] == 1234
    assert hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["timeout"] == "9s"
    router = b["static_resources"]["clusters"][0]
    assert router["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 7
