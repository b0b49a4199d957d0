"""Approximate caching through a real Triton server (bundled tritonserver, python backend, gRPC).

One tritonserver process serves the level `cache-k2` (N=4) over a latent-store directory.

Cases: a request with STORE_KEY and no CACHE_KEY runs the full schedule from noise (a miss)
and stores its checkpoint (listed in the store with tenant and prompt); with that CACHE_KEY it returns the full run's image and INFO says
hit, k_used=2, steps_run=2; a CACHE_KEY that was never stored falls back to the full run
(INFO fallback_reason=missing, same image); Triton's /metrics exposes the custom counter
argus_worker_cache_total with level/result/reason labels for exactly these outcomes. A DEADLINE the
request's level would miss makes the worker run it at a faster steps-* level (INFO late_from).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from argus.adapters.triton_client import TritonWorkerClient, WorkerOverloaded
from argus.local.supervisor import free_port
from argus.telemetry import WORKER_CACHE
from argus.worker.latent_store import DirectoryLatentStore
from argus.contract import TritonPorts
from argus.worker.repository import render_repository, triton_command
from argus.worker.settings import WorkerSettings

LEVELS = ("cache-k0", "cache-k2", "steps-1")
LEVEL = "cache-k2"


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    """A tritonserver serving cache-k2 over a store directory; yields (ports, store dir)."""
    work = tmp_path_factory.mktemp("triton")
    repo = render_repository(work / "models", LEVEL)
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    cmd, extra = triton_command(repo, ports, work)
    settings = WorkerSettings(level=LEVEL, steps=4, levels=LEVELS, latent_store=str(work / "latents"))
    env = {**os.environ, **extra, **settings.to_env(), "OMP_NUM_THREADS": "1"}  # the machine is shared
    log = open(work / "triton.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, (work / "triton.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/v2/health/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "Triton not ready in 180 s"
            time.sleep(0.5)
        yield ports, work / "latents"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _calls(url: str):
    client = TritonWorkerClient(url)
    try:
        full = await client.generate(LEVEL, "a red fox in the snow", 11, 32, 32, store_key="alice/fox")
        hit = await client.generate(LEVEL, "a red fox in the snow", 11, 32, 32, cache_key="alice/fox")
        miss = await client.generate(LEVEL, "a red fox in the snow", 11, 32, 32, cache_key="alice/never")
        return full, hit, miss
    finally:
        await client.close()


def test_cache_resume_through_triton(triton):
    ports, store_dir = triton
    full, hit, miss = asyncio.run(_calls(f"127.0.0.1:{ports.grpc}"))
    assert (full.info.level, full.info.steps_run, full.info.k_used, full.info.fallback_reason) == (
        LEVEL, 4, 0, "no_key")
    assert (hit.info.level, hit.info.cache_hit, hit.info.k_used, hit.info.steps_run) == (
        "cache-k2", True, 2, 2)
    assert hit.info.fallback_reason is None
    assert np.abs(hit.image.astype(int) - full.image.astype(int)).max() <= 1
    assert (miss.info.cache_hit, miss.info.k_used, miss.info.steps_run, miss.info.fallback_reason) == (
        False, 0, 4, "missing")
    assert np.array_equal(miss.image, full.image)

    (entry,) = DirectoryLatentStore(store_dir, 1 << 30).list_entries()
    assert (entry.key, entry.tenant, entry.prompt, entry.steps) == ("alice/fox", "alice", "a red fox in the snow", (2,))

    text = urllib.request.urlopen(f"http://127.0.0.1:{ports.metrics}/metrics", timeout=5).read().decode()
    counts = {}
    for labels, value in re.findall(rf"^{WORKER_CACHE}{{([^}}]*)}} (\S+)$", text, re.M):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[(d["level"], d["result"], d["reason"])] = float(value)
    assert counts == {(LEVEL, "miss", "no_key"): 1.0, (LEVEL, "hit", ""): 1.0, (LEVEL, "fallback", "missing"): 1.0}


def test_a_level_of_the_same_weights_per_request_through_triton(triton):
    """The worker loaded as cache-k2 serves a request whose LEVEL is cache-k0: the full run from noise."""
    ports, _ = triton

    async def call():
        client = TritonWorkerClient(f"127.0.0.1:{ports.grpc}")
        try:
            return await client.generate(LEVEL, "a blue square", 3, 32, 32, level="cache-k0")
        finally:
            await client.close()
    res = asyncio.run(call())
    assert (res.info.level, res.info.steps_run, res.info.k_used) == ("cache-k0", 4, 0)



def test_a_deadline_the_level_would_miss_runs_a_faster_level_through_triton(triton):
    """DEADLINE (Unix time) through Triton: once the worker has timed a run, a request it cannot finish by its
    deadline at cache-k0 runs at steps-1, the fastest level of its weights, and INFO names both levels."""
    ports, _ = triton

    async def call():
        client = TritonWorkerClient(f"127.0.0.1:{ports.grpc}")
        try:
            warm = await client.generate(LEVEL, "a green circle", 5, 32, 32, level="cache-k0")
            late = await client.generate(LEVEL, "a green circle", 5, 32, 32, level="cache-k0",
                                         deadline=time.time() - 1.0)
            return warm, late
        finally:
            await client.close()
    warm, late = asyncio.run(call())
    assert (warm.info.level, warm.info.late_from, warm.info.steps_run) == ("cache-k0", None, 4)
    assert (late.info.level, late.info.late_from, late.info.steps_run) == ("steps-1", "cache-k0", 1)
    assert late.info.late_why == "deadline"


def test_a_surge_past_the_levels_speed_runs_a_faster_level_through_triton(triton):
    """A flood of requests whose deadlines are far off: none is late, but they reach the worker far faster
    than full batches at cache-k0 serve them. The worker meters its arrivals from this Triton's own counters
    (answered + queued) and, once it has timed a full batch, runs the rest at steps-1 (INFO late_from)."""
    ports, _ = triton
    n = 300

    async def flood():
        client = TritonWorkerClient(f"127.0.0.1:{ports.grpc}")
        try:
            far, calls = time.time() + 3600.0, []
            for i in range(n):  # open loop, 100/s: what the queue (64) cannot hold is refused, and counted too
                calls.append(asyncio.ensure_future(client.generate(
                    LEVEL, "a red square", i, 32, 32, level="cache-k0", deadline=far, timeout_s=300.0)))
                await asyncio.sleep(0.01)
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()
    answers = asyncio.run(flood())
    out = [g for g in answers if not isinstance(g, Exception)]
    assert all(isinstance(e, WorkerOverloaded) for e in answers if isinstance(e, Exception))
    moved = [g for g in out if g.info.late_from == "cache-k0"]
    assert all(g.info.level == "steps-1" and g.info.steps_run == 1 for g in moved)
    assert sum(g.info.late_why == "surge" for g in moved) > len(out) / 4  # none was late: the surge moved them
    assert any(g.info.late_from is None and g.info.level == "cache-k0" for g in out)  # before the surge showed
