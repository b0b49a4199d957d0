"""Summaries and plots of a replay: throughput, latency percentiles, SLO violations, quality, allocation.

Quality is shown twice: predicted (the router's per-request prediction and the plan's level quality)
and measured (the world's exact scorer on every returned image whose prompt is in its grammar,
`Record.exact_score`): the mean exact score (0-100), and the mean relative quality in percent,
100 x min(1, score / full-quality score for the same prompt and seed), over the requests whose
full-quality score is known: those served at the full-quality level (their own image is the
full-quality one) and those whose (prompt, seed) has a full-quality score in `full_scores`
(another run of the same trace and seed, e.g. Clipper-HA's: `full_scores_of`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from argus.tools.loadgen import Record, Sample


FullScores = dict[tuple[str, int], float]  # (prompt, seed) -> the full-quality image's exact score


def is_full_level(level: str | None) -> bool:
    """Whether `level` names the full-quality level (cache-k0)."""
    from argus.levels import LevelError, parse_level

    try:
        return level is not None and parse_level(level, 1000).is_full_quality
    except LevelError:
        return False


def full_scores_of(records: list[Record] | list[dict]) -> FullScores:
    """Exact scores of the requests served at full quality, by (prompt, seed) (records or their JSON)."""
    out: FullScores = {}
    for r in records:
        d = r if isinstance(r, dict) else r.__dict__
        if d.get("status") == 200 and d.get("exact_score") is not None and is_full_level(d.get("level")) \
                and d.get("prompt") is not None and d.get("seed") is not None:
            out[(d["prompt"], int(d["seed"]))] = float(d["exact_score"])
    return out


def _relative(r: Record, full_scores: FullScores | None) -> float | None:
    from argus.world.scorer import relative_quality

    if r.exact_score is None:
        return None
    full = r.exact_score if is_full_level(r.level) else (full_scores or {}).get((r.prompt, r.seed))
    return None if full is None else 100.0 * relative_quality(r.exact_score, full)


def measured_quality(ok: list[Record], full_scores: FullScores | None = None) -> dict:
    """The exact scorer's verdict on served requests: mean score, mean relative quality where known, by level."""
    scored = [r for r in ok if r.exact_score is not None]
    rel = [q for q in (_relative(r, full_scores) for r in scored) if q is not None]
    by_level: dict[str, list[float]] = {}
    for r in scored:
        by_level.setdefault(r.level or "?", []).append(r.exact_score)
    return {"scored": len(scored), "not_scorable": sum(1 for r in ok if r.scorable is False),
            "not_scored": sum(1 for r in ok if r.scorable is None),
            "mean_exact_score": round(float(np.mean([r.exact_score for r in scored])), 3) if scored else None,
            "relative_known": len(rel),
            "mean_relative_quality": round(float(np.mean(rel)), 3) if rel else None,
            "exact_score_by_level": {lv: round(float(np.mean(v)), 3) for lv, v in sorted(by_level.items())}}


def summarize(records: list[Record], *, slo_s: float, duration: float, level_quality: dict | None = None,
              full_scores: FullScores | None = None) -> dict:
    """Headline numbers of one replay. A request violates the SLO if it failed or took longer than `slo_s`.

    `level_quality` (level -> mean relative quality the plans assume) adds `avg_level_quality`: the
    mean over served requests of their serving level's quality, the quantity the optimizer maximizes.
    `measured_quality` is the exact scorer's view (module docstring); `avg_exact_score` and
    `avg_measured_quality` repeat its two means for `ratios`.
    """
    n = len(records)
    ok = [r for r in records if r.status == 200]
    lat = np.array([r.latency for r in ok]) if ok else np.array([np.nan])
    violations = sum(1 for r in records if r.status != 200 or r.latency > slo_s)
    quality = [r.predicted_quality for r in ok if r.predicted_quality is not None]
    by_level: dict[str, int] = {}
    for r in ok:
        by_level[r.level or "?"] = by_level.get(r.level or "?", 0) + 1
    by_status: dict[str, int] = {}
    for r in records:
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    measured = measured_quality(ok, full_scores)
    return {
        "requests": n, "ok": len(ok), "duration_s": round(duration, 1),
        "throughput_rps": round(len(ok) / duration, 4) if duration else 0.0,
        "goodput_rps": round(sum(1 for r in ok if r.latency <= slo_s) / duration, 4) if duration else 0.0,
        "latency_p50_s": _r(np.nanpercentile(lat, 50)), "latency_p95_s": _r(np.nanpercentile(lat, 95)),
        "latency_p99_s": _r(np.nanpercentile(lat, 99)),
        "slo_s": slo_s, "slo_violations": violations, "slo_violation_rate": round(violations / n, 4) if n else 0.0,
        "avg_predicted_quality": round(float(np.mean(quality)), 3) if quality else None,
        "avg_level_quality": _mean_level_quality(ok, level_quality),
        "avg_exact_score": measured["mean_exact_score"], "avg_measured_quality": measured["mean_relative_quality"],
        "measured_quality": measured,
        "served_by_level": dict(sorted(by_level.items())), "by_status": by_status,
        "late_rungs": sum(1 for r in ok if r.late_from),
        "late_rungs_by_why": dict(sorted(Counter(r.late_why or "deadline" for r in ok if r.late_from).items())),
        "cache_hit_rate": _rate([r.cache_hit for r in ok if r.cache_hit is not None]),
    }


def ratios(current: dict, baseline: dict) -> dict:
    """current / baseline for the headline numbers (None where the baseline is zero)."""
    keys = ["throughput_rps", "goodput_rps", "latency_p50_s", "latency_p99_s", "slo_violation_rate",
            "avg_predicted_quality", "avg_level_quality", "avg_exact_score", "avg_measured_quality"]
    out = {}
    for k in keys:
        a, b = current.get(k), baseline.get(k)
        out[k] = round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    return out


def timeline(records: list[Record], samples: list[Sample], *, slo_s: float, bin_s: float, duration: float,
             level_quality: dict | None = None, full_scores: FullScores | None = None) -> dict:
    """Per-bin series: arrivals, completions, SLO violations, mean predicted and level quality, the mean exact
    score and measured relative quality, allocation per level, and whether the control loop declared
    overload / Degraded in the bin."""
    edges = np.arange(0, duration + bin_s, bin_s)
    nb = len(edges) - 1
    arrivals, done, viol, qsum, qn = (np.zeros(nb) for _ in range(5))
    for r in records:
        b = min(nb - 1, int(r.t_sent // bin_s))
        arrivals[b] += 1
        if r.status == 200:
            e = min(nb - 1, int((r.t_sent + r.latency) // bin_s))
            done[e] += 1
            if r.predicted_quality is not None:
                qsum[b] += r.predicted_quality
                qn[b] += 1
        if r.status != 200 or r.latency > slo_s:
            viol[b] += 1
    bins: list[list] = [[] for _ in range(nb)]
    for r in records:
        if r.status == 200:
            bins[min(nb - 1, int(r.t_sent // bin_s))].append(r)
    levels = sorted({lv for s in samples for lv in s.allocation})
    alloc = {lv: [0.0] * nb for lv in levels}
    overload: list[bool | None] = [None] * nb
    degraded: list[bool | None] = [None] * nb
    for s in samples:
        b = min(nb - 1, int(s.t // bin_s))
        for lv in levels:
            alloc[lv][b] = s.allocation.get(lv, 0)
        if s.overload is not None:
            overload[b] = bool(overload[b]) or s.overload
        if s.degraded is not None:
            degraded[b] = bool(degraded[b]) or s.degraded
    return {"t": edges[:-1].tolist(), "arrival_rps": (arrivals / bin_s).tolist(),
            "throughput_rps": (done / bin_s).tolist(), "slo_violations": viol.tolist(),
            "quality": [float(q / n) if n else None for q, n in zip(qsum, qn)],
            "level_quality": [_mean_level_quality(b, level_quality) for b in bins],
            "exact_score": [_mean([r.exact_score for r in b]) for b in bins],
            "measured_quality": [_mean([_relative(r, full_scores) for r in b]) for b in bins],
            "allocation": alloc, "overload": overload, "degraded": degraded}


def plot(runs: dict[str, dict], path: Path, title: str) -> Path:
    """One PNG: rate/throughput, SLO violations, relative quality (predicted, and measured where known), the
    exact score when any image was scored, and the allocation of the first run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = any(v is not None for tl in runs.values() for v in tl.get("exact_score", []))
    fig, axes = plt.subplots(5 if scored else 4, 1, figsize=(9, 13.5 if scored else 11), sharex=True)
    first = next(iter(runs.values()))
    axes[0].plot(first["t"], first["arrival_rps"], "k--", label="offered load")
    for k, (name, tl) in enumerate(runs.items()):
        colour = f"C{k}"
        axes[0].plot(tl["t"], tl["throughput_rps"], color=colour, label=name)
        axes[1].plot(tl["t"], tl["slo_violations"], color=colour, label=name)
        q = tl["level_quality"] if any(v is not None for v in tl.get("level_quality", [])) else tl["quality"]
        axes[2].plot(tl["t"], _nan(q), color=colour, label=f"{name} predicted")
        if any(v is not None for v in tl.get("measured_quality", [])):
            axes[2].plot(tl["t"], _nan(tl["measured_quality"]), "--", color=colour, label=f"{name} measured")
        if scored:
            axes[3].plot(tl["t"], _nan(tl.get("exact_score", [])), color=colour, label=name)
    axes[0].set_ylabel("req/s")
    axes[1].set_ylabel("SLO violations / bin")
    axes[2].set_ylabel("rel. quality %")
    axes[2].set_title("relative quality: predicted (solid), measured by the exact scorer (dashed)", fontsize=8)
    if scored:
        axes[3].set_ylabel("exact score (0-100)")
        axes[3].set_ylim(-2, 102)
    alloc = first["allocation"]
    if alloc:
        axes[-1].stackplot(first["t"], *alloc.values(), labels=list(alloc))
    axes[-1].set_ylabel(f"replicas ({next(iter(runs))})")
    axes[-1].set_xlabel("time (s)")
    for ax in axes:
        ax.grid(alpha=.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _nan(xs) -> list[float]:
    return [v if v is not None else np.nan for v in xs]


def _mean(xs) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None


def _r(x) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def _mean_level_quality(ok: list[Record], level_quality: dict | None) -> float | None:
    qs = [level_quality[r.level] for r in ok if level_quality and r.level in level_quality]
    return round(float(np.mean(qs)), 3) if qs else None


def _rate(xs) -> float | None:
    return round(sum(1 for x in xs if x) / len(xs), 4) if xs else None
