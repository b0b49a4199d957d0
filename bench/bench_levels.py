"""Latency per approximation level against the full level, on the tiny model (CPU).

Each level is served the way a worker serves it: WorkerService.handle over a real
directory latent store; cache levels resume from a latent the full run stored (the bench
checks INFO says hit at the right K, so no fallback is timed). Levels are timed in
interleaved, shuffled rounds so machine load drifts over all of them alike; the median
per level is divided by the full level's median from the same run and compared with the
ideal step ratio (N-K)/N or S/N. The load average is printed: the dev machines are shared.
Besides wall-clock latency the process CPU time of each call is recorded: with one torch
thread it is the work done, whatever other processes take from the cores, so its ratio
separates the step saving from load noise.

Run: .venv/bin/python bench/bench_levels.py [--steps 50] [--size 64] [--batches 1,4] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

from argus.levels import DEFAULT_LEVELS, parse_level
from argus.worker.latent_store import DirectoryLatentStore
from argus.worker.pipeline import DiffusionPipeline
from argus.worker.service import CountingMetrics, WorkerService, WorkRequest
from argus.worker.settings import WorkerSettings

PROMPTS = ["a lighthouse on a cliff at dawn", "a bowl of ramen, studio photo", "an astronaut riding a horse",
           "a watercolor fox in the snow"]


def requests(batch: int, size: int, cache: bool, store: bool = False) -> list[WorkRequest]:
    """`batch` requests of distinct prompts; cache levels name each prompt's stored key."""
    return [WorkRequest(PROMPTS[i % len(PROMPTS)], 100 + i, size, size,
                        cache_key=f"bench/{i % len(PROMPTS)}" if cache else None,
                        store_key=f"bench/{i % len(PROMPTS)}" if store else None) for i in range(batch)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; exit 1 if a level misses the ±10% band."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--levels", default=",".join(DEFAULT_LEVELS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    levels = args.levels.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    store_dir = tempfile.mkdtemp(prefix="argus-bench-levels-")
    store = DirectoryLatentStore(store_dir, 1 << 30)
    base = dict(steps=args.steps, levels=tuple(levels), latent_store=store_dir)
    pipe = DiffusionPipeline(WorkerSettings(level="cache-k0", **base).pipeline_settings())
    services = {lv: WorkerService(WorkerSettings(level=lv, **base), pipeline=pipe, store=store,
                                  metrics=CountingMetrics()) for lv in levels}
    # The full runs that feed the cache (also warm-up), at the largest batch.
    services["cache-k0"].handle(requests(len(PROMPTS), args.size, cache=False, store=True))
    load_before = os.getloadavg()
    times: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    rng = random.Random(0)
    t0 = time.time()
    for rep in range(args.reps):
        order = [(lv, b) for lv in levels for b in batches]
        rng.shuffle(order)
        for lv, b in order:
            level = parse_level(lv, args.steps)
            is_cache = level.family == "cache" and level.skip > 0
            batch = requests(b, args.size, cache=is_cache)
            t, c = time.perf_counter(), time.process_time()
            res = services[lv].handle(batch)
            times.setdefault((lv, b), []).append(time.perf_counter() - t)
            cpu.setdefault((lv, b), []).append(time.process_time() - c)
            for r in res:
                want = (level.skip, level.steps_run(args.steps), is_cache)
                got = (r.info["k_used"], r.info["steps_run"], r.info["cache_hit"])
                if got != want:
                    print(f"{lv}: INFO says k_used/steps_run/hit={got}, expected {want}", file=sys.stderr)
                    return 2
        print(f"round {rep + 1}/{args.reps} done, {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.2f}",
              file=sys.stderr)
    load_after = os.getloadavg()
    print(f"tiny model, N={args.steps}, {args.size}x{args.size}, torch threads={args.threads}, "
          f"{args.reps} interleaved rounds, median latency; load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)} "
          f"on {os.cpu_count()} cores")
    print()
    print("| level | batch | steps run | ideal | median s | min-max s | ratio vs full | ratio/ideal "
          "| CPU s | CPU ratio | CPU ratio/ideal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst = worst_cpu = 0.0
    for b in batches:
        full = statistics.median(times[("cache-k0", b)])
        full_cpu = statistics.median(cpu[("cache-k0", b)])
        for lv in levels:
            level = parse_level(lv, args.steps)
            xs, cs = times[(lv, b)], cpu[(lv, b)]
            med, cmed = statistics.median(xs), statistics.median(cs)
            ideal = level.cost_ratio(args.steps)
            ratio, cratio = med / full, cmed / full_cpu
            worst, worst_cpu = max(worst, abs(ratio / ideal - 1)), max(worst_cpu, abs(cratio / ideal - 1))
            print(f"| {lv} | {b} | {level.steps_run(args.steps)} | {ideal:.2f} | {med:.2f} | {min(xs):.2f}-{max(xs):.2f} "
                  f"| {ratio:.3f} | {ratio / ideal:.3f} | {cmed:.2f} | {cratio:.3f} | {cratio / ideal:.3f} |")
    print()
    print(f"worst |ratio/ideal - 1|: wall {worst:.3f}, CPU {worst_cpu:.3f} "
          f"({'within' if worst <= 0.10 else 'OUTSIDE'} the 10% band on wall-clock latency)")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
