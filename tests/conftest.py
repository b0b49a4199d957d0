"""Shared fixtures: a running local system (real Triton, router, Envoy) for end-to-end tests."""

from __future__ import annotations

import time

import httpx
import pytest

from argus.local.runtime import LocalSystem
from argus.spec import parse_spec

SHARED_LEVEL = "cache-k0"  # the one level the shared local system serves, with one replica


def tiny_spec(**over):
    """A T2IService spec small enough for tests: 4 steps, tiny model."""
    raw = {"model": {"steps": 4, "height": 64, "width": 64},
           "levels": ["cache-k0", "cache-k2", "steps-2"], "throughputTarget": 1, "gpus": 2,
           "latencySLO": 30, "qualityFloor": 90}
    raw.update(over)
    return parse_spec(raw)


def serving_problems(system: LocalSystem, wait_s: float = 0.0) -> list[str]:
    """What keeps the shared system from serving SHARED_LEVEL now (empty: it serves): a live, ready replica,
    a running router and Envoy, and the router's /readyz through Envoy (it has loaded the published replica).
    Waits up to `wait_s` for the router to reload the endpoints file (every 0.5 s)."""
    problems = []
    live = [n for n, r in system.replicas.items() if r.level == SHARED_LEVEL and n in system.ready
            and (c := system.supervisor.children.get(n)) is not None and c.alive()]
    if not live:
        problems.append(f"no live ready {SHARED_LEVEL} replica (replicas: {sorted(system.replicas)}, "
                        f"ready: {sorted(system.ready)})")
    if down := system.down():
        problems.append(f"front door down: {', '.join(down)}")
    if problems:
        return problems
    deadline = time.monotonic() + wait_s
    while True:
        try:
            code = httpx.get(system.url + "/readyz", timeout=5).status_code
        except httpx.HTTPError as e:
            code = repr(e)
        if code == 200 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return [] if code == 200 else [f"GET /readyz through Envoy: {code}"]


@pytest.fixture(scope="session")
def _shared_local_system(tmp_path_factory):
    system = LocalSystem("svc", tiny_spec(), tmp_path_factory.mktemp("argus"), sizes=("64x64", "32x32"))
    try:
        system.start({SHARED_LEVEL: 1})
        yield system
    finally:
        system.stop()


@pytest.fixture
def local_system(_shared_local_system, request):
    """One Triton worker (cache-k0), the router and Envoy, shared by the whole session (started once, stopped at
    the end). Handed out only while it serves; a test that changes it must put it back: its teardown fails
    (naming the test) when the system no longer serves, instead of a later test failing for no reason of its own."""
    system = _shared_local_system
    if problems := serving_problems(system, wait_s=5):
        pytest.fail(f"the shared local system does not serve before {request.node.nodeid}: {'; '.join(problems)}",
                    pytrace=False)
    yield system
    if problems := serving_problems(system, wait_s=5):
        pytest.fail(f"{request.node.nodeid} left the shared local system not serving (restore it, or start an "
                    f"own LocalSystem): {'; '.join(problems)}", pytrace=False)
