"""Accuracy of the exact scorer (argus.world.scorer) on rendered and corrupted images of the world.

- ground truth: N held-out prompts (`grammar.sample`, tasks evenly, sampler seed 0), image seed i for
  prompt i, rendered by `render.render`: the share judged fully correct, overall and per task;
- corrupted: the same prompts and seeds, one stated constraint broken (`corrupt.corrupted`: colour
  changed / swapped, object added / removed, shape changed, positions swapped): the share caught
  (not fully correct), overall, per task and per corruption kind;
- variants: clean; blurred (`corrupt.degrade`: Gaussian sigma 0.8, noise sd 6), a stand-in for a
  small diffusion model's softness; drifted (every object's colour 35 % of the way toward a palette
  neighbour, `corrupt.drifted`, then sigma 1.0 and noise sd 10); and the scorer's time per image.

Run: PYTHONPATH=src .venv/bin/python bench/bench_scorer.py [--n 2000] [--variants clean,blurred,drifted]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np
from tqdm import tqdm

from argus.world import corrupt, grammar, render, scorer


def run_variant(prompts: list[grammar.Prompt], variant: str, progress: bool = True) -> dict:
    """Accuracy counts for one image variant ('clean', 'blurred' or 'drifted')."""
    gt_ok, gt_n, bad_ok, bad_n, kind_ok, kind_n, failed_kind = (Counter() for _ in range(7))
    misses: list[str] = []
    secs = 0.0
    for i, p in enumerate(tqdm(prompts, desc=f"score {variant}", unit="prompt", disable=not progress)):
        objs = render.layout(p.scene, i)
        kind, bad_objs = corrupt.corrupted_layout(p.scene, i)
        if variant == "drifted":
            objs = corrupt.drifted(objs, np.random.default_rng([i, 12]))
            bad_objs = corrupt.drifted(bad_objs, np.random.default_rng([i, 13]))
        img, bad = render.draw(objs, render.background(i)), render.draw(bad_objs, render.background(i))
        if variant == "blurred":
            img = corrupt.degrade(img, np.random.default_rng([i, 10]))
            bad = corrupt.degrade(bad, np.random.default_rng([i, 11]))
        elif variant == "drifted":
            img = corrupt.degrade(img, np.random.default_rng([i, 10]), blur_sigma=1.0, noise=10)
            bad = corrupt.degrade(bad, np.random.default_rng([i, 11]), blur_sigma=1.0, noise=10)
        t0 = time.perf_counter()
        good_res = scorer.score_image(img, p.text)
        bad_res = scorer.score_image(bad, p.text)
        secs += time.perf_counter() - t0
        task = p.scene.task
        gt_n[task] += 1
        gt_ok[task] += good_res.correct
        bad_n[task] += 1
        bad_ok[task] += not bad_res.correct
        kind_n[kind] += 1
        kind_ok[kind] += not bad_res.correct
        for c in good_res.constraints:
            if not c.satisfied:
                failed_kind[c.kind] += 1
        if not good_res.correct:
            misses.append(f"ground truth judged wrong: seed {i} {p.text!r}: {good_res.summary()}")
        if bad_res.correct:
            misses.append(f"corruption missed: seed {i} {p.text!r} ({kind})")
    n = len(prompts)
    return {"variant": variant, "n": n,
            "ground_truth_correct": sum(gt_ok.values()) / n, "corrupted_caught": sum(bad_ok.values()) / n,
            "ground_truth_by_task": {t: f"{gt_ok[t]}/{gt_n[t]}" for t in gt_n},
            "caught_by_task": {t: f"{bad_ok[t]}/{bad_n[t]}" for t in bad_n},
            "caught_by_kind": {k: f"{kind_ok[k]}/{kind_n[k]}" for k in sorted(kind_n)},
            "ground_truth_failed_constraints": dict(failed_kind),
            "ms_per_image": 1000 * secs / (2 * n), "misses": misses[:20]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="prompts (one ground-truth and one corrupted image each)")
    ap.add_argument("--variants", default="clean,blurred,drifted")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    prompts = grammar.sample(np.random.default_rng(0), "held_out", args.n)
    results = [run_variant(prompts, v.strip(), not args.no_progress) for v in args.variants.split(",")]
    for r in results:
        print(f"\n== {r['variant']}: {r['n']} ground-truth + {r['n']} corrupted images, "
              f"{r['ms_per_image']:.1f} ms/image scoring ==")
        print(f"ground truth judged fully correct: {100 * r['ground_truth_correct']:.2f} %   (target >= 99 %)")
        print(f"corrupted caught:                  {100 * r['corrupted_caught']:.2f} %   (target >= 98 %)")
        print("| task | ground truth correct | corrupted caught |\n| --- | --- | --- |")
        for t in r["ground_truth_by_task"]:
            print(f"| {t} | {r['ground_truth_by_task'][t]} | {r['caught_by_task'][t]} |")
        print(f"constraints failed on ground truth, by kind: {r['ground_truth_failed_constraints'] or 'none'}")
        print("| corruption | caught |\n| --- | --- |")
        for k, v in r["caught_by_kind"].items():
            print(f"| {k} | {v} |")
        for m in r["misses"]:
            print("  " + m)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    # the targets are for the renderer's images (clean and blurred); drifted is a stress test
    ok = all(r["ground_truth_correct"] >= 0.99 and r["corrupted_caught"] >= 0.98 for r in results
             if r["variant"] != "drifted")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
