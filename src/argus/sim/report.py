"""Tables, ratios and the paper's three time-series plots for simulation results."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from argus.sim.metrics import Summary

COLUMNS = [("policy", "policy", "{}"), ("throughput_qpm", "tput q/min", "{:.1f}"),
           ("quality", "quality %", "{:.2f}"), ("violations_per_min", "viol/min", "{:.1f}"),
           ("violation_rate", "viol rate", "{:.1%}"), ("p99_s", "p99 s", "{:.1f}"),
           ("peak_throughput_qpm", "peak tput", "{:.1f}"), ("peak_quality", "peak q %", "{:.2f}"),
           ("peak_violations_per_min", "peak viol/min", "{:.1f}"), ("peak_violation_rate", "peak viol rate", "{:.1%}")]


def _fmt(fmt: str, v) -> str:
    return "n/a" if isinstance(v, float) and math.isnan(v) else fmt.format(v)


def table(rows: list[Summary]) -> str:
    """A Markdown table, one row per policy (whole run, and at the plateau)."""
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_fmt(f, getattr(r, k)) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def ratios(rows: list[Summary], ours: str = "argus") -> str:
    """Markdown table of ours / baseline at the plateau: throughput, quality, violations (lower is better)."""
    mine = next((r for r in rows if r.policy == ours), None)
    if mine is None:
        return ""

    def div(a: float, b: float) -> str:
        if b == 0:
            return "inf (baseline 0)" if a > 0 else "1 (both 0)"
        return f"{a / b:.2f}x"
    lines = [f"| {ours} / baseline (at peak) | throughput | quality | SLO violations/min |",
             "| --- | --- | --- | --- |"]
    for r in rows:
        if r.policy != ours:
            lines.append(f"| {r.policy} | {div(mine.peak_throughput_qpm, r.peak_throughput_qpm)} | "
                         f"{div(mine.peak_quality, r.peak_quality)} | "
                         f"{div(mine.peak_violations_per_min, r.peak_violations_per_min)} |")
    return "\n".join(lines)


def plots(series: dict[str, dict[str, np.ndarray]], out_dir: Path, prefix: str, title: str) -> list[Path]:
    """The paper's three figures (throughput, relative quality, SLO violations per minute), all policies each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, label in [("throughput_qpm", "throughput (queries/min)"), ("quality", "avg relative quality (%)"),
                       ("violations_per_min", "SLO violations / min")]:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for name, s in series.items():
            ax.plot(s["t_min"], s[key], label=name, linewidth=1.2)
        if key == "throughput_qpm":
            first = next(iter(series.values()))
            ax.plot(first["t_min"], first["arrivals_qpm"], color="0.6", linestyle=":", label="arrivals")
        ax.set_xlabel("time (min)")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
        fig.tight_layout()
        p = out_dir / f"{prefix}_{key}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
