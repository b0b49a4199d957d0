"""Burst sweep in the simulator (issue 19): does the control loop ever do worse than a fixed policy?

    .venv/bin/python bench/bench_sweep.py [--sizes 0.8,1.1,1.5,2,3] [--lengths 30,60,120,300,600]
        [--plateaus 3] [--trace mooncake] [--burst-horizon 120] [--in-place] [--seeds 1]

The paper's service (8 GPUs, the published SDXL profile, 30 s SLO, floor 90 %), arrivals from a real
trace warped onto bursts: a base load of 0.4x the full-quality capacity (8 replicas of cache-k0 at
their peak throughput, Clipper-HA's capacity), then `--plateaus` bursts of each size (a multiple of that
capacity) and length, 20 minutes apart. Argus and Proteus-like run the production control period
(argus.control.loop.plan, moves that pay included); Clipper-HA and Clipper-HT are fixed.

For each cell: violations (late or dropped requests) per minute of burst, counted over the whole run
(a queue built in a burst is paid for after it), and the mean relative quality of what was served from
each burst's start to a minute after its end. Targets (issue 19): Argus's violations at most the best
fixed policy's by 10 % or 1 per minute of burst, whichever is larger, in every cell; Argus's burst
quality at least 2 points above Clipper-HT's. Writes bench/plots/sim_sweep.json and sim_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from argus.levels import FULL
from argus.policy import baselines
from argus.policy.profile import load_default_profile
from argus.sim.engine import SimConfig, simulate
from argus.sim.policies import Plan, Service, identity_doc, make_policy
from argus.sim.prompts import PromptModel
from argus.sim.trace import Workload, bursty

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sim import _trace  # noqa: E402  (the same trace loading as the paper setup)

ROOT = Path(__file__).resolve().parent
POLICIES = ("argus", "proteus", "clipper-ha", "clipper-ht")
FIXED = ("clipper-ha", "clipper-ht")
CLAIRVOYANT = "clairvoyant"


class Clairvoyant:
    """A reference, not a deployable policy: it knows when each burst starts. Full quality (Clipper-HA's
    allocation) outside the bursts; `switched` replicas (all by default) moved to Clipper-HT's level at a burst's
    first second, back to full quality once the burst's queue has had 3 SLOs to drain. Late rungs on, so a
    switched replica keeps its queue; a batch already running finishes at full quality. The router splits the
    arrivals by the levels' capacities.

    In place, every replica switched: where even the fastest level cannot keep up (3x), no policy that serves
    at full quality until the burst arrives has fewer violations, the bound of the sweep's violation target for
    a control loop. With reloads a switched replica idles for its load time, so switching every GPU at once
    bounds nothing; `cell` runs every count of switched replicas (0 is Clipper-HA) and keeps the one with the
    fewest violations: the best a loop that moves once, at the burst's first second, could do from full quality."""

    name = CLAIRVOYANT
    late = True

    def __init__(self, svc: Service, starts: list[float], length: float, switched: int | None = None) -> None:
        self.svc, self.starts, self.length = svc, starts, length
        self.full = baselines.allocation("ha", svc.levels, svc.gpus)
        self.fast_level = baselines.fastest_without_hit(svc.levels)
        k = svc.gpus if switched is None else switched
        self.mix = {lv: n for lv, n in ((self.fast_level, k), (FULL, svc.gpus - k)) if n}
        speed = {p.level: p.peak_throughput for p in svc.levels}
        total = sum(n * speed[lv] for lv, n in self.mix.items())
        self.split = {lv: n * speed[lv] / total for lv, n in self.mix.items()}
        self._ht = make_policy("clipper-ht", svc, None)

    def keys(self, prompts):
        """Every prompt is keyed at the fast level (Clipper-HT's keys); the documents redirect it."""
        return self._ht.keys(prompts)

    def tick(self, obs) -> Plan:
        """The switched allocation in a burst (and its drain), Clipper-HA's otherwise."""
        burst = any(b <= obs.now < b + self.length + 3 * self.svc.latency_slo for b in self.starts)
        rep = dict(self.mix if burst else self.full)
        row = dict(self.split) if burst else {FULL: 1.0}
        doc = identity_doc(self.svc, rep, 0, obs.now, self.name)
        return Plan(rep, doc.model_copy(update={"late_rungs": True, "redirection": {self.fast_level: row}}))


BASE = 0.4  # off-peak load, share of the full-quality capacity
GAP_S = 1200.0


def cell(trace, svc: Service, model, size: float, length: float, plateaus: int, capacity: float,
         policies=POLICIES, seeds: int = 1) -> dict:
    """Every policy on one burst size x length; with `seeds` > 1, the mean of runs with simulator seeds 0, 1, ...
    (the prompts drawn and their keys differ; the arrivals are the trace's), each run's numbers under "runs"."""
    curve = bursty(BASE * capacity, size / BASE, plateau=length, gap=GAP_S, plateaus=plateaus)
    wl = Workload(trace, curve)
    starts = [GAP_S * (i + 1) + length * i for i in range(plateaus)]
    out = {}
    for name in policies:
        if name == CLAIRVOYANT and not svc.in_place:  # every count of replicas switched at the onset; the best
            tries = [(k, _runs(wl, svc, lambda: Clairvoyant(svc, starts, length, k), model, starts, length,
                               plateaus, seeds)) for k in range(svc.gpus + 1)]
            k, best = min(tries, key=lambda t: (t[1]["violations_per_burst_min"], -t[1]["burst_quality"]))
            out[name] = {**best, "switched": k}
            continue
        make = (lambda: Clairvoyant(svc, starts, length)) if name == CLAIRVOYANT else (
            lambda: make_policy(name, svc, model))
        out[name] = _runs(wl, svc, make, model, starts, length, plateaus, seeds)
    return out


def _runs(wl: Workload, svc: Service, make, model, starts: list[float], length: float, plateaus: int,
          seeds: int) -> dict:
    """One policy (`make()` builds it afresh per run) over `seeds` runs: its numbers, their mean if several."""
    runs = []
    for seed in range(seeds):
        policy = make()
        r = simulate(wl, svc, policy, model, SimConfig(seed=seed))
        s = r.series
        t = s["t_min"] * 60.0
        window = np.zeros(len(t), dtype=bool)
        for b in starts:
            window |= (t + 60.0 > b) & (t < b + length + 60.0)
        done = s["throughput_qpm"]  # completions per 1-minute bin
        q = np.nan_to_num(s["quality"]) * done
        violations = float(s["violations_per_min"].sum())  # per-minute bins: the sum is the count
        runs.append({"violations_per_burst_min": violations / (plateaus * length / 60.0),
                     "burst_quality": float(q[window].sum() / max(done[window].sum(), 1e-9)),
                     "quality": r.summary.quality, "starts": r.starts, "violations": violations})
    if seeds == 1:
        return runs[0]
    return {**{k: float(np.mean([r[k] for r in runs])) for k in runs[0]}, "runs": runs}


def targets(cells: dict) -> list[tuple[str, bool]]:
    """The issue's two sweep targets, per cell."""
    checks = []
    for key, c in cells.items():
        a = c["argus"]
        best = min(FIXED, key=lambda n: c[n]["violations_per_burst_min"])
        bv = c[best]["violations_per_burst_min"]
        allowed = max(1.1 * bv, bv + 1.0)
        bound = ""
        if CLAIRVOYANT in c:
            cv = c[CLAIRVOYANT]["violations_per_burst_min"]
            bound = f"; clairvoyant {cv:.2f}" + (": out of reach from full quality" if cv > allowed else "")
        checks.append((f"{key}: violations/burst-min {a['violations_per_burst_min']:.2f} <= {allowed:.2f} "
                       f"(best fixed {best} {bv:.2f}{bound})", a["violations_per_burst_min"] <= allowed))
        ht = c["clipper-ht"]["burst_quality"]
        bound = f"; clairvoyant {c[CLAIRVOYANT]['burst_quality']:.2f}" if CLAIRVOYANT in c else ""
        checks.append((f"{key}: burst quality {a['burst_quality']:.2f} >= Clipper-HT {ht:.2f} + 2{bound}",
                       a["burst_quality"] >= ht + 2.0))
    return checks


def plot(cells: dict, sizes: list[float], lengths: list[float], path: Path, policies=POLICIES) -> None:
    """Violations and quality against burst size, one column per burst length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(lengths), figsize=(3.2 * len(lengths), 6.4), squeeze=False)
    for col, length in enumerate(lengths):
        for name in policies:
            v = [cells[f"{s}x/{length:.0f}s"][name]["violations_per_burst_min"] for s in sizes]
            q = [cells[f"{s}x/{length:.0f}s"][name]["burst_quality"] for s in sizes]
            axes[0][col].plot(sizes, v, marker="o", label=name)
            axes[1][col].plot(sizes, q, marker="o", label=name)
        axes[0][col].set_title(f"bursts of {length:.0f} s")
        axes[0][col].set_yscale("symlog", linthresh=1.0)
        axes[1][col].set_xlabel("burst size (x full-quality capacity)")
    axes[0][0].set_ylabel("SLO violations per burst minute")
    axes[1][0].set_ylabel("mean quality in the burst (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Burst sweep: 8 GPUs, SDXL profile (simulator)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0.8,1.1,1.5,2,3")
    ap.add_argument("--lengths", default="30,60,120,300,600")
    ap.add_argument("--plateaus", type=int, default=3)
    ap.add_argument("--trace", default="mooncake")
    ap.add_argument("--spread-ticks", action="store_true",
                    help="spread the requests the trace releases at one instant over the tick to the next "
                         "(Mooncake releases groups of ~10 every 3 s; argus.sim.trace.spread_ticks)")
    ap.add_argument("--burst-horizon", type=float, default=None, help="the service's burstHorizon (s)")
    ap.add_argument("--headroom", type=float, default=None, help="the service's headroom")
    ap.add_argument("--in-place", action="store_true",
                    help="replicas switch between levels of one model without a reload (as `argus up` does)")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help="policies to run (argus and the fixed ones are needed for the targets); a name may end in "
                         "+late or -late (argus.sim.policies: late batches served at a faster rung, or dropped); "
                         f"{CLAIRVOYANT}: the reference that knows when bursts start (Clairvoyant)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="runs per cell and policy (simulator seeds 0..N-1); the cell's numbers are their means. Near "
                         "capacity one run is one draw of a chaotic process (bench/RESULTS.md, over seeds and phases)")
    ap.add_argument("--out", default=str(ROOT / "plots" / "sim_sweep"))
    a = ap.parse_args(argv)
    policies = a.policies.split(",")
    sizes = [float(v) for v in a.sizes.split(",")]
    lengths = [float(v) for v in a.lengths.split(",")]
    profile = load_default_profile()
    extra = {"burst_horizon": a.burst_horizon} if a.burst_horizon else {}
    if a.headroom:
        extra["headroom"] = a.headroom
    svc = Service(gpus=8, levels=profile.levels, quality_floor=90.0, latency_slo=30.0, in_place=a.in_place, **extra)
    capacity = 8 * next(p.peak_throughput for p in profile.levels if p.level == "cache-k0")
    model, trace = PromptModel(), _trace(a.trace, spread=a.spread_ticks)
    cells: dict[str, dict] = {}
    t0 = time.time()
    total = len(sizes) * len(lengths)
    for i, length in enumerate(lengths):
        for j, size in enumerate(sizes):
            key = f"{size}x/{length:.0f}s"
            cells[key] = c = cell(trace, svc, model, size, length, a.plateaus, capacity, policies, a.seeds)
            done = i * len(sizes) + j + 1
            print(f"[{done}/{total} {time.time() - t0:.0f} s] {key}: " + ", ".join(
                f"{n} {c[n]['violations_per_burst_min']:.2f} v/min {c[n]['burst_quality']:.1f} %"
                + (f" {c[n]['starts']} starts" if c[n]["starts"] else "")
                + (f" ({c[n]['switched']} switched)" if "switched" in c[n] else "") for n in policies), flush=True)
    checks = targets(cells)
    print("\n| burst | " + " | ".join(f"{n} viol/burst-min, quality" for n in policies) + " |")
    print("| --- |" + " --- |" * len(policies))
    for key, c in cells.items():
        print(f"| {key} | " + " | ".join(f"{c[n]['violations_per_burst_min']:.2f}, {c[n]['burst_quality']:.1f}"
                                        for n in policies) + " |")
    missed = [t for t, ok in checks if not ok]
    print(f"\ntargets: {len(checks) - len(missed)} of {len(checks)} met")
    for t in missed:
        print(f"  [NOT met] {t}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(a), "capacity_req_s": capacity, "cells": cells,
                                                    "targets": checks}, indent=1))
    plot(cells, sizes, lengths, out.with_suffix(".png"), policies)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
