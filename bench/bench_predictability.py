"""How much per-prompt knowledge can pay on a model: is a prompt's quality loss at a level a property of the
prompt, or of the image seed?

Per-prompt placement (issue 17) gains over a prompt-agnostic policy only where some prompts lose more at a
level than others *predictably*. Given quality profiles (`argus profile`) of the same prompts at two or more
image seeds, this prints per level:

- the mean loss (full-quality score less the level's, exact-scorer points) per seed;
- the test-retest correlation of each prompt's loss between seeds (1: a property of the prompt; 0: of the seed);
- the gain over random placement, at a share f of the traffic on the level, of placing the prompts by their
  loss measured at *another* seed (what a perfect predictor of the prompt's own sensitivity could buy), and by
  the same seed's (the in-sample bound, which counts the seed's luck);
- the gain of the router's kind of predictor: a ridge on MiniLM embeddings (argus.prompt.predictor's fit),
  5-fold cross-validated on the first profile, evaluated on every other seed's losses.

Writes a PNG of loss at one seed against another. Run:

    .venv/bin/python bench/bench_predictability.py PROFILE.jsonl PROFILE_SEED2.jsonl [...]
        [--levels steps-10,steps-5] [--out bench/plots/world_predictability]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from argus.levels import FULL
from argus.prompt.profile_data import read_profile
from argus.prompt.predictor import ridge

SHARES = (0.25, 0.5, 0.75)


def losses(paths: list[Path], level: str) -> tuple[list[str], np.ndarray]:
    """The prompts every profile has, and their loss at `level` per profile (rows: profiles)."""
    runs = []
    for p in paths:
        prof = read_profile(p)
        runs.append({r.prompt: r.scores[FULL] - r.scores[level] for r in prof.prompts.values()
                     if FULL in r.scores and level in r.scores})
    common = [p for p in runs[0] if all(p in r for r in runs[1:])]
    return common, np.array([[r[p] for p in common] for r in runs])


def placement_gain(rank_by: np.ndarray, loss: np.ndarray, share: float) -> float:
    """Points of mean quality gained over random placement when the `share` of prompts with the lowest
    `rank_by` go to the level and the rest stay at full quality, judged by `loss`."""
    k = int(round(share * len(loss)))
    order = np.argsort(rank_by, kind="stable")
    return float(share * loss.mean() - loss[order[:k]].sum() / len(loss))


def cv_ridge(x: np.ndarray, y: np.ndarray, folds: int = 5, alpha: float = 1.0, seed: int = 0) -> np.ndarray:
    """Out-of-fold ridge predictions of `y` from `x`."""
    idx = np.random.default_rng(seed).permutation(len(y))
    pred = np.zeros(len(y))
    for f in np.array_split(idx, folds):
        train = np.setdiff1d(idx, f)
        w, b = ridge(x[train], y[train], alpha, "loss")
        pred[f] = x[f] @ w + b
    return pred


def main(argv: list[str] | None = None) -> int:
    """Print the table and write the plot."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profiles", nargs="+", type=Path, help="profiles of the same prompts at different seeds")
    ap.add_argument("--levels", default="steps-10,steps-5")
    ap.add_argument("--no-ridge", action="store_true", help="skip the MiniLM ridge (no encoder needed)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "plots" / "world_predictability")
    a = ap.parse_args(argv)
    if len(a.profiles) < 2:
        ap.error("need profiles at two or more seeds")
    levels = a.levels.split(",")
    result: dict = {"profiles": [str(p) for p in a.profiles], "levels": {}}
    embed = None
    if not a.no_ridge:
        from argus.prompt.embedder import make_embedder

        embed = make_embedder("all-MiniLM-L6-v2")
    loss_by_level = {}
    for level in levels:
        prompts, L = loss_by_level[level] = losses(a.profiles, level)
        if len(prompts) < 10:
            raise SystemExit(f"{level}: only {len(prompts)} prompts in every profile; profile the same prompts")
        n = len(L)
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        r = [float(np.corrcoef(L[i], L[j])[0, 1]) for i, j in pairs if i < j]
        row = {"prompts": len(prompts), "mean_loss": L.mean(1).round(2).tolist(), "retest_r": np.round(r, 3).tolist(),
               "other_seed": {}, "same_seed": {}, "ridge": {}}
        for s in SHARES:
            row["other_seed"][s] = round(float(np.mean([placement_gain(L[i], L[j], s) for i, j in pairs])), 2)
            row["same_seed"][s] = round(float(np.mean([placement_gain(L[i], L[i], s) for i in range(n)])), 2)
        if embed is not None:
            x = np.asarray(embed.encode(prompts), dtype=np.float64)
            pred = cv_ridge(x, L[0])
            row["ridge_cv_r"] = round(float(np.corrcoef(pred, L[0])[0, 1]), 3)
            for s in SHARES:
                row["ridge"][s] = round(float(np.mean([placement_gain(pred, L[j], s) for j in range(1, n)])), 2)
        result["levels"][level] = row
        print(f"{level}: {row['prompts']} prompts, mean loss per seed {row['mean_loss']} points, "
              f"test-retest r {row['retest_r']}", flush=True)
        for s in SHARES:
            ridge = f", MiniLM ridge (cv) {row['ridge'][s]:+.2f}" if row["ridge"] else ""
            print(f"  {int(s * 100)} % at {level}: gain over random placement by another seed's loss "
                  f"{row['other_seed'][s]:+.2f}, by the same seed's {row['same_seed'][s]:+.2f}{ridge}")
        if "ridge_cv_r" in row:
            print(f"  ridge cross-validated r with the loss: {row['ridge_cv_r']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(levels), figsize=(5 * len(levels), 4.5), squeeze=False)
    for ax, level in zip(axes[0], levels):
        L = loss_by_level[level][1][:2]  # seeds A and B: the table's prompts, every profile has them
        jitter = np.random.default_rng(0).normal(0, 1.0, L.shape)
        ax.scatter(L[0] + jitter[0], L[1] + jitter[1], s=8, alpha=0.5)
        ax.set_xlabel(f"loss at {level}, seed A (points)")
        ax.set_ylabel(f"loss at {level}, seed B (points)")
        row = result["levels"][level]
        ax.set_title(f"{level}: test-retest r {row['retest_r'][0]:.2f}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle("Is a prompt's quality loss its own? Same prompts, two image seeds (exact scorer, jittered)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix(".png"), dpi=110)
    print(f"wrote {a.out.with_suffix('.json')} and {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
