"""`argus train` logic: fit the predictor from quality profiles and evaluate it on held-out prompts.

Evaluation per floor: the chosen level's *measured* relative quality is compared to the floor
(floor-violation rate), and its cost to the full level's (compute saved vs always-full).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from argus.levels import FULL, parse_levels
from argus.prompt.embedder import Embedder
from argus.prompt.index import Neighbour
from argus.prompt.predictor import Predictor, PredictorError, fit_predictor, level_costs
from argus.prompt.profile_data import ProfileDataError, QualityProfile

IDENTITY_KEYS = ("model", "steps", "levels", "encoder", "score_kind")


@dataclass(frozen=True)
class FloorEval:
    """Held-out result at one floor."""

    floor: float
    violation_rate: float  # share of prompts whose chosen level measured below the floor
    compute_saved: float  # 1 - mean cost of the chosen levels (full = 1)
    oracle_saved: float  # what a perfect predictor would save at zero violations
    mean_quality: float  # mean measured relative quality of the chosen levels
    chosen: dict[str, int]  # level -> prompts


@dataclass
class Dataset:
    """Labelled prompts merged from one or more profiles of the same model and level set."""

    header: dict
    prompts: list[str]
    quality: dict[str, np.ndarray]  # level -> per-prompt relative quality (NaN: none)
    similarity: np.ndarray
    costs: dict[str, float]


def merge_profiles(profiles: list[tuple[Path, QualityProfile]]) -> Dataset:
    """One dataset from profiles that agree on model, steps, levels, encoder and score kind."""
    if not profiles:
        raise ProfileDataError("no profile given")
    (p0, first), rest = profiles[0], profiles[1:]
    for p, prof in [(p0, first)] + rest:
        if not prof.complete:
            raise ProfileDataError(f"{p}: incomplete profile ({len(prof.prompts)}/{prof.header['n_prompts']} prompts)")
        for k in IDENTITY_KEYS:
            if prof.header[k] != first.header[k]:
                raise ProfileDataError(f"{p}: {k}={prof.header[k]!r} differs from {p0}'s {first.header[k]!r}; "
                                       "profiles of different models or settings cannot be merged")
    levels = list(first.header["levels"])
    prompts: list[str] = []
    quality = {lv: [] for lv in levels}
    sim: list[float] = []
    for _, prof in profiles:
        for i in sorted(prof.prompts):
            r = prof.prompts[i]
            prompts.append(r.prompt)
            sim.append(np.nan if r.similarity is None else r.similarity)
            for lv in levels:
                q = r.quality.get(lv)
                quality[lv].append(np.nan if q is None else q)
    # Seconds per image averaged over the profiled batch sizes: steadier than batch 1 alone on a noisy host.
    per_image = {lv: float(np.mean([s / b for (l2, b), s in first.latency.items() if l2 == lv])) for lv in levels}
    costs = level_costs(parse_levels(levels, first.header["steps"]), first.header["steps"], per_image)
    return Dataset(first.header, prompts, {k: np.asarray(v, dtype=np.float64) for k, v in quality.items()},
                   np.asarray(sim, dtype=np.float64), costs)


def split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/held-out split of n prompts (at least one in each when n >= 2)."""
    if n < 3:
        raise PredictorError(f"{n} labelled prompts: need at least 3 to train and hold some out")
    if not 0.0 < holdout < 1.0:
        raise PredictorError(f"holdout fraction {holdout} must be in (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    k = min(n - 2, max(1, int(round(n * holdout))))
    return np.sort(perm[k:]), np.sort(perm[:k])


def train(ds: Dataset, embedder: Embedder, holdout: float = 0.25, seed: int = 0, alpha: float = 1.0,
          reuse_target: float = 85.0, floors: tuple[float, ...] = (85.0, 90.0, 95.0),
          sources: list[str] | None = None) -> tuple[Predictor, list[FloorEval], Predictor]:
    """Fit on the training split, evaluate on the held-out split, then refit on everything.

    Returns (final predictor, held-out evaluation, the train-split predictor that was evaluated).
    """
    if embedder.name != ds.header["encoder"]:
        raise PredictorError(f"profile was embedded with {ds.header['encoder']!r}, the encoder here is {embedder.name!r}")
    emb = embedder.encode(ds.prompts)
    tr, te = split(len(ds.prompts), holdout, seed)
    fit = dict(encoder=embedder.name, model=ds.header["model"], steps=int(ds.header["steps"]),
               levels=list(ds.header["levels"]), costs=ds.costs, alpha=alpha, reuse_target=reuse_target)
    part = fit_predictor(embeddings=emb[tr], quality={k: v[tr] for k, v in ds.quality.items()},
                         similarity=ds.similarity[tr], **fit)
    evals = [evaluate(part, emb[te], {k: v[te] for k, v in ds.quality.items()}, ds.similarity[te], f)
             for f in floors]
    meta = {"trained_on": sources or [], "n_prompts": len(ds.prompts), "holdout": holdout, "seed": seed,
            "alpha": alpha, "reuse_target": reuse_target, "score_kind": ds.header["score_kind"],
            "eval": [e.__dict__ for e in evals]}
    final = fit_predictor(embeddings=emb, quality=ds.quality, similarity=ds.similarity, meta=meta, **fit)
    return final, evals, part


def evaluate(pred: Predictor, emb: np.ndarray, quality: dict[str, np.ndarray], similarity: np.ndarray,
             floor: float) -> FloorEval:
    """Choose a level per held-out prompt and score the choice with its measured quality."""
    viol, cost, qual, oracle = [], [], [], []
    chosen: dict[str, int] = {}
    for i in range(emb.shape[0]):
        s = similarity[i]
        nb = None
        if np.isfinite(s):
            nb = Neighbour("profiled-neighbour", "", float(s), pred.thresholds.k_for(float(s)))
        level = pred.decide(emb[i], nb, floor).optimal_level
        measured = quality[level][i]
        if not np.isfinite(measured):  # unmeasured (e.g. no neighbour): the router would serve it at full
            level, measured = FULL, 100.0
        chosen[level] = chosen.get(level, 0) + 1
        viol.append(measured < floor)
        cost.append(pred.costs[level])
        qual.append(measured)
        safe = [pred.costs[lv] for lv in pred.levels if np.isfinite(quality[lv][i]) and quality[lv][i] >= floor]
        oracle.append(min(safe, default=1.0))
    return FloorEval(floor=floor, violation_rate=float(np.mean(viol)), compute_saved=1.0 - float(np.mean(cost)),
                     oracle_saved=1.0 - float(np.mean(oracle)), mean_quality=float(np.mean(qual)), chosen=chosen)


def report(evals: list[FloorEval], n_train: int, n_test: int) -> str:
    """A plain-text table of the held-out evaluation."""
    lines = [f"held-out evaluation ({n_test} prompts; trained on {n_train})",
             f"{'floor %':>8} {'violations':>11} {'saved':>7} {'oracle':>7} {'mean q %':>9}  chosen levels"]
    for e in evals:
        ch = ", ".join(f"{k}:{v}" for k, v in sorted(e.chosen.items()))
        lines.append(f"{e.floor:8.1f} {e.violation_rate:11.1%} {e.compute_saved:7.1%} {e.oracle_saved:7.1%} "
                     f"{e.mean_quality:9.2f}  {ch}")
    return "\n".join(lines)


def plot(evals: list[FloorEval], path: str | Path, title: str) -> None:
    """PNG of violation rate and compute saved against the floor (written atomically)."""
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floors = [e.floor for e in evals]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(floors, [100 * e.violation_rate for e in evals], "o-", color="tab:red", label="floor violations %")
    ax.plot(floors, [100 * e.compute_saved for e in evals], "s-", color="tab:blue", label="compute saved %")
    ax.plot(floors, [100 * e.oracle_saved for e in evals], "s--", color="tab:blue", alpha=0.4,
            label="compute saved % (oracle)")
    ax.set_xlabel("quality floor (% of full-quality CLIP score)")
    ax.set_ylabel("% of held-out prompts / compute")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, p)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
