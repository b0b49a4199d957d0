"""Shared fixtures: a running local system (real Triton, router, Envoy) for end-to-end tests."""

from __future__ import annotations

import pytest

from argus.local.runtime import LocalSystem
from argus.spec import parse_spec


def tiny_spec(**over):
    """A T2IService spec small enough for tests: 4 steps, tiny model."""
    raw = {"model": {"steps": 4, "height": 64, "width": 64},
           "levels": ["cache-k0", "cache-k2", "steps-2"], "throughputTarget": 1, "gpus": 2,
           "latencySLO": 30, "qualityFloor": 90}
    raw.update(over)
    return parse_spec(raw)


@pytest.fixture(scope="session")
def local_system(tmp_path_factory):
    """One Triton worker (cache-k0), the router and Envoy; stopped at the end of the session."""
    system = LocalSystem("svc", tiny_spec(), tmp_path_factory.mktemp("argus"), sizes=("64x64", "32x32"))
    try:
        system.start({"cache-k0": 1})
        yield system
    finally:
        system.stop()
