"""Measure a running `argus up` system's batch service times, for the simulator's fidelity check.

    .venv/bin/python bench/fidelity_calibrate.py WORKDIR OUT.json [--rounds 3] [--sizes 1,2,4,8]

For each batch size b, every cache-k0 replica gets b concurrent requests at once, straight over gRPC
(all replicas busy together, as under load); the time until the last of them returns is one batch
time. Triton's own counters (executions and inferences per replica) say whether the b requests
really ran as one batch. Then solo requests through Envoy, and the same directly at one replica,
give the front door's (Envoy + router + PNG) added latency per request. The result is a level
profile JSON (throughput per batch size) plus the measured overhead, which
`bench_sim.py fidelity REPORT [SINCE_S] --calibration OUT.json` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
import urllib.request
from pathlib import Path

import httpx

from argus.adapters.triton_client import TritonWorkerClient
from argus.levels import FULL

LEVEL = FULL


def triton_counts(metrics_port: int) -> tuple[float, float]:
    """(executions, inferences) of the level's model on one replica, from Triton's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()

    def get(name):
        m = re.search(rf'^{name}{{[^}}]*model="{LEVEL}"[^}}]*}} (\S+)', text, re.M)
        return float(m.group(1)) if m else float("nan")

    return get("nv_inference_exec_count"), get("nv_inference_count")


async def batch_round(clients: list[TritonWorkerClient], b: int, seed: int) -> list[float]:
    """Send b requests to every replica at once; per replica the time until its last answer."""
    async def one_replica(c: TritonWorkerClient, k: int) -> float:
        t0 = time.monotonic()
        await asyncio.gather(*[c.generate(LEVEL, f"calibration prompt {seed} {k} {i}", seed * 100 + i, 64, 64,
                                          timeout_s=120) for i in range(b)])
        return time.monotonic() - t0

    return list(await asyncio.gather(*[one_replica(c, k) for k, c in enumerate(clients)]))


async def solo_direct(client: TritonWorkerClient, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.monotonic()
        await client.generate(LEVEL, f"solo direct {i}", 9000 + i, 64, 64, timeout_s=60)
        out.append(time.monotonic() - t0)
    return out


async def solo_envoy(url: str, n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient() as h:
        for i in range(n):
            t0 = time.monotonic()
            r = await h.post(f"{url}/v1/images/generations", json={"prompt": f"solo envoy {i}", "size": "64x64",
                                                                    "seed": 9500 + i}, timeout=60)
            r.raise_for_status()
            out.append(time.monotonic() - t0)
    return out


async def measure(state: dict, sizes: list[int], rounds: int, solo: int) -> dict:
    reps = [r for r in state["replicas"].values() if r["level"] == LEVEL and r["ready"]]
    if not reps:
        raise SystemExit(f"no ready {LEVEL} replica in the running system")
    clients = [TritonWorkerClient(r["grpc"]) for r in reps]
    await batch_round(clients, 1, 0)  # first call per replica (channel set-up), not counted
    batches: dict[int, list[float]] = {}
    exec_per_round: dict[int, list[float]] = {}
    for b in sizes:
        for k in range(rounds):
            before = [triton_counts(r["metrics"]) for r in reps]
            batches.setdefault(b, []).extend(await batch_round(clients, b, 10 * b + k + 1))
            after = [triton_counts(r["metrics"]) for r in reps]
            exec_per_round.setdefault(b, []).extend(a[0] - s[0] for a, s in zip(after, before))
        print(f"batch {b}: {statistics.median(batches[b]):.2f} s median of {len(batches[b])} "
              f"(min {min(batches[b]):.2f}, max {max(batches[b]):.2f}); Triton executions per round "
              f"{sorted(set(exec_per_round[b]))}", flush=True)
    direct = await solo_direct(clients[0], solo)
    front = await solo_envoy(state["url"], solo)
    for c in clients:
        await c.close()
    overhead = statistics.median(front) - statistics.median(direct)
    print(f"solo: direct {statistics.median(direct):.3f} s, through Envoy+router {statistics.median(front):.3f} s, "
          f"front-door overhead {overhead:.3f} s", flush=True)
    throughput = {str(b): b / statistics.median(batches[b]) for b in sizes}
    return {"level": LEVEL, "replicas": len(reps), "rounds": rounds, "batch_times_s": batches,
            "triton_executions_per_round": exec_per_round, "solo_direct_s": direct, "solo_envoy_s": front,
            "overhead_s": overhead, "throughput": throughput, "loadavg": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--solo", type=int, default=6)
    a = ap.parse_args()
    state = json.loads((a.workdir / "state.json").read_text())
    doc = asyncio.run(measure(state, [int(x) for x in a.sizes.split(",")], a.rounds, a.solo))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))
    print(f"calibration: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
