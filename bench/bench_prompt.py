"""Routing-decision cost of prompt understanding: embedding, index search, predictor; memory of a 100k index.

Prompts: DiffusionDB (first 5k, CC0) from ../shared/data/prompts when present, else the 300
bundled ones. Everything runs on ONE torch/BLAS thread (the router's per-core budget).

- embedding (MiniLM, offline): batches of 1, 8, 32, repeated prompts served from the LRU cache;
  baseline = batch 1 (per-prompt cost ratios)
- index search: real MiniLM embeddings of the prompt set, padded to 10k and 100k entries with
  perturbed copies (noise σ=0.05 then renormalised; labelled as such), 1 tenant and 10 tenants,
  and batched (8 and 32 concurrent queries per scan, as the planner does); baseline = the 10k search
- predictor: `decide` for the default 9 levels at 384 dimensions (synthetic weights: cost does not depend on values)
- memory: bytes the 100k index holds (tracemalloc peak while building, and the rows' nbytes)
- DiffusionDB replay: each prompt searched against the earlier ones, hit rate and mean K under the
  published CLIP thresholds (not calibrated for MiniLM: shows why calibration is needed)

Run: .venv/bin/python bench/bench_prompt.py [--prompts N] [--plot bench/plots/prompt_search.png]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from argus.levels import DEFAULT_LEVELS, parse_levels  # noqa: E402
from argus.prompt.embedder import CachedEmbedder, MiniLMEmbedder  # noqa: E402
from argus.prompt.index import SimilarityIndex, Thresholds  # noqa: E402
from argus.prompt.predictor import fit_predictor, level_costs  # noqa: E402
from argus.prompt.prompt_sets import bundled_prompts_path, load_prompts  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "prompts" / "diffusiondb_prompts_5k.txt"


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q))


CPU: list[float] = []  # thread CPU time of every timed call (less sensitive to a shared, overloaded host)


def timeit(fn, n):
    out = []
    for _ in range(n):
        c = time.thread_time()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        CPU.append(time.thread_time() - c)
    return out


def cpu_p50(since: int) -> float:
    return pct(CPU[since:], 50)


def bench_embedding(emb, prompts):
    rows = {}
    for b in (1, 8, 32):
        chunks = [prompts[i:i + b] for i in range(0, min(len(prompts), 40 * b), b)][:40 if b < 32 else 15]
        emb.encode(chunks[0])  # warm-up
        mark = len(CPU)
        ts = [timeit(lambda c=c: emb.encode(c), 1)[0] for c in chunks]
        rows[b] = (pct(ts, 50), pct(ts, 99), cpu_p50(mark))
    cached = CachedEmbedder(emb, capacity=1000)
    cached.encode(prompts[:32])
    hit = timeit(lambda: cached.encode([prompts[5]]), 200)
    return rows, (pct(hit, 50), pct(hit, 99))


def padded(base, n, rng):
    reps = int(np.ceil(n / len(base)))
    x = np.concatenate([base] * reps)[:n].copy()
    x[len(base):] += rng.normal(scale=0.05, size=(n - len(base), base.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_index(vecs, tenants):
    idx = SimilarityIndex(Thresholds.published_clip("all-MiniLM-L6-v2"), vecs.shape[1], capacity=len(vecs) + 1)
    for i, v in enumerate(vecs):
        idx.add(f"t{i % tenants}/{i}", f"t{i % tenants}", v, (5, 10, 15, 20, 25))
    return idx


def bench_search(base, queries, rng):
    rows = {}
    for n in (10_000, 100_000):
        vecs = padded(base, n, rng)
        for tenants in (1, 10):
            tracemalloc.start()
            idx = build_index(vecs, tenants)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            mark = len(CPU)
            ts = [timeit(lambda q=q: idx.search(q, "t0"), 1)[0] for q in queries]
            rows[(n, tenants)] = (pct(ts, 50), pct(ts, 99), idx.nbytes, peak, cpu_p50(mark))
            if tenants == 1:  # batched: one scan of the rows serves g concurrent queries
                for g in (8, 32):
                    mark = len(CPU)
                    ts = [timeit(lambda i=i: idx.search_many(queries[i:i + g], ["t0"] * g), 1)[0]
                          for i in range(0, len(queries) - g + 1, g)]
                    rows[(n, f"1, batch {g}")] = (pct(ts, 50) / g, pct(ts, 99) / g, idx.nbytes, peak,
                                                  cpu_p50(mark) / g)
            del idx
    return rows


def bench_predictor(rng):
    n, dim = 300, 384
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    levels = list(DEFAULT_LEVELS)
    pred = fit_predictor(encoder="all-MiniLM-L6-v2", model="bench", steps=50, levels=levels, embeddings=x,
                         quality={lv: 90 + rng.normal(size=n) for lv in levels}, similarity=rng.uniform(0.5, 1, n),
                         costs=level_costs(parse_levels(levels, 50), 50))
    from argus.prompt.index import Neighbour

    q = x.astype(np.float32)
    nb = Neighbour("k", "t", 0.9, 25)
    for i in range(200):
        pred.decide(q[i % n], nb, 92.0)
    ts = [timeit(lambda i=i: pred.decide(q[i % n], nb, 92.0), 1)[0] for i in range(5000)]
    return pct(ts, 50), pct(ts, 99)


def replay(vecs):
    idx = SimilarityIndex(Thresholds.published_clip("all-MiniLM-L6-v2"), vecs.shape[1], capacity=len(vecs) + 1)
    ks, sims = [], []
    for i, v in enumerate(vecs):
        nb = idx.search(v, "t")
        ks.append(nb.k if nb else 0)
        sims.append(nb.similarity if nb else np.nan)
        idx.add(f"t/{i}", "t", v, (5, 10, 15, 20, 25))
    ks = np.asarray(ks[1:])
    sims = np.asarray(sims[1:])
    return float((ks > 0).mean()), float(ks.mean()), np.nanpercentile(sims, [10, 25, 50, 75, 90])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=2000, help="real prompts embedded (the rest is padding)")
    ap.add_argument("--plot", type=Path, default=Path("bench/plots/prompt_search.png"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    src = SHARED if SHARED.exists() else bundled_prompts_path()
    prompts = load_prompts(src, limit=args.prompts)
    print(f"prompts: {src} ({len(prompts)} used); 1 thread; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rng = np.random.default_rng(0)
    emb = MiniLMEmbedder()
    erows, hit = bench_embedding(emb, prompts)
    base1 = erows[1][0]
    print("\nembedding (MiniLM, 1 thread)    wall p50/batch  wall p99/batch  wall p50/prompt  CPU p50/prompt  vs batch-1/prompt")
    for b, (p50, p99, c50) in erows.items():
        print(f"  batch {b:>2}                    {p50 * 1e3:9.2f} ms    {p99 * 1e3:9.2f} ms    {p50 / b * 1e3:9.2f} ms"
              f"    {c50 / b * 1e3:9.2f} ms    {p50 / b / base1:6.2f}x")
    print(f"  LRU cache hit (batch 1)           {hit[0] * 1e6:9.1f} us {hit[1] * 1e6:9.1f} us"
          f"                {hit[0] / base1:8.4f}x")
    t = time.perf_counter()
    vecs = np.concatenate([emb.encode(prompts[i:i + 64]) for i in range(0, len(prompts), 64)])
    print(f"  embedded {len(prompts)} prompts in {time.perf_counter() - t:.1f} s")
    queries = padded(vecs, len(vecs) + 300, rng)[-300:]
    srows = bench_search(vecs, queries, rng)
    s10 = srows[(10_000, 1)][0]
    print("\nindex search (brute force, float32; per query)     wall p50   wall p99   CPU p50    rows MiB  build peak MiB  vs 10k")
    for (n, tn), (p50, p99, nbytes, peak, c50) in srows.items():
        print(f"  {n:>7} entries, {str(tn):>10} tenant(s)   {p50 * 1e3:7.3f} ms {p99 * 1e3:7.3f} ms {c50 * 1e3:7.3f} ms"
              f" {nbytes / 2**20:9.1f} {peak / 2**20:14.1f}  {p50 / s10:6.2f}x")
    p50, p99 = bench_predictor(rng)
    print(f"\npredictor decide (9 levels, 384-d)    p50 {p50 * 1e6:.1f} us   p99 {p99 * 1e6:.1f} us   "
          f"(target p99 <= 1000 us: {'met' if p99 <= 1e-3 else 'MISSED'})")
    total = erows[1][0] + srows[(100_000, 1)][0] + p50
    print(f"decision at 100k entries, batch-1 embedding: {total * 1e3:.2f} ms p50 "
          f"(embedding {erows[1][0] / total:.0%}, search {srows[(100_000, 1)][0] / total:.0%}, predictor {p50 / total:.1%})")
    hr, mk, q = replay(vecs)
    print(f"\nDiffusionDB replay ({len(vecs)} prompts, MiniLM + published CLIP thresholds, uncalibrated): "
          f"hit rate {hr:.1%}, mean K {mk:.1f}; neighbour similarity p10/25/50/75/90 = "
          + "/".join(f"{x:.3f}" for x in q))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for tn, mk_ in ((1, "o-"), (10, "s--")):
            ns = [n for (n, t_) in srows if t_ == tn]
            ax.plot(ns, [srows[(n, tn)][1] * 1e3 for n in ns], mk_, label=f"search p99, {tn} tenant(s)")
        ax.axhline(erows[1][0] * 1e3, color="grey", ls=":", label="MiniLM embed, batch 1, p50")
        ax.set_xscale("log")
        ax.set_xlabel("index entries")
        ax.set_ylabel("ms (1 thread)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
