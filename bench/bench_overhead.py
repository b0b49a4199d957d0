"""Router + Envoy overhead per request against a direct Triton gRPC call to the same worker.

Starts the local system (tiny model, 2 steps, 32x32 so the worker is fast and the
overhead is visible), then alternates batches of direct gRPC calls and calls through
Envoy → router → the same worker, sequentially, and prints p50/p99 of each and the
ratio. Run: .venv/bin/python bench/bench_overhead.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

import httpx

from argus.adapters.triton_client import TritonWorkerClient
from argus.local.runtime import LocalSystem
from argus.spec import parse_spec
from argus.levels import FULL


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def measure(system, n: int):
    rep = next(iter(system.replicas.values()))
    client = TritonWorkerClient(rep.grpc)
    direct, proxied = [], []
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(n):
            t = time.perf_counter()
            await client.generate(FULL, "a small boat", i, 32, 32)
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = await http.post(system.url + "/v1/images/generations",
                                json={"prompt": "a small boat", "size": "32x32", "seed": i})
            proxied.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            if (i + 1) % 50 == 0:
                print(f"  {i + 1}/{n}", file=sys.stderr, flush=True)
    await client.close()
    return direct, proxied


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    spec = parse_spec({"model": {"steps": 2}, "levels": [FULL, "cache-k1"], "throughputTarget": 1, "gpus": 1})
    system = LocalSystem("bench", spec, tempfile.mkdtemp(prefix="argus-bench-"), sizes=("32x32",))
    try:
        system.start({FULL: 1})
        asyncio.run(measure(system, 10))  # warm-up
        direct, proxied = asyncio.run(measure(system, args.requests))
    finally:
        system.stop()
    d50, d99, p50, p99 = pct(direct, .5), pct(direct, .99), pct(proxied, .5), pct(proxied, .99)
    print(f"requests: {args.requests} sequential, worker: tiny model, 2 steps, 32x32")
    print(f"direct Triton gRPC   p50 {d50*1e3:7.1f} ms  p99 {d99*1e3:7.1f} ms")
    print(f"Envoy + router       p50 {p50*1e3:7.1f} ms  p99 {p99*1e3:7.1f} ms")
    print(f"added                p50 {(p50-d50)*1e3:7.1f} ms  p99 {(p99-d99)*1e3:7.1f} ms")
    print(f"ratio (proxied/direct) p50 {p50/d50:.2f}  p99 {p99/d99:.2f}  mean {statistics.mean(proxied)/statistics.mean(direct):.2f}")


if __name__ == "__main__":
    main()
