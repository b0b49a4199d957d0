"""Issue 17 optimality check: the per-class plan against a per-prompt fluid LP at the same per-level load.

For each random snapshot: draw N simulated prompts (argus.sim.prompts: per-prompt quality at every level,
cache-hit depth, the predictor's optimal level), build their classes (argus.policy.classes) from that very
sample, plan with `solve()`; then assign the individual prompts to levels by an LP that serves exactly the
plan's load at every level (same per-level utilization) with the same pair rules (cache levels up to the
prompt's hit; levels at least as safe as its optimal one unless the plan declares overload) and the same
share of every prompt served (an overloaded plan sheds alike from every class), maximizing quality. Reported: the LP's mean quality minus the plan's expected one (the class model's loss; target
<= 0.5 points), and the quality the router's per-prompt placement (prices + shares, argus.policy.assign)
reaches on the same prompts, its ledger starting full as the router's does.

`--fixed`: instead, the per-prompt fluid quality of a few fixed allocations of the paper setup (8 GPUs,
6.5 req/s): what placement alone can reach on each.

Usage: .venv/bin/python bench/bench_optimality.py [--n 200] [--prompts 1500] [--fixed]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linprog

from argus.policy import classes as prompt_classes
from argus.policy.decision import to_policy_document
from argus.policy.optimizer import solve
from argus.policy.profile import load_default_profile
from argus.policy.snapshot import Snapshot
from argus.policy.assign import full_credit, place_rows, score_rows
from argus.sim.prompts import PromptModel, cache_allowed, draw
from argus.levels import FULL


def one(rng: np.random.Generator, levels, n_prompts: int) -> dict:
    names = [lp.level for lp in levels]
    T = np.array([lp.peak_throughput for lp in levels])
    p = draw(PromptModel(), levels, 90.0, n_prompts, rng)
    pred = np.nan_to_num(p.predicted, nan=0.0)
    table = prompt_classes.table(p.kmax, p.quality, pred, p.optimal, levels)
    gpus = int(rng.integers(4, 33))
    demand = float(gpus * T[0] * rng.uniform(0.8, 2.6))  # 0.8..2.6x the full-quality capacity
    s = Snapshot(gpus=gpus, profiles=levels, demand=demand, h={}, throughput_target=1e6, quality_floor=90.0,
                 latency_slo=30.0, classes=tuple(table.values()))
    d = solve(s)
    load = np.array([d.served_by_level[n] for n in names])
    # per-prompt fluid LP: prompt i carries demand/N; serve exactly `load` at each level
    ok = cache_allowed(levels, p.kmax)
    if not d.overload:
        ok &= np.arange(len(names))[None, :] <= p.optimal[:, None]
    ok &= load[None, :] > 1e-9
    ii, jj = np.nonzero(ok)
    m = demand / n_prompts
    a_eq = np.zeros((len(names), len(ii)))
    a_eq[jj, np.arange(len(ii))] = m
    each = np.zeros((n_prompts, len(ii)))
    each[ii, np.arange(len(ii))] = 1.0
    # the plan sheds the same fraction of every class (argus.policy.solver.milp: the data plane drops late
    # requests whatever their prompt), so the LP serves that fraction of every prompt
    f = min(1.0, float(load.sum()) / demand)
    res = linprog(-p.quality[ii, jj] * m, A_eq=np.vstack([a_eq, each]),
                  b_eq=np.concatenate([load, np.full(n_prompts, f)]), bounds=(0, None), method="highs")
    lp_q = -res.fun / load.sum() if res.status == 0 else float("nan")
    # the router: prices and shares of the decision, the prompts in random order
    doc = to_policy_document(d, service="s", version=1, quality_floor=90.0, latency_slo_s=30.0, image_size="64x64",
                             generated_at=0.0)
    scores = score_rows(p.predicted, doc)
    j = place_rows(scores, np.array([doc.shares.get(n, 0.0) for n in names]), full_credit(len(names)),
                   np.zeros(len(names)))
    placed = p.quality[np.arange(n_prompts), np.where(j >= 0, j, 0)].mean()
    return {"plan": d.quality, "lp": lp_q, "router": float(placed), "overload": d.overload, "lp_ok": res.status == 0}


def fixed_allocations(n_prompts: int = 4000, rate: float = 6.5) -> None:
    """Per-prompt fluid LP (each prompt anywhere its hit allows, at its true quality) on fixed allocations."""
    levels = load_default_profile().levels
    names = [lp.level for lp in levels]
    T = np.array([lp.peak_throughput for lp in levels])
    p = draw(PromptModel(), levels, 90.0, n_prompts, np.random.default_rng(1))
    ok = cache_allowed(levels, p.kmax)
    print(f"| allocation (8 GPUs) | capacity req/s | utilization at {rate} req/s | per-prompt fluid quality % |")
    print("| --- | --- | --- | --- |")
    for alloc in ({FULL: 1, "steps-20": 7}, {FULL: 1, "steps-25": 1, "steps-20": 6},
                  {FULL: 1, "cache-k15": 1, "steps-20": 6}, {FULL: 1, "cache-k10": 1, "steps-20": 6},
                  {FULL: 1, "cache-k5": 1, "steps-20": 6}, {FULL: 2, "steps-20": 6}):
        x = np.array([alloc.get(n, 0) for n in names], dtype=float)
        ii, jj = np.nonzero(ok & (x[None, :] > 0))
        a_eq = np.zeros((n_prompts, len(ii)))
        a_eq[ii, np.arange(len(ii))] = 1.0
        a_ub = np.zeros((len(names), len(ii)))
        a_ub[jj, np.arange(len(ii))] = rate / n_prompts
        res = linprog(-p.quality[ii, jj], A_ub=a_ub, b_ub=x * T, A_eq=a_eq, b_eq=np.ones(n_prompts),
                      bounds=(0, None), method="highs")
        q = -res.fun / n_prompts if res.status == 0 else float("nan")
        label = " + ".join(f"{v} {k}" for k, v in alloc.items())
        print(f"| {label} | {x @ T:.2f} | {rate / (x @ T):.0%} | {q:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fixed", action="store_true", help="fixed allocations of the paper setup instead")
    args = ap.parse_args()
    if args.fixed:
        fixed_allocations()
        return
    levels = load_default_profile().levels
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    rows = [one(rng, levels, args.prompts) for _ in range(args.n)]
    ok = [r for r in rows if r["lp_ok"] and r["plan"] is not None]
    gap = np.array([r["lp"] - r["plan"] for r in ok])
    over = np.array([r["overload"] for r in ok])
    print(f"{len(ok)} of {args.n} snapshots ({over.mean():.0%} overloaded), {args.prompts} prompts each, "
          f"{time.perf_counter() - t:.0f} s")
    print("| quantity | median | p90 | max |")
    print("| --- | --- | --- | --- |")
    print(f"| per-prompt LP quality - plan's expected quality (points) | {np.median(gap):.3f} | "
          f"{np.percentile(gap, 90):.3f} | {gap.max():.3f} |")
    rg = np.array([r["lp"] - r["router"] for r in ok])
    print(f"| per-prompt LP quality - router placement's (points; the router also serves what the plan sheds) | "
          f"{np.median(rg):.3f} | {np.percentile(rg, 90):.3f} | {rg.max():.3f} |")
    print(f"within 0.5 points: {np.mean(gap <= 0.5):.0%} of snapshots")


if __name__ == "__main__":
    main()
