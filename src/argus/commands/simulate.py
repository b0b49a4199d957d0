"""`argus simulate --trace ... --gpus N --profile ... --policy ...`: the control policies at cluster scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from argus.policy.demand import DEFAULT_HEADROOM, RELEASE_HALF_LIFE_S
from argus.policy.profile import load_default_profile, load_profile
from argus.sim.engine import DISPATCH, SimConfig, simulate
from argus.sim.policies import POLICY_NAMES, Service, make_policy
from argus.sim.measured import measured_model, work_profile
from argus.sim.prompts import PromptModel, PromptSource
from argus.sim.report import plots, ratios, table
from argus.sim.trace import Workload, bursty, flat, load_trace, poisson


def register(sub) -> None:
    """Add the `simulate` subcommand."""
    p = sub.add_parser("simulate", help="discrete-event simulation of a GPU cluster under a control policy")
    p.add_argument("--trace", default="poisson",
                   help="arrival trace: an Azure LLM CSV, a Mooncake JSONL, or 'poisson' (synthetic)")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--profile", help="level profile JSON (default: the bundled published SDXL profile; with "
                   "--prompts, its cost model with the measured qualities, argus.sim.measured.work_profile)")
    p.add_argument("--prompts", type=Path, help="a quality profile (argus profile): simulate its measured prompts "
                   "instead of the synthetic population")
    p.add_argument("--predictor", type=Path, help="with --prompts: the trained predictor the router applies to "
                   "them (default: the measured truth, plus --predictor-noise)")
    p.add_argument("--policy", action="append",
                   help=f"repeatable; one of {', '.join(POLICY_NAMES)} (default: argus)")
    p.add_argument("--shape", choices=["bursty", "flat"], default="bursty")
    p.add_argument("--base-qpm", type=float, default=50.0,
                   help="off-peak (bursty) or constant (flat) load, queries/min")
    p.add_argument("--burst-factor", type=float, default=7.8, help="plateau load / base load")
    p.add_argument("--plateau-min", type=float, default=120.0)
    p.add_argument("--gap-min", type=float, default=60.0, help="base-load time before, between and after plateaus")
    p.add_argument("--plateaus", type=int, default=1)
    p.add_argument("--duration-min", type=float, default=60.0, help="length of a flat workload")
    p.add_argument("--quality-floor", type=float, default=90.0)
    p.add_argument("--slo", type=float, default=30.0, help="latency SLO, seconds")
    p.add_argument("--period", type=float, default=15.0, help="control period, seconds")
    p.add_argument("--lag", type=float, default=15.0, help="measurement lag (scrape interval), seconds")
    p.add_argument("--window", type=float, default=60.0, help="rate window, seconds")
    p.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                   help="demand headroom the optimizer plans with (argus.policy.demand)")
    p.add_argument("--no-late-rungs", dest="late_rungs", action="store_false",
                   help="the spec's lateRungs: false (late requests run at their assigned level, late or not)")
    p.add_argument("--quality-weight", type=float, default=1.0,
                   help="the spec's qualityWeight: how many times the optimizer weighs quality against serving "
                        "the planned demand (1-1000)")
    p.add_argument("--release-half-life", type=float, default=RELEASE_HALF_LIFE_S,
                   help="seconds: half-life of demand decreases (how fast capacity is given back)")
    p.add_argument("--steps-shape", type=float, default=2.0, help="Gamma shape of per-prompt step sensitivity")
    p.add_argument("--predictor-noise", type=float, default=0.0, help="predictor error std, percentage points")
    p.add_argument("--dispatch", choices=sorted(DISPATCH), default="queue",
                   help="queue: one FIFO per level served by all its replicas; least-pending: the router's push "
                   "to the replica with the fewest requests in flight, a queue per replica")
    p.add_argument("--in-place", action="store_true",
                   help="replicas switch between levels of one model without a reload, as `argus up` does "
                        "(default: every switch reloads, as a Deployment per level does)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="directory for summary.json, per-minute series and plots")
    p.set_defaults(func=run)


def run(args) -> int:
    """Simulate each policy on the same workload; print the table and the ratios to Argus."""
    if args.predictor and not args.prompts:
        raise ValueError("--predictor: only with --prompts (a measured population)")
    model: PromptSource
    if args.prompts:
        model = measured_model(args.prompts, args.predictor, noise_pp=args.predictor_noise)
        profile = load_profile(args.profile) if args.profile else work_profile(model, load_default_profile())
        for note in model.notes + profile.assumptions:
            print(f"- {note}")
    else:
        model = PromptModel(steps_shape=args.steps_shape, predictor_noise_pp=args.predictor_noise)
        profile = load_profile(args.profile) if args.profile else load_default_profile()
    trace = poisson(20000, seed=args.seed) if args.trace == "poisson" else load_trace(args.trace)
    base = args.base_qpm / 60.0
    curve = (bursty(base, args.burst_factor, args.plateau_min * 60, args.gap_min * 60, args.plateaus)
             if args.shape == "bursty" else flat(base, args.duration_min * 60))
    svc = Service(gpus=args.gpus, levels=profile.levels, quality_floor=args.quality_floor, latency_slo=args.slo,
                  control_period_s=args.period, headroom=args.headroom, quality_weight=args.quality_weight,
                  late_rungs=args.late_rungs,
                  scale_down_half_life=args.release_half_life, in_place=args.in_place)
    cfg = SimConfig(period_s=args.period, scrape_lag_s=args.lag, rate_window_s=args.window, seed=args.seed,
                    dispatch=args.dispatch)
    results = {}
    for name in args.policy or ["argus"]:
        results[name] = simulate(Workload(trace, curve), svc, make_policy(name, svc, model), model, cfg)
        r = results[name]
        solve = f", optimizer {np.mean(r.solve_s) * 1e3:.0f} ms/solve over {len(r.solve_s)}" if r.solve_s else ""
        print(f"{name}: simulated in {r.wall_s:.1f} s ({r.summary.arrivals} requests{solve})")
    rows = [r.summary for r in results.values()]
    print(table(rows))
    if "argus" in results and len(rows) > 1:
        print(ratios(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {name: {"summary": r.summary.row(), "wall_s": r.wall_s, "replica_starts": r.starts,
                      "in_place_switches": r.switches,
                      "solve_ms_mean": float(np.mean(r.solve_s) * 1e3) if r.solve_s else None,
                      "decisions": [[t, d] for t, d in r.replicas]} for name, r in results.items()}
        (args.out / "summary.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
        for name, r in results.items():
            keys = list(r.series)
            data = np.column_stack([r.series[k] for k in keys])
            np.savetxt(args.out / f"series_{name.replace(':', '_')}.csv", data, delimiter=",",
                       header=",".join(keys), comments="", fmt="%.4f")
        plots({n: r.series for n, r in results.items()}, args.out, "sim", f"{args.gpus} GPUs, {trace.name}")
        print(f"wrote {args.out}")
    return 0
