"""Router benchmark: routing decisions per second on one core, and the latency Envoy + router add.

1. Decisions: the router's pure per-request decision (policy look-up, FullQualityPlanner so
   no embedding, redirection draw in `served_level`, fallback order, least-pending replica
   pick) timed one by one on one pinned core: p50/p99 per decision and decisions/s.
2. Added latency: a trivial fast Triton worker (bench/fast_worker, the worker's exact
   tensor contract, no model) behind the real router and Envoy. For each rate (50, 200,
   500 req/s) open-loop arrivals alternate in 2 s blocks between direct Triton gRPC calls
   and calls through Envoy → router → the same worker, so both paths see the same machine
   load; p50/p99 of each and their difference, the served rate, and the CPU time the
   router, Envoy and the worker processes spent per served request (/proc). The load
   generator is one Python asyncio process on the same 2 shared cores: its achieved send
   rate and send lag are reported. Blocks are drained before the next one starts.

Run: .venv/bin/python bench/bench_router.py [--rates 50,200,500] [--blocks 5] [--block-s 2]
Writes bench/plots/router_bench.json and bench/plots/router_latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from argus.levels import FULL

HERE = Path(__file__).resolve().parent
URL = "/v1/images/generations"
LEVELS = [FULL, "cache-k5", "cache-k10", "cache-k20", "steps-25", "steps-15"]


def pct(xs, q):
    """The q-quantile (nearest rank) of xs."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# ---- 1. decision path --------------------------------------------------------------------------

async def _decide_loop(n: int) -> list[int]:
    from argus.policy.document import PolicyDocument
    from argus.policy.assign import safer_levels, served_level
    from argus.router.dispatch import Dispatcher
    from argus.policy.prompt_plan import FullQualityPlanner
    from argus.router.sources import FileEndpoints, PolicyStore

    tmp = Path(tempfile.mkdtemp(prefix="argus-decide-"))
    rng = random.Random(1)
    row = {lv: w / 21 for lv, w in zip(LEVELS, (6, 5, 4, 3, 2, 1))}
    doc = PolicyDocument(version=1, service="svc", quality_floor=90, latency_slo_s=30, image_size="64x64",
                         levels=LEVELS,
                         allocation={lv: 2 for lv in LEVELS}, redirection={lv: row for lv in LEVELS})
    (tmp / "policy").mkdir()
    (tmp / "policy" / "svc.json").write_text(doc.to_json())
    (tmp / "endpoints.json").write_text(json.dumps(
        {"svc": {lv: [f"127.0.0.1:{9000 + 10 * i + r}" for r in range(2)] for i, lv in enumerate(LEVELS)}}))
    policies, endpoints = PolicyStore(tmp / "policy"), FileEndpoints(tmp / "endpoints.json")
    dispatcher, planner = Dispatcher(endpoints), FullQualityPlanner()
    for i, r in enumerate(sorted({x for lv in LEVELS for x in endpoints.replicas("svc", lv)})):
        dispatcher.inflight[r] = i % 3  # some load, so the pick compares
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        # the decision exactly as Router._one makes it, before the worker call
        policy = policies.get("svc")
        floor = max(policy.quality_floor if policy else 90.0, 0.0)
        plan = await planner.plan("svc", f"prompt {i}", "tenant", floor)
        levels = policy.levels if policy else [plan.optimal_level]
        level = served_level(plan.optimal_level, policy, rng, dispatcher.available_levels("svc", levels))
        order = [level] + safer_levels(level, policy)
        replica = dispatcher.pick("svc", order[0], set())
        out.append(clock() - t)
        assert replica is not None
    return out


def bench_decisions(n: int) -> dict:
    """Time `n` decisions on one pinned core."""
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        asyncio.run(_decide_loop(2000))  # warm-up
        t = time.perf_counter()
        ns = asyncio.run(_decide_loop(n))
        wall = time.perf_counter() - t
    finally:
        os.sched_setaffinity(0, before)
    res = {"n": n, "core": core, "p50_us": pct(ns, .5) / 1e3, "p99_us": pct(ns, .99) / 1e3,
           "max_us": max(ns) / 1e3, "decisions_per_s": n / (sum(ns) / 1e9), "loop_per_s": n / wall}
    print(f"decisions: {n} on core {core}: p50 {res['p50_us']:.1f} us  p99 {res['p99_us']:.1f} us  "
          f"-> {res['decisions_per_s']:.0f} decisions/s (loop incl. timing {res['loop_per_s']:.0f}/s)", flush=True)
    return res


# ---- 2. added latency ----------------------------------------------------------------------------

class Paths:
    """The two ways to one fast worker: direct gRPC, and Envoy → router."""

    def __init__(self, system, grpc: str):
        import aiohttp

        from argus.adapters.triton_client import TritonWorkerClient

        self.url = system.url + URL
        self.direct = TritonWorkerClient(grpc)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                          timeout=aiohttp.ClientTimeout(total=10))

    async def call(self, path: str, seed: int) -> str | None:
        """One request on `path`; None when it succeeded, else what went wrong (status or error type)."""
        if path == "direct":
            r = await self.direct.generate(FULL, "a small boat", seed, 32, 32, timeout_s=10,
                                           store_key="bench/x")
            return None if r.image.shape == (32, 32, 3) else "bad image"
        async with self.http.post(self.url, json={"prompt": "a small boat", "size": "32x32", "seed": seed}) as r:
            body = await r.read()
            if r.status == 200 and len(body) > 100:
                return None
            try:
                err = json.loads(body)["error"]
                return f"HTTP {r.status} {err.get('type')}"
            except (ValueError, KeyError, TypeError):
                return f"HTTP {r.status}"

    async def close(self):
        """Close both clients."""
        await self.direct.close()
        await self.http.close()


def cpu_s(pid: int) -> float:
    """User+system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_block(paths: Paths, path: str, rate: float, seconds: float, pids: dict[str, int]) -> dict:
    """Open-loop arrivals at `rate` for `seconds` on one path; wait for all; latency from send."""
    lat, lags, errors = [], [], {}
    tasks = []
    cpu0 = {k: cpu_s(p) for k, p in pids.items()}

    async def one(i, scheduled):
        t = time.perf_counter()
        lags.append(t - scheduled)
        try:
            err = await paths.call(path, i)
        except Exception as e:  # a timeout or refusal counts as an error, never as a latency
            err = type(e).__name__
        if err is None:
            lat.append(time.perf_counter() - t)
        else:
            errors[err] = errors.get(err, 0) + 1

    n = int(rate * seconds)
    start = time.perf_counter() + 0.01
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    sent_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    done_s = time.perf_counter() - start
    cpu = {k: (cpu_s(p) - cpu0[k]) / max(len(lat), 1) * 1e3 for k, p in pids.items()}  # CPU ms per served request
    return {"lat": lat, "lags": lags, "errors": errors, "n": n, "achieved": n / max(sent_s, 1e-9),
            "served": len(lat) / done_s, "cpu_ms": cpu}


async def bench_latency(system, grpc: str, rates: list[float], blocks: int, block_s: float) -> list[dict]:
    """Interleaved direct/proxied blocks per rate; per-rate summary rows."""
    paths = Paths(system, grpc)
    pids = {k: system.supervisor.children[k].popen.pid for k in ("router", "envoy")}
    pids["worker"] = next(c.popen.pid for n, c in system.supervisor.children.items() if n.startswith("worker"))
    rows = []
    try:
        for path in ("direct", "proxied"):  # warm-up: channels, connections, first-call costs
            await run_block(paths, path, 50, 1.0, pids)
        for rate in rates:
            acc = {p: {"lat": [], "lags": [], "errors": {}, "n": 0, "achieved": [], "served": [], "cpu": []}
                   for p in ("direct", "proxied")}
            for b in range(blocks):
                order = ("direct", "proxied") if b % 2 == 0 else ("proxied", "direct")
                for path in order:
                    res = await run_block(paths, path, rate, block_s, pids)
                    a = acc[path]
                    a["lat"] += res["lat"]
                    a["lags"] += res["lags"]
                    for k, v in res["errors"].items():
                        a["errors"][k] = a["errors"].get(k, 0) + v
                    a["n"] += res["n"]
                    a["achieved"].append(res["achieved"])
                    a["served"].append(res["served"])
                    a["cpu"].append(res["cpu_ms"])
                    print(f"  {rate:4.0f} req/s block {b + 1}/{blocks} {path:8s} n={res['n']:5d} "
                          f"p50 {pct(res['lat'], .5) * 1e3:7.2f} ms p99 {pct(res['lat'], .99) * 1e3:8.2f} ms "
                          f"errors {sum(res['errors'].values())} sent {res['achieved']:.0f}/s served "
                          f"{res['served']:.0f}/s lag p99 {pct(res['lags'], .99) * 1e3:.1f} ms | CPU ms/req "
                          + " ".join(f"{k} {v:.2f}" for k, v in res["cpu_ms"].items()), flush=True)
            row = {"rate": rate}
            for p, a in acc.items():
                row[p] = {"n": a["n"], "errors": a["errors"], "p50_ms": pct(a["lat"], .5) * 1e3,
                          "p99_ms": pct(a["lat"], .99) * 1e3, "achieved_rps": min(a["achieved"]),
                          "served_rps": min(a["served"]), "lag_p99_ms": pct(a["lags"], .99) * 1e3,
                          "cpu_ms_per_req": {k: sum(c[k] for c in a["cpu"]) / len(a["cpu"]) for k in pids}}
            row["added_p50_ms"] = row["proxied"]["p50_ms"] - row["direct"]["p50_ms"]
            row["added_p99_ms"] = row["proxied"]["p99_ms"] - row["direct"]["p99_ms"]
            row["ratio_p50"] = row["proxied"]["p50_ms"] / row["direct"]["p50_ms"]
            row["ratio_p99"] = row["proxied"]["p99_ms"] / row["direct"]["p99_ms"]
            print(f"{rate:4.0f} req/s: direct p50 {row['direct']['p50_ms']:.2f} p99 {row['direct']['p99_ms']:.2f} | "
                  f"Envoy+router p50 {row['proxied']['p50_ms']:.2f} p99 {row['proxied']['p99_ms']:.2f} | added "
                  f"p50 {row['added_p50_ms']:.2f} p99 {row['added_p99_ms']:.2f} ms | ratio proxied/direct p50 "
                  f"{row['ratio_p50']:.2f} p99 {row['ratio_p99']:.2f}", flush=True)
            rows.append(row)
    finally:
        await paths.close()
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Left: p50/p99 per rate of both paths; right: the added latency against the 5 ms target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rates = [r["rate"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for p, color in (("direct", "tab:blue"), ("proxied", "tab:red")):
        label = "direct Triton gRPC" if p == "direct" else "Envoy + router"
        ax.plot(rates, [r[p]["p50_ms"] for r in rows], "o-", color=color, label=f"{label} p50")
        ax.plot(rates, [r[p]["p99_ms"] for r in rows], "s--", color=color, label=f"{label} p99")
    ax2.plot(rates, [max(r["added_p50_ms"], 0.01) for r in rows], "o-", color="k", label="added p50")
    ax2.plot(rates, [max(r["added_p99_ms"], 0.01) for r in rows], "s--", color="k", label="added p99")
    ax2.axhline(5, color="tab:green", lw=1, ls=":", label="target: added p99 5 ms at 200 req/s")
    for a, title in ((ax, "latency per path"), (ax2, "added by Envoy + router (p99 - p99, p50 - p50)")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(rates, [f"{r:g}" for r in rates])
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel("offered load (requests/s, open loop)")
        a.set_ylabel("ms")
        a.set_title(title, fontsize=10)
        a.legend(fontsize=8)
    fig.suptitle("Router benchmark: trivial fast Triton worker, 2 shared cores", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block-s", type=float, default=2.0)
    ap.add_argument("--decisions", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=HERE / "plots")
    args = ap.parse_args()
    rates = [float(x) for x in args.rates.split(",")]

    decisions = bench_decisions(args.decisions)

    from argus.local.runtime import LocalSystem
    from argus.policy.document import PolicyDocument
    from argus.spec import parse_spec

    os.environ["ARGUS_MODEL_TEMPLATE"] = str(HERE / "fast_worker" / "argus_fast")
    spec = parse_spec({"model": {"steps": 2}, "levels": [FULL, "cache-k1"], "throughputTarget": 1, "gpus": 1})
    system = LocalSystem("bench", spec, tempfile.mkdtemp(prefix="argus-bench-router-"), sizes=("32x32",))
    doc = PolicyDocument(version=1, service="bench", quality_floor=90, latency_slo_s=30, image_size="32x32",
                         levels=[FULL, "cache-k1"],
                         allocation={FULL: 1}, redirection={FULL: {FULL: 1.0}})
    (system.workdir / "policy" / "bench.json").write_text(doc.to_json())
    try:
        print("starting fast worker, router, Envoy ...", flush=True)
        system.start({FULL: 1})
        grpc = next(iter(system.replicas.values())).grpc
        rows = asyncio.run(bench_latency(system, grpc, rates, args.blocks, args.block_s))
    finally:
        system.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "loadavg_end": os.getloadavg(), "decisions": decisions, "latency": rows,
              "blocks": args.blocks, "block_s": args.block_s}
    (args.out / "router_bench.json").write_text(json.dumps(result, indent=1))
    plot(rows, args.out / "router_latency.png")
    print(f"\n| offered req/s | direct p50 / p99 (ms) | Envoy+router p50 / p99 (ms) | added p50 / p99 (ms) | "
          f"sent / served req/s (proxied, worst block) | router / Envoy CPU ms per served req | failed (proxied) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        d, p = r["direct"], r["proxied"]
        cpu = p["cpu_ms_per_req"]
        errs = ", ".join(f"{v} {k}" for k, v in p["errors"].items()) or "0"
        print(f"| {r['rate']:g} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {p['p50_ms']:.2f} / {p['p99_ms']:.2f} | "
              f"{r['added_p50_ms']:.2f} / {r['added_p99_ms']:.2f} | {p['achieved_rps']:.0f} / {p['served_rps']:.0f} | "
              f"{cpu['router']:.2f} / {cpu['envoy']:.2f} | {errs} of {p['n']} |")
    print(f"wrote {args.out / 'router_bench.json'} and {args.out / 'router_latency.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
