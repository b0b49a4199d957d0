"""`argus load TRACE`: replay a request trace open-loop against Envoy and write a report (JSON + PNG)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from argus.loadgen import records_to_json, replay
from argus.local.runtime import read_state
from argus.report import plot, ratios, summarize, timeline
from argus.workload import bursty_arrivals, load_prompts, load_trace, scale_trace


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
    p.add_argument("--prompts", type=Path, help="prompt file (default: shipped DiffusionDB subset)")
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
    return scale_trace(load_trace(Path(args.trace)), mean_rate=args.rate, duration=args.duration, offset=args.offset)


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
    prompts = load_prompts(args.prompts)
    print(f"[load] {len(arrivals)} requests over {args.duration:.0f}s against {url} (SLO {slo}s)", flush=True)
    t0 = time.monotonic()
    records, samples = asyncio.run(replay(url, arrivals, prompts, size=args.size, timeout_s=max(4 * slo, 60),
                                          seed=args.seed, state_file=(args.workdir / "state.json") if state else None))
    duration = max(args.duration, time.monotonic() - t0)
    status = state.get("status") or {}
    if state:  # the loop's status at the end of the replay (level qualities, assumptions)
        try:
            status = read_state(args.workdir).get("status") or status
        except FileNotFoundError:
            pass
    lq = status.get("levelQuality")
    summary = summarize(records, slo_s=slo, duration=duration, level_quality=lq)
    tl = timeline(records, samples, slo_s=slo, bin_s=max(5.0, args.duration / 36), duration=duration,
                  level_quality=lq)
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
    for a in doc["assumptions"]:
        print(f"[load] assumption: {a}")
    if "ratios_vs" in doc:
        print(f"ratios vs {doc['ratios_vs']['baseline']}: " + json.dumps({k: v for k, v in doc['ratios_vs'].items() if k != 'baseline'}))
    print(f"[load] report: {(out / 'report.json').resolve()}\n[load] plot:   {png.resolve()}")
    return 0
