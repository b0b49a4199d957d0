"""Local system benchmark: one bursty trace replayed against the whole local system (real Prometheus,
Envoy, router, Triton workers, the control loop) in each mode, same machine, same run.

Modes: argus (the control loop), proteus (the same loop prompt-agnostic: Proteus-like), ha (Clipper-HA: loop
off, all full quality), ht (Clipper-HT: all at the cheapest level), nirvana (cache levels only). Prints SLO violations, quality, throughput and the
ratios against Clipper-HA; writes bench/plots/local_burst.json and bench/plots/local_burst.png.

    .venv/bin/python bench/bench_local.py [--modes argus,proteus,ha,ht,nirvana] [--peak-len 150] [--calibrate]
        [--model world --prompts world-held-out]

--model world: the demo's world model (weights through `model.weightsPath`) with its bundled measured profile
and per-prompt predictor; every served image is scored by the exact scorer. Default: the tiny random model.

--calibrate: first measure what the two full-quality slots serve saturated on this machine (a separate
boot, `argus.tools.experiment.calibrate`) and multiply the rates, the throughput target and the loop's
profile by measured/profiled, as `argus up --calibrate` and `argus load --machine-scaled` do: the
default rates are for the machine the demo profile was measured on.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from argus.local.defaults import TINY_MANIFEST, WORLD_MODEL, WORLD_PREDICTOR, world_manifest
from argus.tools.experiment import boot, default_profile, replay_report, wait_settled, warm_up
from argus.tools.loadgen import Record
from argus.tools.report import full_scores_of, measured_quality, plot, ratios
from argus.spec import parse_manifest
from argus.tools.workload import bursty_arrivals, read_prompts

PLOTS = Path(__file__).resolve().parent / "plots"
KEYS = ["requests", "ok", "slo_violations", "slo_violation_rate", "throughput_rps", "goodput_rps",
        "latency_p50_s", "latency_p95_s", "avg_level_quality", "served_by_level", "late_rungs", "late_rungs_by_why"]


def main() -> int:
    """Run every mode on the same arrivals and prompts; print and save the comparison."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="argus,proteus,ha,ht,nirvana")
    ap.add_argument("--base", type=float, default=0.15, help="off-peak req/s")
    ap.add_argument("--peak", type=float, default=1.3, help="burst req/s")
    ap.add_argument("--lead", type=float, default=30, help="off-peak seconds before the burst")
    ap.add_argument("--peak-len", type=float, default=150)
    ap.add_argument("--tail", type=float, default=50, help="off-peak seconds after the burst")
    ap.add_argument("--slo", type=float, default=12.0)
    ap.add_argument("--prompts", help="world-held-out / world-train (scored by the exact scorer) or a prompt file "
                                      "(default: the shipped DiffusionDB subset, not scorable)")
    ap.add_argument("--model", choices=("tiny", "world"), default="tiny")
    ap.add_argument("--levels", help="comma list (default: the model's demo levels)")
    ap.add_argument("--out", type=Path, default=PLOTS / "local_burst")
    ap.add_argument("--calibrate", action="store_true", help="scale rates, target and profile to this machine")
    ap.add_argument("--target", type=float, default=1.0, help="the service's throughput target, req/s (scaled "
                    "with --calibrate like the rates)")
    ap.add_argument("--burst-horizon", type=float, default=None,
                    help="the service's burstHorizon, s (default: the demo manifest's)")
    ap.add_argument("--min-full", type=int, default=None,
                    help="the service's minFullQualityReplicas (default: the demo manifest's)")
    ap.add_argument("--keep-records", action="store_true",
                    help="also write each mode's whole report, every request's record and the allocation samples "
                         "included, to OUT_MODE_report.json (what `bench_sim.py fidelity-loop` replays)")
    ap.add_argument("--settle", type=float, default=300.0,
                    help="before each mode's replay: warm every replica up and wait, at most this many seconds, "
                         "until the system is at its off-peak steady state (the loop's boot-time plan is for "
                         "the target); 0: replay at once")
    a = ap.parse_args()
    if a.model == "world" and not (WORLD_MODEL / "model_index.json").is_file():
        ap.error(f"--model world: no bundled world model at {WORLD_MODEL}")
    m = world_manifest() if a.model == "world" else copy.deepcopy(TINY_MANIFEST)
    predictor = WORLD_PREDICTOR if a.model == "world" and WORLD_PREDICTOR.is_file() else None
    m["spec"].update(levels=a.levels.split(",") if a.levels else m["spec"]["levels"], latencySLO=a.slo,
                     controlPeriod=5, throughputTarget=a.target)
    if a.burst_horizon is not None:
        m["spec"]["burstHorizon"] = a.burst_horizon
    if a.min_full is not None:
        m["spec"]["minFullQualityReplicas"] = a.min_full
    name, spec = parse_manifest(m)
    from argus.world.prompt_sets import is_world_set, world_prompts

    prompts = (world_prompts(a.prompts, 1000) if is_world_set(a.prompts)
               else read_prompts(Path(a.prompts) if a.prompts else None))
    profile, calibration = default_profile(spec), None
    if a.calibrate:
        with tempfile.TemporaryDirectory(prefix="argus-bench-calibrate-") as wd:
            system, ctl = boot(name, spec, Path(wd), mode="ha", calibrate_with=prompts, predictor=predictor)
            ctl.stop()
            system.stop()
        calibration = ctl.calibration
        f = calibration["factor"]
        profile = ctl.profile
        a.base, a.peak = a.base * f, a.peak * f
        m["spec"]["throughputTarget"] = a.target * f
        name, spec = parse_manifest(m)
        print(f"calibrated: {calibration}; rates {a.base:.2f} -> {a.peak:.2f} req/s, target {a.target * f:.2f}", flush=True)
    arrivals = bursty_arrivals(base_rate=a.base, peak_rate=a.peak, duration=a.lead + a.peak_len + a.tail,
                               peak_start=a.lead, peak_len=a.peak_len, seed=1)
    docs = {}
    for mode in a.modes.split(","):
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"argus-bench-{mode}-") as wd:
            system, ctl = boot(name, spec, Path(wd), mode=mode, profile=profile, predictor=predictor)
            try:
                settled = None
                if a.settle > 0:
                    warm_up(system, prompts)
                    settled = wait_settled(system, ctl, timeout_s=a.settle)
                    print(f"{mode:8s} settled: {system.counts(ready_only=True)} after "
                          f"{'-' if settled is None else round(settled)} s", flush=True)
                docs[mode] = replay_report(system, arrivals, prompts, label=mode, trace="bursty", slo_s=a.slo,
                                           bin_s=10, progress=False)
                docs[mode]["events"] = list(ctl.events)
                docs[mode]["reasons"] = list(ctl.reasons)
                docs[mode]["policies"] = list(ctl.policies)
                docs[mode]["settled_after_s"] = settled
            finally:
                ctl.stop()
                system.stop()
        if a.keep_records:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            full = a.out.with_name(f"{a.out.name}_{mode}_report.json")
            full.write_text(json.dumps({**docs[mode], "spec": spec.model_dump(by_alias=True)}, default=str))
            print(f"{mode:8s} report with records: {full}", flush=True)
        s = docs[mode]["summary"]
        print(f"{mode:8s} {json.dumps({k: s[k] for k in KEYS})}  ({time.monotonic() - t0:.0f}s)", flush=True)
    base = docs.get("ha")
    if base:
        for mode, d in docs.items():
            d["ratios_vs_ha"] = ratios(d["summary"], base["summary"])
            print(f"{mode:8s} vs ha: {json.dumps(d['ratios_vs_ha'])}")
            # same arrivals, prompts and seeds in every mode: HA's full-quality scores give every mode's
            # cheaper answers a measured relative quality
            ok = [Record(**r) for r in d["records"] if r["status"] == 200]
            d["summary"]["measured_quality_vs_ha"] = mq = measured_quality(ok, full_scores_of(base["records"]))
            print(f"{mode:8s} measured: exact score {mq['mean_exact_score']}, relative to HA's images "
                  f"{mq['mean_relative_quality']} % over {mq['relative_known']}, not scorable {mq['not_scorable']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"model": a.model, "predictor": str(predictor) if predictor else None, "spec": spec.model_dump(by_alias=True), "arrivals": len(arrivals), "base_rps": a.base, "peak_rps": a.peak,
             "lead_s": a.lead, "settle_s": a.settle, "peak_len_s": a.peak_len, "tail_s": a.tail, "calibration": calibration}
    slim = {k: {kk: v for kk, v in d.items() if kk != "records"} for k, d in docs.items()}
    a.out.with_suffix(".json").write_text(json.dumps({"setup": setup, "runs": slim}, indent=1, default=str))
    png = plot({k: d["timeline"] for k, d in docs.items()}, a.out.with_suffix(".png"),
               f"local system, bursty trace ({a.base:.2f}->{a.peak:.2f}->{a.base:.2f} req/s), SLO {a.slo}s")
    print(f"wrote {a.out.with_suffix('.json')} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
