"""Operator benchmark: the real `kopf run` process with N T2IServices against KMock and a real Prometheus.

Measures (baselines from the same run): operator RSS idle (0 services) vs steady state with N; reconcile
latency (create -> policy ConfigMap and all Deployments present) of 1 service alone vs N created at once;
spec-change latency (edit -> replicas re-planned, observedGeneration advanced) vs the control period;
CPU share of the operator (and of the KMock emulator) in steady state; cleanup time after deleting all.
Usage: .venv/bin/python bench/bench_operator.py [--services 50] [--period 5] [--steady 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/operator"))

from op_harness import FakeRouter, KMockApi, Operator, Prometheus, wait_until  # noqa: E402

LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25"]


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def pct(xs: list[float], q: float) -> float:
    """q-quantile (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--period", type=float, default=5.0)
    ap.add_argument("--steady", type=float, default=30.0)
    ap.add_argument("--edits", type=int, default=10)
    a = ap.parse_args()
    names = [f"svc{i:03d}" for i in range(a.services)]
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    router = FakeRouter(["solo", *names])
    router.set(demand=0.5, h={"cache-k0": 0.5, "cache-k10": 0.5}, served={"cache-k0": 0.5}, quality=98.0)
    prom = Prometheus(work, [f"127.0.0.1:{router.port}"])
    api = KMockApi(work)
    op = Operator(api, work, tick_s=1.0, window="10s")
    spec = {"throughputTarget": 2, "gpus": 4, "levels": LEVELS, "controlPeriod": a.period,
            "prometheusUrl": prom.url}

    def planned(n: str) -> bool:
        return api.get(f"/api/v1/namespaces/default/configmaps/{n}-policy") is not None and \
            len(api.deployments(n)) == len(LEVELS)

    try:
        wait_until(lambda: "operator metrics" in op.logs() or op.metrics(), 30, what="operator up")
        time.sleep(3)
        rss_idle = rss_mib(op.proc.pid)
        t = time.monotonic()
        api.apply_t2i("solo", spec)
        wait_until(lambda: planned("solo"), 60, 0.05, what="solo planned")
        solo_s = time.monotonic() - t

        created = {}
        for n in names:
            created[n] = time.monotonic()
            api.apply_t2i(n, spec)
        done: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(done) < len(names) and time.monotonic() < deadline:
            cms = {c["metadata"]["name"] for c in api.items("/api/v1/namespaces/default/configmaps")}
            deps = api.items("/apis/apps/v1/namespaces/default/deployments")
            per = {}
            for d in deps:
                s = d["metadata"]["labels"]["argus.dev/service"]
                per[s] = per.get(s, 0) + 1
            now = time.monotonic()
            for n in names:
                if n not in done and f"{n}-policy" in cms and per.get(n, 0) == len(LEVELS):
                    done[n] = now - created[n]
            time.sleep(1.0)  # the emulator is single-threaded: the bench must not be its main load
        lat = list(done.values())
        all_s = max(lat) if lat else float("nan")

        # steady state: every service runs its control loop each period against Prometheus
        c0, k0, t0 = cpu_s(op.proc.pid), cpu_s(api.proc.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < a.steady:
            samples.append(rss_mib(op.proc.pid))
            time.sleep(1)
        cpu_share = (cpu_s(op.proc.pid) - c0) / (time.monotonic() - t0)
        kmock_share = (cpu_s(api.proc.pid) - k0) / (time.monotonic() - t0)
        rss_steady = max(samples)
        decisions = sum(float(line.split()[-1]) for line in op.metrics().splitlines()
                        if line.startswith("argus_operator_decisions_total{"))

        # spec edits: time until the new generation is planned and replicas follow the new budget
        edit_lat = []
        for n in names[: a.edits]:
            t = time.monotonic()
            api.edit_t2i(n, {"gpus": 6})
            wait_until(lambda: (api.t2i(n) or {}).get("status", {}).get("observedGeneration") == 2,
                       60, 0.25, what=f"{n} re-planned")
            edit_lat.append(time.monotonic() - t)

        t = time.monotonic()
        for n in ["solo", *names]:
            api.delete_t2i(n)
        wait_until(lambda: not api.items("/apis/apps/v1/namespaces/default/deployments"), 300, 0.2,
                   what="cleanup")
        cleanup_s = time.monotonic() - t
        alive = op.alive()
    finally:
        op.stop()
        api.stop()
        prom.stop()
        router.stop()

    rows = [
        ("services", f"{a.services} (+1 solo), {len(LEVELS)} levels each, controlPeriod {a.period:g} s, tick 1 s"),
        ("operator RSS idle / steady (max over %gs)" % a.steady,
         f"{rss_idle:.0f} MiB / {rss_steady:.0f} MiB (x{rss_steady / rss_idle:.2f}; target <= 250 MiB)"),
        ("reconcile latency, 1 service alone", f"{solo_s * 1000:.0f} ms"),
        (f"reconcile latency, {a.services} created at once p50 / p95 / max",
         f"{pct(lat, .5):.2f} / {pct(lat, .95):.2f} / {all_s:.2f} s (p50 x{pct(lat, .5) / solo_s:.1f} of solo)"),
        ("spec change acted on (edit -> observedGeneration) p50 / max",
         f"{pct(edit_lat, .5):.2f} / {max(edit_lat):.2f} s = {max(edit_lat) / a.period:.2f} control periods"),
        ("steady-state operator CPU", f"{cpu_share * 100:.0f}% of one core "
                                      f"({decisions:.0f} decisions counted)"),
        ("steady-state KMock emulator CPU", f"{kmock_share * 100:.0f}% of one core"),
        ("cleanup after deleting all", f"{cleanup_s:.1f} s"),
        ("operator alive at the end", str(alive)),
    ]
    print("| measure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
