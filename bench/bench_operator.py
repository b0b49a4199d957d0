"""Operator benchmark at fleet scale: the real `kopf run` process with N T2IServices on KMock and a real Prometheus.

KMock records every request (tests/support/kmock_audit_server.py), so the operator's request pattern is
counted by verb and resource. Measures:
- creation: N services created at once -> each planned (policy ConfigMap + every Deployment, their ADDED
  events on a watch), p50/p95/max;
- steady state over `--steady` control periods: operator requests per service per period by verb and
  resource (LISTs called out), requests/s, status writes, operator CPU and RSS (max);
- spec edits acted on (edit -> observedGeneration);
- deletion of every service: each one's time from its DELETE until it and its children are gone (the
  DELETED events of a watch on each kind);
- memory: operator RSS and its Python heap (tracemalloc from interpreter start, PYTHONTRACEMALLOC=1) idle
  before the services were created and after every one was deleted; "warm" is after one service was
  created and deleted first (one-time lazy imports and pools), "cold" before anything ran.
  Tracing slows every allocation (~3x the CPU of a Prometheus read): `--no-trace` for CPU numbers.
Usage: .venv/bin/python bench/bench_operator.py [--services 500] [--period 15] [--steady 3] [--json out.json]
Targets at 500 services: <= 2 requests per service per period, no LIST; RSS <= 250 MiB; heap after deleting
all within 5 % of before; every deletion within 5 s.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script outside the package: the test support is tests.support

from tests.support.harness import GROUP_PATH, FakeRouter, KMockApi, Operator, Prometheus, wait_until  # noqa: E402
from argus.levels import FULL

LEVELS = [FULL, "cache-k10", "cache-k20", "steps-25"]
NS = "default"
BENCH_AGENT = "python-requests"


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
    """q-quantile (nearest rank); nan for no data."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def gauge(text: str, name: str) -> float | None:
    """A plain gauge's value from a /metrics text (None when absent: an older operator)."""
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def operator_requests(entries: list[dict]) -> list[dict]:
    """The operator's requests (kopf's and the adapter's), without the long-lived watches."""
    return [e for e in entries if not e["agent"].startswith(BENCH_AGENT) and str(e["action"]).lower() != "watch"]


def census(entries: list[dict]) -> dict[str, int]:
    """Requests by verb and resource, e.g. 'PATCH t2iservices/status' or 'GET deployments (list)'."""
    out = collections.Counter()
    for e in entries:
        action = str(e["action"]).lower()
        what = (e["plural"] or e["path"]) + (f"/{e['subresource']}" if e["subresource"] else "")
        out[f"{e['method']} {what}" + (" (list)" if action == "list" else "")] += 1
    return dict(sorted(out.items()))


def children(api: KMockApi) -> tuple[set[str], dict[str, int], set[str]]:
    """(policy ConfigMap names, Deployments per service, services with any child) from three lists."""
    cms = {c["metadata"]["name"] for c in api.items(f"/api/v1/namespaces/{NS}/configmaps")}
    per: dict[str, int] = collections.Counter()
    anyc = set()
    for d in api.items(f"/apis/apps/v1/namespaces/{NS}/deployments"):
        s = d["metadata"].get("labels", {}).get("argus.dev/service")
        per[s] += 1
        anyc.add(s)
    for s in api.items(f"/api/v1/namespaces/{NS}/services"):
        anyc.add(s["metadata"].get("labels", {}).get("argus.dev/service"))
    return cms, per, anyc


class Watch:
    """Watch streams on the T2IServices and their children: when each service's objects were created
    (its policy ConfigMap and every Deployment: planned) and deleted (itself and every child), as the
    events reach the bench; no LIST of thousands of objects per poll to load the single-threaded emulator."""

    PATHS = {"T2IService": GROUP_PATH.format(ns=NS), "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
             "Service": f"/api/v1/namespaces/{NS}/services", "ConfigMap": f"/api/v1/namespaces/{NS}/configmaps",
             "PersistentVolumeClaim": f"/api/v1/namespaces/{NS}/persistentvolumeclaims"}

    def __init__(self, api: KMockApi):
        self.lock = threading.Lock()
        self.deployments: dict[str, set[str]] = collections.defaultdict(set)
        self.policy: set[str] = set()
        self.planned: dict[str, float] = {}  # service -> when its policy and last Deployment were added
        self.deleted: dict[str, int] = collections.Counter()  # service -> its objects deleted so far
        self.last_deleted: dict[str, float] = {}
        for kind, path in self.PATHS.items():
            threading.Thread(target=self._stream, args=(api.url + path, kind), daemon=True).start()

    def _stream(self, url: str, kind: str) -> None:
        try:
            with requests.get(url, params={"watch": "true"}, stream=True, timeout=(10, None)) as r:
                for line in r.iter_lines():
                    if line:
                        self._event(kind, json.loads(line), time.monotonic())
        except requests.exceptions.RequestException:
            return  # the emulator stopped at the bench's end: the stream ends with it

    def _event(self, kind: str, ev: dict, now: float) -> None:
        meta = ev.get("object", {}).get("metadata", {})
        name = meta.get("name", "")
        service = name if kind == "T2IService" else (meta.get("labels") or {}).get("argus.dev/service")
        if not service:
            return
        with self.lock:
            if ev.get("type") == "DELETED":
                self.deleted[service] += 1
                self.last_deleted[service] = now
            elif ev.get("type") == "ADDED" and service not in self.planned:
                if kind == "Deployment":
                    self.deployments[service].add(name)
                elif kind == "ConfigMap" and name == f"{service}-policy":
                    self.policy.add(service)
                if service in self.policy and len(self.deployments[service]) == len(LEVELS):
                    self.planned[service] = now


OBJECTS_PER_SERVICE = 1 + 2 * len(LEVELS) + 2  # itself, a Deployment and a Service per level, policy, PVC


def heap_snapshot(op: Operator, work: Path, n: int) -> Path:
    """Ask the operator for a tracemalloc snapshot (SIGUSR1) and wait for the file."""
    os.kill(op.proc.pid, signal.SIGUSR1)
    path = work / f"heap-{n}.snap"
    wait_until(lambda: path.exists(), 120, 0.5, what=f"heap snapshot {n}")
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=500)
    ap.add_argument("--period", type=float, default=15.0, help="spec.controlPeriod, s")
    ap.add_argument("--steady", type=float, default=3, help="steady-state window, in control periods")
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--no-trace", action="store_true", help="no tracemalloc (CPU and RSS without its overhead)")
    ap.add_argument("--trace-frames", type=int, default=1, help="frames per traced allocation (more: who kept it)")
    a = ap.parse_args()
    names = [f"svc{i:03d}" for i in range(a.services)]
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    router = FakeRouter(["solo", *names], tick_s=1.0)  # Prometheus scrapes every second
    router.set(demand=0.5, h={FULL: 0.5, "cache-k10": 0.5}, served={FULL: 0.5}, quality=98.0)
    prom = Prometheus(work, [f"127.0.0.1:{router.port}"])
    api = KMockApi(work, audit=True)
    trace = {} if a.no_trace else {"PYTHONTRACEMALLOC": str(a.trace_frames), "ARGUS_OPERATOR_TRACE_HEAP": "1",
                                   "ARGUS_OPERATOR_HEAP_SNAPSHOT_DIR": str(work)}
    op = Operator(api, work, tick_s=1.0, window="10s", verbosity="info",
                  extra_env={**trace, "ARGUS_OPERATOR_PROMETHEUS_TIMEOUT_S": "5"})
    spec = {"throughputTarget": 2, "gpus": 4, "levels": LEVELS, "controlPeriod": a.period,
            "prometheusUrl": prom.url, "scaleDownHalfLife": 5}
    r: dict = {"services": a.services, "levels": len(LEVELS), "period_s": a.period}
    try:
        wait_until(lambda: op.metrics(), 180, 1, what="operator up")
        time.sleep(3)
        r["rss_cold_mib"] = rss_mib(op.proc.pid)
        r["heap_cold_bytes"] = gauge(op.metrics(), "argus_operator_traced_heap_bytes")
        t = time.monotonic()
        api.apply_t2i("solo", spec)
        wait_until(lambda: "solo-policy" in children(api)[0] and children(api)[1].get("solo") == len(LEVELS),
                   60, 0.1, what="solo planned")
        r["create_solo_s"] = time.monotonic() - t
        time.sleep(min(a.period, 10) + 1)
        api.delete_t2i("solo")
        wait_until(lambda: "solo" not in children(api)[2], 30, 0.5, what="solo deleted")
        time.sleep(5)
        r["rss_idle_mib"] = rss_mib(op.proc.pid)
        r["heap_idle_bytes"] = gauge(op.metrics(), "argus_operator_traced_heap_bytes")
        log0 = len(op.logs().splitlines())
        n_before = len(operator_requests(api.audit()))
        snap_before = heap_snapshot(op, work, 0) if not a.no_trace else None

        watch = Watch(api)
        time.sleep(2)  # the streams are open
        created = {}
        t_create = time.monotonic()
        for n in names:
            created[n] = time.monotonic()
            api.apply_t2i(n, spec)
        r["create_calls_s"] = time.monotonic() - t_create
        deadline = time.monotonic() + 900
        while sum(n in watch.planned for n in names) < len(names) and time.monotonic() < deadline:
            time.sleep(0.5)
        with watch.lock:
            done = {n: watch.planned[n] - created[n] for n in names if n in watch.planned}
            last = max((watch.planned[n] for n in names if n in watch.planned), default=float("nan"))
        lat = list(done.values())
        r.update(created=len(done), create_p50_s=pct(lat, .5), create_p95_s=pct(lat, .95),
                 create_all_s=last - t_create if len(done) == len(names) else float("nan"))
        creation = operator_requests(api.audit())[n_before:]
        r["requests_to_create_per_service"] = len(creation) / a.services
        r["create_requests"] = census(creation)

        time.sleep(a.period + 2)  # every service through one period with metrics
        n0, log1 = len(api.audit()), len(op.logs().splitlines())
        c0, k0, t0 = cpu_s(op.proc.pid), cpu_s(api.proc.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < a.steady * a.period:
            samples.append(rss_mib(op.proc.pid))
            time.sleep(1)
        dt = time.monotonic() - t0
        window = operator_requests(api.audit()[n0:])
        lines = op.logs().splitlines()[log1:]
        r.update(steady_s=dt, steady_cpu_operator=(cpu_s(op.proc.pid) - c0) / dt,
                 steady_cpu_kmock=(cpu_s(api.proc.pid) - k0) / dt, rss_steady_mib=max(samples),
                 steady_requests=census(window), steady_requests_per_s=len(window) / dt,
                 steady_requests_per_service_period=len(window) / (a.services * dt / a.period),
                 steady_lists=sum(1 for e in window if str(e["action"]).lower() == "list"),
                 steady_status_writes=sum(1 for e in window if e["subresource"] == "status"),
                 steady_info_lines=len(lines), steady_info_sample=lines[:3],
                 log_lines_creation=log1 - log0)

        edit_lat = []
        for n in names[: a.edits]:
            t = time.monotonic()
            api.edit_t2i(n, {"gpus": 6})
            try:
                wait_until(lambda: (api.t2i(n) or {}).get("status", {}).get("observedGeneration") == 2,
                           120, 0.2, what=f"{n} re-planned")
            except AssertionError:
                r["edits_not_acted_on"] = r.get("edits_not_acted_on", 0) + 1
                continue
            edit_lat.append(time.monotonic() - t)
        r.update(edit_p50_s=pct(edit_lat, .5), edit_max_s=max(edit_lat) if edit_lat else float("nan"))

        deleted = {}
        t_del = time.monotonic()
        for n in names:
            deleted[n] = time.monotonic()
            api.delete_t2i(n)
        r["delete_calls_s"] = time.monotonic() - t_del
        deadline = time.monotonic() + 300
        while sum(watch.deleted[n] >= OBJECTS_PER_SERVICE for n in names) < len(names) and time.monotonic() < deadline:
            time.sleep(0.5)
        with watch.lock:
            gone = {n: watch.last_deleted[n] - deleted[n] for n in names if watch.deleted[n] >= OBJECTS_PER_SERVICE}
        _, _, anyc = children(api)
        dl = list(gone.values())
        r.update(deleted=len(gone), delete_p50_s=pct(dl, .5), delete_max_s=max(dl) if dl else float("nan"),
                 deletions_over_5s=sum(1 for x in dl if x > 5.0) + len(names) - len(gone),
                 children_left=len(anyc & set(names)))

        wait_until(lambda: gauge(op.metrics(), "argus_operator_services") in (0.0, None), 60, 1,
                   what="the operator to forget every service")
        t_settle = time.monotonic()
        # kopf's event loop works through the deletions' watch events (thousands, minutes behind under
        # load): wait until the operator's cache holds nothing, then until the heap stops shrinking.
        wait_until(lambda: gauge(op.metrics(), "argus_operator_cached_objects") in (0.0, None), 300, 2,
                   what="the operator's cache to empty")
        heaps = [gauge(op.metrics(), "argus_operator_traced_heap_bytes") or 0.0]
        while time.monotonic() - t_settle < 300:
            time.sleep(5)
            heaps.append(gauge(op.metrics(), "argus_operator_traced_heap_bytes") or 0.0)
            if len(heaps) >= 4 and heaps[-1] >= min(heaps[-4:-1]) * 0.995:
                break
        time.sleep(5)  # let in-flight work and the garbage collector settle
        r["settle_s"] = time.monotonic() - t_settle
        text = op.metrics()
        r["rss_after_delete_mib"] = rss_mib(op.proc.pid)
        r["heap_after_delete_bytes"] = gauge(text, "argus_operator_traced_heap_bytes")
        r["series_left"] = sum(1 for line in text.splitlines() if 'service="svc' in line)
        if snap_before is not None:  # what the heap kept: the allocation sites that grew most
            import tracemalloc
            after = tracemalloc.Snapshot.load(str(heap_snapshot(op, work, 1)))
            diff = after.compare_to(tracemalloc.Snapshot.load(str(snap_before)),
                                    "traceback" if a.trace_frames > 1 else "lineno")
            r["heap_kept_top"] = [f"{d.size_diff / 2**10:+.0f} KiB {d.count_diff:+d} blocks " +
                                  " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in d.traceback)
                                  for d in diff[:15]]
        r["alive"] = op.alive()
    finally:
        t = time.monotonic()
        op.stop()
        r["shutdown_s"] = time.monotonic() - t
        api.stop()
        prom.stop()
        router.stop()

    hc, hi, ha = r.get("heap_cold_bytes"), r.get("heap_idle_bytes"), r.get("heap_after_delete_bytes")
    heap = (f"cold {hc / 2**20:.1f} MiB, warm {hi / 2**20:.1f} MiB -> {ha / 2**20:.1f} MiB after "
            f"({(ha - hi) / hi * 100:+.1f} % of warm, {(ha - hc) / hc * 100:+.1f} % of cold)") if hc and hi and ha else "n/a"
    rows = [
        ("services", f"{a.services}, {len(LEVELS)} levels each, controlPeriod {a.period:g} s, tick 1 s"),
        ("creation: one alone; N at once -> all planned",
         f"{r['create_solo_s']:.1f} s; {r['create_all_s']:.1f} s ({r['create_calls_s']:.1f} s to send the creates) (per service p50 {r['create_p50_s']:.1f} s,"
         f" p95 {r['create_p95_s']:.1f} s); {r['requests_to_create_per_service']:.1f} requests per service "
         f"{r['create_requests']}"),
        ("steady: operator requests per service per period",
         f"{r['steady_requests_per_service_period']:.2f} ({r['steady_requests_per_s']:.2f} req/s; "
         f"{r['steady_lists']} LIST, {r['steady_status_writes']} status writes) {r['steady_requests']}"),
        ("steady: operator CPU / KMock CPU", f"{r['steady_cpu_operator'] * 100:.1f} % / {r['steady_cpu_kmock'] * 100:.1f} %"
                                            " of one core"),
        ("steady: lines logged at INFO", f"{r['steady_info_lines']} in {r['steady_s']:.0f} s"),
        ("RSS cold / warm idle / steady (max) / after deleting all" + ("" if a.no_trace else " (tracemalloc on)"),
         f"{r['rss_cold_mib']:.0f} / {r['rss_idle_mib']:.0f} / {r['rss_steady_mib']:.0f} / "
         f"{r['rss_after_delete_mib']:.0f} MiB"),
        ("Python heap (tracemalloc) idle -> after deleting all", heap +
         f" (after {r.get('settle_s', float('nan')):.0f} s: the cache empty, the heap no longer shrinking)"),
        ("spec edit acted on p50 / max", f"{r['edit_p50_s']:.2f} / {r['edit_max_s']:.2f} s"
                                         f" ({r.get('edits_not_acted_on', 0)} not within 120 s)"),
        ("deletion (DELETE -> it and its children gone) p50 / max",
         f"{r['delete_p50_s']:.1f} / {r['delete_max_s']:.1f} s; over 5 s: {r['deletions_over_5s']}; "
         f"{r['delete_calls_s']:.1f} s to send the DELETEs; services with children left: {r['children_left']}"),
        ("per-service metric series left after deleting all", str(r["series_left"])),
        ("shutdown (SIGTERM -> exit)", f"{r['shutdown_s']:.1f} s"),
    ]
    for line in r.get("heap_kept_top", []):
        print("heap kept:", line, file=sys.stderr)
    print("| measure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=str))
    return 0 if r.get("alive") else 1


if __name__ == "__main__":
    sys.exit(main())
