"""The world model's quality, measured by the exact scorer: the model card's tables.

    .venv/bin/python bench/bench_world_model.py --model src/argus/data/models/world-sd --n 1002

On `--n` held-out prompts (every task type equally often) with fixed seeds (seed = index), at the
model's full schedule of `--steps` steps:

- full quality: mean exact score and share fully correct, by task type;
- step reduction: the same prompts and seeds at 100 / 75 / 50 / 25 % of the steps;
- approximate caching: each prompt resumes at step K from the latent of its nearest other prompt in
  the set (MiniLM cosine similarity, the router's embedder), by K and by similarity bin;
- the per-prompt spread: at each level, the share of prompts whose score does not drop.

Relative quality is the scorer's rule (`argus.world.scorer.relative_quality`). Writes JSON, a markdown
table file and a PNG next to `--out`. Runs the worker's own pipeline code (`argus.worker.pipeline`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from argus.levels import FULL

SIM_BINS = (0.0, 0.7, 0.8, 0.9, 0.95, 1.0001)


def _bin(s: float) -> str:
    for lo, hi in zip(SIM_BINS, SIM_BINS[1:]):
        if lo <= s < hi:
            return f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}"
    return "?"


def generate(pipe, reqs, level, checkpoints=(), batch=64, bar=None):
    out = []
    for i in range(0, len(reqs), batch):
        out += pipe.generate(reqs[i:i + batch], level, checkpoints=checkpoints)
        if bar is not None:
            bar.update(len(reqs[i:i + batch]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="StableDiffusionPipeline directory")
    ap.add_argument("--n", type=int, default=1002)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model card's (model_index.json sidecar)")
    ap.add_argument("--ks", default="5,10,15")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="out/bench-world-model/result.json")
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    from argus.levels import parse_level
    from argus.prompt.embedder import MiniLMEmbedder, normalize
    from argus.prompt.profiling import nearest_neighbours
    from argus.worker.pipeline import DiffusionPipeline, GenRequest, PipelineSettings
    from argus.world import grammar
    from argus.world.model import recommended_guidance
    from argus.world.scorer import relative_quality, score_image

    torch.set_num_threads(args.threads)
    g = args.guidance if args.guidance is not None else recommended_guidance(args.model)
    pipe = DiffusionPipeline(PipelineSettings(steps=args.steps, guidance_scale=g, weights_path=args.model,
                                              model_name="world-sd"))
    prompts = [p.text for p in grammar.sample(np.random.default_rng(0), "held_out", args.n)]
    tasks = [grammar.parse(p).task for p in prompts]
    ks = [int(k) for k in args.ks.split(",")]
    n_full = args.steps
    t0 = time.time()
    reqs = [GenRequest(p, i, 64, 64) for i, p in enumerate(prompts)]
    bar = tqdm(total=len(prompts), desc="full", mininterval=5)
    full = generate(pipe, reqs, parse_level(FULL, n_full), checkpoints=tuple(ks), batch=args.batch, bar=bar)
    bar.close()

    def scores(results):
        return np.array([score_image(r.image, p).score for r, p in zip(results, prompts)])

    full_s = scores(full)
    levels: dict[str, np.ndarray] = {}
    for frac in (0.75, 0.5, 0.25):
        s = max(1, round(n_full * frac))
        bar = tqdm(total=len(prompts), desc=f"steps-{s}", mininterval=5)
        levels[f"steps-{s}"] = scores(generate(pipe, reqs, parse_level(f"steps-{s}", n_full), batch=args.batch, bar=bar))
        bar.close()
    emb = normalize(MiniLMEmbedder().encode(prompts))
    nb, sim = nearest_neighbours(emb)
    for k in ks:
        rr = [GenRequest(p, i, 64, 64, resume_latent=full[int(nb[i])].checkpoints[k], resume_step=k)
              for i, p in enumerate(prompts)]
        bar = tqdm(total=len(prompts), desc=f"cache-k{k}", mininterval=5)
        levels[f"cache-k{k}"] = scores(generate(pipe, rr, parse_level(f"cache-k{k}", n_full), batch=args.batch, bar=bar))
        bar.close()
    seconds = time.time() - t0

    def rq(a):
        return np.array([relative_quality(x, f) for x, f in zip(a, full_s)]) * 100

    res = {"model": args.model, "n": len(prompts), "steps": n_full, "guidance": g, "seconds": seconds,
           "full": {"mean": float(full_s.mean()), "correct": float(np.mean(full_s == 100)),
                    "by_task": {t: {"mean": float(full_s[np.array(tasks) == t].mean()),
                                    "correct": float(np.mean(full_s[np.array(tasks) == t] == 100)),
                                    "n": int(np.sum(np.array(tasks) == t))} for t in grammar.TASKS}},
           "levels": {}, "cache_by_sim": {}}
    for name, a in levels.items():
        res["levels"][name] = {"mean_score": float(a.mean()), "mean_relative_quality": float(rq(a).mean()),
                               "share_not_dropped": float(np.mean(a >= full_s)),
                               "by_task": {t: float(a[np.array(tasks) == t].mean()) for t in grammar.TASKS}}
    bins = [_bin(s) for s in sim]
    for k in ks:
        a = rq(levels[f"cache-k{k}"])
        res["cache_by_sim"][f"cache-k{k}"] = {b: {"n": int(sum(x == b for x in bins)),
                                                  "mean_relative_quality": float(np.mean([v for v, x in zip(a, bins) if x == b]))}
                                              for b in sorted(set(bins))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res))
    plot(res, out.with_suffix(".png"))
    print(markdown(res))
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')} ({seconds:.0f} s)")
    return 0


def markdown(res: dict) -> str:
    L = [f"Held-out prompts: {res['n']} (every task type equally often), seed = prompt index, "
         f"{res['steps']} DDIM steps, guidance {res['guidance']}.", "",
         "| task | prompts | mean score | fully correct |", "| --- | --- | --- | --- |"]
    for t, v in res["full"]["by_task"].items():
        L.append(f"| {t} | {v['n']} | {v['mean']:.1f} | {100 * v['correct']:.1f} % |")
    L.append(f"| **all** | {res['n']} | **{res['full']['mean']:.1f}** | {100 * res['full']['correct']:.1f} % |")
    L += ["", "| level | share of work | mean score | mean relative quality | prompts whose score does not drop |",
          "| --- | --- | --- | --- | --- |", f"| full ({res['steps']} steps) | 100 % | {res['full']['mean']:.1f} | 100 | 100 % |"]
    for name, v in res["levels"].items():
        n = int(name.split("-")[1].lstrip("k"))
        work = n / res["steps"] if name.startswith("steps") else (res["steps"] - n) / res["steps"]
        L.append(f"| {name} | {100 * work:.0f} % | {v['mean_score']:.1f} | {v['mean_relative_quality']:.1f} | "
                 f"{100 * v['share_not_dropped']:.1f} % |")
    bins = sorted({b for v in res["cache_by_sim"].values() for b in v})
    L += ["", "Approximate caching, mean relative quality (%) by similarity of the nearest stored prompt (prompts):", "",
          "| K | " + " | ".join(bins) + " |", "| --- |" + " --- |" * len(bins)]
    for name, v in res["cache_by_sim"].items():
        L.append(f"| {name.split('-k')[1]} | " + " | ".join(
            f"{v[b]['mean_relative_quality']:.1f} ({v[b]['n']})" if b in v else "-" for b in bins) + " |")
    return "\n".join(L) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(res["levels"])
    axes[0].bar(["full"] + names, [100] + [res["levels"][n]["mean_relative_quality"] for n in names], color="C0")
    axes[0].plot(["full"] + names, [100] + [100 * res["levels"][n]["share_not_dropped"] for n in names], "o-",
                 color="C3", label="prompts whose score does not drop (%)")
    axes[0].set_ylabel("mean relative quality (%)")
    axes[0].set_title("Quality by level (exact scorer)")
    axes[0].legend(loc="lower left", fontsize=8)
    for name, v in res["cache_by_sim"].items():
        bins = sorted(v)
        axes[1].plot(bins, [v[b]["mean_relative_quality"] for b in bins], "o-", label=name)
    axes[1].set_xlabel("similarity of the nearest stored prompt")
    axes[1].set_ylabel("mean relative quality (%)")
    axes[1].set_title("Approximate caching by neighbour similarity")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
