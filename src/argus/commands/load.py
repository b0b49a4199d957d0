"""`argus load TRACE`: replay a request trace open-loop against Envoy and write a report (JSON + PNG).

Every returned image whose prompt is in the world's grammar is scored by the exact scorer after its
response arrives (off the sending path); the report shows this measured quality beside the predicted
one (argus.tools.report). `--prompts world-held-out` draws the prompts from the world's held-out split.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from argus.tools.loadgen import exact_measure, records_to_json, replay
from argus.local.runtime import read_state
from argus.tools.report import full_scores_of, plot, ratios, summarize, timeline
from argus.tools.workload import bursty_arrivals, read_prompts, read_arrivals, scale_trace


def register(sub) -> None:
    """Add the `load` subcommand."""
    p = sub.add_parser("load", help="replay a request trace against the running system and report")
    p.add_argument("trace", help="a trace file (.csv with TIMESTAMP, .jsonl with timestamp ms) or 'bursty'")
    p.add_argument("--duration", type=float, default=180, help="seconds of replay")
    p.add_argument("--rate", type=float, default=0.5, help="mean requests/s (file traces) or base rate (bursty)")
    p.add_argument("--peak-rate", type=float, help="bursty: plateau rate (default 4x --rate)")
    p.add_argument("--machine-scaled", action="store_true",
                   help="multiply --rate and --peak-rate by the running system's calibration factor (`argus up "
                        "--calibrate`): rates given for the machine the profile was measured on")
    p.add_argument("--offset", type=float, default=0, help="start this many seconds into a file trace")
    p.add_argument("--prompts", help="prompt file, or world-held-out / world-train: the world's grammar (tasks "
                                      "evenly; --world-prompts of them); default: shipped DiffusionDB subset")
    p.add_argument("--world-prompts", type=int, default=1000, help="prompts drawn for a world prompt set")
    p.add_argument("--full-scores", type=Path, action="append", default=[],
                   help="an earlier report.json of the same trace and seed (e.g. of mode ha): its full-quality "
                        "exact scores give relative quality to this run's cheaper levels (repeatable; "
                        "--baseline counts too)")
    p.add_argument("--size", default="64x64")
    p.add_argument("--slo", type=float, help="latency SLO in seconds (default: the running service's)")
    p.add_argument("--url", help="endpoint (default: the running `argus up` system)")
    p.add_argument("--workdir", type=Path, default=Path("run"))
    p.add_argument("--out", type=Path, default=Path("out/load"), help="report directory")
    p.add_argument("--label", default="run", help="name of this run in the report")
    p.add_argument("--baseline", type=Path, help="an earlier report.json: print ratios against it")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def arrivals_for(args):
    """Arrival times (s) for the trace argument."""
    if args.trace == "bursty":
        peak = args.peak_rate or 4 * args.rate
        return bursty_arrivals(base_rate=args.rate, peak_rate=peak, duration=args.duration,
                               peak_start=args.duration / 3, peak_len=args.duration / 3, seed=args.seed)
    return scale_trace(read_arrivals(Path(args.trace)), mean_rate=args.rate, duration=args.duration, offset=args.offset)


def prompts_for(args) -> list[str]:
    """The prompts to draw from: a world prompt set, a file, or the shipped DiffusionDB subset."""
    from argus.world.prompt_sets import is_world_set, world_prompts

    if is_world_set(args.prompts):
        return world_prompts(args.prompts, args.world_prompts, args.seed)
    return read_prompts(Path(args.prompts) if args.prompts else None)


def measured_line(summary: dict) -> str:
    """One line: measured (exact scorer) beside predicted quality."""
    m = summary["measured_quality"]
    if not m["scored"]:
        return (f"measured quality: no image scored ({m['not_scorable']} prompts outside the world's grammar: "
                f"not scorable)")
    rel = (f"relative {m['mean_relative_quality']:.1f} % over {m['relative_known']} with a known full-quality score"
           if m["mean_relative_quality"] is not None else "relative quality unknown (no full-quality score)")
    pred = summary.get("avg_level_quality") or summary.get("avg_predicted_quality")
    return (f"measured quality: exact score {m['mean_exact_score']:.1f}/100 over {m['scored']} images, {rel}; "
            f"predicted {pred if pred is not None else 'n/a'} %; {m['not_scorable']} not scorable")


def run(args) -> int:
    """Replay, summarize, plot, compare."""
    state = {}
    if not args.url:
        state = read_state(args.workdir)
    url = args.url or state["url"]
    slo = args.slo or state.get("latency_slo_s") or 30.0
    if args.machine_scaled:
        cal = (state.get("status") or {}).get("calibration")
        if not cal:
            raise ValueError("--machine-scaled: the running system has no calibration (start it with "
                             "`argus up --calibrate`)")
        args.peak_rate = (args.peak_rate or 4 * args.rate) * cal["factor"]
        args.rate *= cal["factor"]
        print(f"[load] rates x {cal['factor']:.2f} (this machine's calibration): {args.rate:.2f} req/s, "
              f"peak {args.peak_rate:.2f} req/s", flush=True)
    arrivals = arrivals_for(args)
    prompts = prompts_for(args)
    full_scores = {}
    for path in args.full_scores + ([args.baseline] if args.baseline else []):
        full_scores.update(full_scores_of(json.loads(Path(path).read_text()).get("records", [])))
    print(f"[load] {len(arrivals)} requests over {args.duration:.0f}s against {url} (SLO {slo}s)", flush=True)
    t0 = time.monotonic()
    records, samples = asyncio.run(replay(url, arrivals, prompts, size=args.size, timeout_s=max(4 * slo, 60),
                                          seed=args.seed, state_file=(args.workdir / "state.json") if state else None,
                                          measure=exact_measure))
    duration = max(args.duration, time.monotonic() - t0)
    status = state.get("status") or {}
    if state:  # the loop's status at the end of the replay (level qualities, assumptions)
        try:
            status = read_state(args.workdir).get("status") or status
        except FileNotFoundError:
            pass
    lq = status.get("levelQuality")
    summary = summarize(records, slo_s=slo, duration=duration, level_quality=lq, full_scores=full_scores)
    tl = timeline(records, samples, slo_s=slo, bin_s=max(5.0, args.duration / 36), duration=duration,
                  level_quality=lq, full_scores=full_scores)
    out = args.out / args.label
    out.mkdir(parents=True, exist_ok=True)
    doc = {"label": args.label, "trace": args.trace, "mode": status.get("mode"), "summary": summary, "timeline": tl,
           "level_quality": lq, "assumptions": status.get("profileAssumptions", []),
           **records_to_json(records, samples)}
    if args.baseline:
        base = json.loads(args.baseline.read_text())
        doc["ratios_vs"] = {"baseline": base["label"], **ratios(summary, base["summary"])}
    (out / "report.json").write_text(json.dumps(doc, indent=1))
    png = plot({args.label: tl}, out / "timeline.png", f"argus load {args.trace}: {args.label}")
    print(json.dumps(summary, indent=1))
    print("[load] " + measured_line(summary))
    for a in doc["assumptions"]:
        print(f"[load] assumption: {a}")
    if "ratios_vs" in doc:
        print(f"ratios vs {doc['ratios_vs']['baseline']}: " + json.dumps({k: v for k, v in doc['ratios_vs'].items() if k != 'baseline'}))
    print(f"[load] report: {(out / 'report.json').resolve()}\n[load] plot:   {png.resolve()}")
    return 0
