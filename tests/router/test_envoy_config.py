"""The Envoy bootstrap generator.

Cases: the generated bootstrap passes `envoy --mode validate` (with and without the local
rate limit); the request-size limit, circuit breaker and route timeout come from settings;
Envoy closes idle router connections before the router's keep-alive does (no reset races).
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


def test_envoy_closes_idle_router_connections_before_the_router_does():
    import inspect

    import argus.router.__main__ as router_main
    from argus.adapters.envoy_config import ROUTER_IDLE_TIMEOUT_S

    router = next(c for c in build_bootstrap(EnvoySettings())["static_resources"]["clusters"] if c["name"] == "router")
    opts = router["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    envoy_idle = float(opts["common_http_protocol_options"]["idle_timeout"].rstrip("s"))
    assert envoy_idle == ROUTER_IDLE_TIMEOUT_S
    # uvicorn's keep-alive (its default is 5 s) must outlast Envoy's idle timeout.
    assert "timeout_keep_alive=4 * ROUTER_IDLE_TIMEOUT_S" in inspect.getsource(router_main.main)
    assert 4 * ROUTER_IDLE_TIMEOUT_S > envoy_idle
