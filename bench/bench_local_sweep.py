"""Issue 19's burst sweep on the local system: `bench_local.py --calibrate` once per burst size and length,
every mode on the same arrivals in a cell, then SLO violations and quality against burst size, a line per mode.

A burst's size is a multiple of what the service's full-quality allocation serves by the profile (2 slots of
cache-k0 for the tiny demo); `--calibrate` then scales it to what this machine serves, so 1.0x is what the two
full-quality slots serve here, measured at the start of every cell.

    .venv/bin/python bench/bench_local_sweep.py [--sizes 0.8,1.1,1.5,2,3] [--lengths 60] \
        [--modes argus,proteus,ha,ht] [--fresh]

Each cell writes bench/plots/local_sweep/burst_<size>x_<length>s.{json,png} (1p5x for 1.5x) and is skipped when its JSON
exists, so a sweep cut off resumes where it stopped (`--fresh` reruns every cell). Then it writes
bench/plots/local_sweep.{json,png} and prints the table and the issue's local targets. It needs the machine
to itself: every cell measures what the machine serves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from argus.levels import FULL
from argus.local.defaults import TINY_MANIFEST
from argus.spec import parse_manifest
from argus.tools.experiment import default_profile

HERE = Path(__file__).resolve().parent
CELLS = HERE / "plots" / "local_sweep"
NAMES = {"argus": "Argus", "proteus": "Proteus-like", "ha": "Clipper-HA", "ht": "Clipper-HT", "nirvana": "NIRVANA"}


def full_quality_rps() -> float:
    """What the tiny demo service's GPUs serve at full quality, by its profile (req/s, before calibration)."""
    _, spec = parse_manifest(TINY_MANIFEST)
    return spec.gpus * default_profile(spec).get(FULL).peak_throughput


def cell_path(size: float, length: float) -> Path:
    """Where a cell's bench_local output goes (without suffix; no dot in the name: 1.5x is `1p5x`)."""
    return CELLS / f"burst_{size:g}x_{length:g}s".replace(".", "p")


def run_cell(size: float, length: float, modes: str, full: float, lead: float, tail: float) -> dict:
    """bench_local.py on one burst, its output streamed; returns the cell's JSON."""
    out = cell_path(size, length)
    out.parent.mkdir(parents=True, exist_ok=True)
    rps = round(size * full, 4)
    cmd = [sys.executable, str(HERE / "bench_local.py"), "--calibrate", "--peak", str(rps), "--target", str(rps),
           "--peak-len", str(length), "--lead", str(lead), "--tail", str(tail), "--modes", modes, "--out", str(out)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.with_suffix(".json").read_text())


def rows(cells: dict[tuple[float, float], dict]) -> list[dict]:
    """One row per cell and mode: violation rate, quality, requests served at a rung."""
    out = []
    for (size, length), doc in sorted(cells.items()):
        for mode, run in doc["runs"].items():
            s = run["summary"]
            out.append({"size": size, "length_s": length, "mode": mode, "requests": s["requests"],
                        "violation_rate": s["slo_violation_rate"], "quality": s["avg_level_quality"],
                        "late_rungs": s.get("late_rungs", 0)})
    return out


def targets(table: list[dict]) -> list[tuple[str, bool]]:
    """Issue 19's local targets, where the cell has them: at 1.1x Argus's violation rate at most Clipper-HA's,
    at 2x at most a third of it, and Argus's quality at least Clipper-HT's + 5 wherever Clipper-HT has
    violations too."""
    by = {(r["size"], r["length_s"], r["mode"]): r for r in table}
    checks = []
    for (size, length, mode), a in sorted(by.items()):
        if mode != "argus":
            continue
        ha, ht = by.get((size, length, "ha")), by.get((size, length, "ht"))
        cell = f"{size:g}x/{length:g}s"
        if ha is not None and size in (1.1, 2.0):
            share = 1.0 if size == 1.1 else 1 / 3
            checks.append((f"{cell}: violations {a['violation_rate']:.3f} <= {share:.2f} x Clipper-HA's "
                           f"{ha['violation_rate']:.3f}", a["violation_rate"] <= share * ha["violation_rate"]))
        if ht is not None and ht["violation_rate"] > 0:
            checks.append((f"{cell}: quality {a['quality']:.1f} >= Clipper-HT's {ht['quality']:.1f} + 5",
                           a["quality"] >= ht["quality"] + 5))
    return checks


def plot(table: list[dict], path: Path) -> Path:
    """Violation rate and quality against burst size, a line per mode (and burst length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in dict.fromkeys(r["mode"] for r in table):
        for length in sorted({r["length_s"] for r in table}):
            pts = sorted((r["size"], r["violation_rate"], r["quality"]) for r in table
                         if r["mode"] == mode and r["length_s"] == length)
            label = f"{NAMES.get(mode, mode)}, {length:g} s"
            ax1.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", label=label)
            ax2.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=label)
    ax1.set(xlabel="burst size (x what the full-quality slots serve here)", ylabel="SLO violations (% of requests)",
            title="SLO violations")
    ax2.set(xlabel="burst size (x what the full-quality slots serve here)", ylabel="mean quality served (%)",
            title="quality")
    ax1.legend(fontsize=8)
    fig.suptitle("local system burst sweep (tiny model, 2 slots, 12 s SLO)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    """Run (or resume) the sweep; print the table and the targets; write the summary and the plot."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.8,1.1,1.5,2,3")
    ap.add_argument("--lengths", default="60")
    ap.add_argument("--modes", default="argus,proteus,ha,ht")
    ap.add_argument("--lead", type=float, default=20.0, help="off-peak seconds before the burst")
    ap.add_argument("--tail", type=float, default=30.0, help="off-peak seconds after the burst")
    ap.add_argument("--fresh", action="store_true", help="rerun cells whose output exists")
    a = ap.parse_args(argv)
    full = full_quality_rps()
    grid = [(float(s), float(n)) for n in a.lengths.split(",") for s in a.sizes.split(",")]
    cells: dict[tuple[float, float], dict] = {}
    began = time.monotonic()
    for i, (size, length) in enumerate(grid, 1):
        done = cell_path(size, length).with_suffix(".json")
        if done.exists() and not a.fresh:
            print(f"[{i}/{len(grid)}] {size:g}x/{length:g}s: done before, read {done.name}", flush=True)
            cells[(size, length)] = json.loads(done.read_text())
            continue
        print(f"[{i}/{len(grid)} {time.monotonic() - began:.0f} s] {size:g}x/{length:g}s", flush=True)
        cells[(size, length)] = run_cell(size, length, a.modes, full, a.lead, a.tail)
    table = rows(cells)
    print("\n| burst | mode | requests | SLO violation rate | quality % | at a rung |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in table:
        print(f"| {r['size']:g}x/{r['length_s']:g}s | {NAMES.get(r['mode'], r['mode'])} | {r['requests']} | "
              f"{r['violation_rate']:.3f} | {r['quality']:.1f} | {r['late_rungs']} |")
    checks = targets(table)
    print(f"\ntargets: {sum(ok for _, ok in checks)} of {len(checks)} met")
    for text, ok in checks:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")
    summary = HERE / "plots" / "local_sweep"
    summary.with_suffix(".json").write_text(json.dumps({"full_quality_rps_profiled": full, "rows": table,
                                                       "targets": checks}, indent=1))
    print(f"wrote {summary.with_suffix('.json')} and {plot(table, summary.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
