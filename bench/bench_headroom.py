"""What per-prompt knowledge can buy on a trace: fluid bounds with and without it, window by window.

The paper setup (8 GPUs, the published SDXL profile, the simulator's prompt population, the bursty shape's
120-minute plateau at ~390 q/min) on each trace. Each window of the plateau is served on its own
(argus.sim.bounds.windowed: fractional GPUs that never idle, no reloads): the best mean quality a policy that
places every prompt by its own quality could reach there, and the best a prompt-blind mix of levels could. Their
difference, weighted by what each window serves, is the most per-prompt knowledge can buy at that granularity:
where a window's arrivals outrun even the fastest level, or leave room for every prompt at full quality, it buys
nothing. Requests wait at most the SLO (30 s), so the 30-s and 60-s windows are the ones a real queue sees.

    .venv/bin/python bench/bench_headroom.py [--traces mooncake,azure] [--windows 30,60,300] [--prompts 30000]

Writes bench/plots/headroom_bounds.{png,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from argus.policy.profile import load_default_profile
from argus.sim import bounds
from argus.sim.prompts import PromptModel, cache_allowed, draw
from argus.sim.trace import Workload, bursty

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sim import TRACES, _trace  # noqa: E402  (the paper's trace loader)

ROOT = Path(__file__).resolve().parent
GPUS, BASE_QPM, FACTOR, PLATEAU_S, GAP_S = 8, 50.0, 7.8, 7200.0, 3600.0


def population(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(prompts x levels quality, -inf where the prompt's cache hit does not allow the level; peak tput)."""
    levels = load_default_profile().levels
    p = draw(PromptModel(), levels, 90.0, n, np.random.default_rng(1))
    q = np.where(cache_allowed(levels, p.kmax), p.quality, -np.inf)
    return q, np.array([lp.peak_throughput for lp in levels])


def run(traces: list[str], windows: list[float], n: int) -> dict:
    q, tput = population(n)
    out: dict = {"gpus": GPUS, "prompts": n, "traces": {},
                 "capacity_qpm": {"fastest": GPUS * float(tput.max()) * 60, "full": GPUS * float(tput[0]) * 60}}
    for name in traces:
        wl = Workload(_trace(name), bursty(BASE_QPM / 60, FACTOR, plateau=PLATEAU_S, gap=GAP_S, plateaus=1))
        t = wl.arrivals(GAP_S, GAP_S + PLATEAU_S)
        mean_rate = len(t) / PLATEAU_S
        smooth = {"rate_qpm": mean_rate * 60, "per_prompt": bounds.per_prompt(q, tput, mean_rate, GPUS),
                  "agnostic": bounds.agnostic(bounds.open_levels_mean(q), tput, mean_rate, GPUS)}
        smooth["gap"] = smooth["per_prompt"] - smooth["agnostic"]
        doc = {"plateau": smooth, "windows": {}}
        print(f"{name}: plateau {mean_rate * 60:.0f} q/min; as one smooth rate: per-prompt "
              f"{smooth['per_prompt']:.2f} %, prompt-blind {smooth['agnostic']:.2f} %, gap {smooth['gap']:+.2f}",
              flush=True)
        for w in windows:
            t0 = time.perf_counter()
            r = bounds.windowed(q, tput, t, GPUS, w, GAP_S, GAP_S + PLATEAU_S)
            rq = r["rates"] * 60
            print(f"  {w:.0f}-s windows ({len(rq)}; {time.perf_counter() - t0:.1f} s): q/min p10/50/90/max "
                  f"{np.percentile(rq, 10):.0f}/{np.percentile(rq, 50):.0f}/{np.percentile(rq, 90):.0f}/"
                  f"{rq.max():.0f}, past the fastest level {r['past_fastest']:.0%}; per-prompt "
                  f"{r['mean_per_prompt']:.2f} %, prompt-blind {r['mean_agnostic']:.2f} %, gap {r['gap']:+.2f}",
                  flush=True)
            doc["windows"][str(int(w))] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
        out["traces"][name] = doc
    return out


def plot(doc: dict, path: Path, window: str = "60") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["traces"])
    fig, axes = plt.subplots(2, len(names), figsize=(6 * len(names), 6.5), sharex=True, squeeze=False)
    for c, name in enumerate(names):
        w = doc["traces"][name]["windows"][window]
        minutes = np.arange(len(w["rates"])) * float(window) / 60
        ax = axes[0][c]
        ax.step(minutes, np.array(w["rates"]) * 60, where="post", lw=0.8)
        for key, style in (("fastest", "--"), ("full", ":")):
            ax.axhline(doc["capacity_qpm"][key], ls=style, color="gray", lw=0.8, label=f"{key} level's capacity")
        ax.legend(fontsize=8)
        ax.set_title(f"{name}: arrivals per {window}-s window (plateau)")
        ax.set_ylabel("q/min")
        ax = axes[1][c]
        ax.step(minutes, w["per_prompt"], where="post", lw=0.8, label=f"per-prompt (mean {w['mean_per_prompt']:.2f})")
        ax.step(minutes, w["agnostic"], where="post", lw=0.8, label=f"prompt-blind (mean {w['mean_agnostic']:.2f})")
        ax.set_title(f"fluid quality bound per window; gap {w['gap']:+.2f} points")
        ax.set_xlabel("minutes into the plateau")
        ax.set_ylabel("quality %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=",".join(TRACES))
    ap.add_argument("--windows", default="30,60,300")
    ap.add_argument("--prompts", type=int, default=30_000)
    ap.add_argument("--out", type=Path, default=ROOT / "plots" / "headroom_bounds")
    a = ap.parse_args(argv)
    windows = [float(x) for x in a.windows.split(",")]
    doc = run(a.traces.split(","), windows, a.prompts)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    shown = "60" if 60.0 in windows else str(int(windows[0]))
    print(f"plot: {plot(doc, a.out.with_suffix('.png'), shown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
