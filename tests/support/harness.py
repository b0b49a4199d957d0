"""Real processes for operator tests and the benchmark: KMock API server, `kopf run`, Prometheus, a fake router.

Each is a small class with start/stop; the fake router exports the router's real metrics (argus.router.metrics
on its own registry) at rates the test sets, so Prometheus scrapes exactly the series the router would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import requests
from prometheus_client import generate_latest

from argus.local.supervisor import PortPool
from argus.router.metrics import RouterMetrics

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
METRICS_PORT_TAKEN = "cannot serve the operator's metrics"  # what the operator logs as it exits
GROUP_PATH = "/apis/argus.dev/v1alpha1/namespaces/{ns}/t2iservices"


def free_port() -> int:
    """A currently free loopback TCP port, below the ephemeral range (argus.local.supervisor.PortPool)."""
    return PortPool().take()


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `check` until it returns a truthy value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = check()
            if v:
                return v
        except Exception as e:  # keep polling through transient errors, report the last one
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})"
                                                                            if last_exc else ""))


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class KMockApi:
    """KMock's KubernetesEmulator in a child process, with a tiny JSON client for assertions."""

    def __init__(self, workdir: Path, audit: bool = False):
        """Start the emulator; with `audit`, every request is also logged (tests/support/kmock_audit_server.py)."""
        self.workdir = workdir
        port_file = workdir / "kmock.port"
        self.log = open(workdir / "kmock.log", "w")
        self.audit_path = workdir / "audit.jsonl" if audit else None
        cmd = [sys.executable, "-m", "tests.support.kmock_server", str(port_file)]
        if self.audit_path is not None:
            self.audit_path.touch()
            cmd = [sys.executable, "-m", "tests.support.kmock_audit_server", str(port_file), str(self.audit_path)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_file.exists() and port_file.read_text(), 30, what="KMock to listen")
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        self.http = requests.Session()
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: tester, user: {token: test}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: tester, namespace: default}}]\n"
            "current-context: kmock\n")

    def stop(self) -> None:
        """Stop the server."""
        _stop(self.proc)
        self.log.close()

    def audit(self) -> list[dict]:
        """Every request served so far, oldest first (needs audit=True)."""
        assert self.audit_path is not None, "KMockApi(audit=True) records requests"
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]

    def get(self, path: str) -> dict | None:
        """GET; None on 404."""
        r = self.http.get(self.url + path, timeout=10)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def items(self, path: str) -> list[dict]:
        """The items of a list."""
        return (self.get(path) or {}).get("items", [])

    def create(self, path: str, obj: dict) -> dict:
        """POST an object."""
        r = self.http.post(self.url + path, json=obj, timeout=10)
        r.raise_for_status()
        return r.json()

    def patch(self, path: str, body: dict) -> dict:
        """Merge-patch an object."""
        r = self.http.patch(self.url + path, json=body, timeout=10,
                            headers={"Content-Type": "application/merge-patch+json"})
        r.raise_for_status()
        return r.json()

    def delete(self, path: str) -> None:
        """DELETE an object."""
        self.http.delete(self.url + path, timeout=10).raise_for_status()

    # T2IService and children helpers
    def t2i(self, name: str, ns: str = "default") -> dict | None:
        """A T2IService, or None."""
        return self.get(GROUP_PATH.format(ns=ns) + f"/{name}")

    def apply_t2i(self, name: str, spec: dict, ns: str = "default") -> dict:
        """Create a T2IService."""
        return self.create(GROUP_PATH.format(ns=ns), {"apiVersion": "argus.dev/v1alpha1", "kind": "T2IService",
                                                      "metadata": {"name": name, "namespace": ns}, "spec": spec})

    def edit_t2i(self, name: str, spec: dict, ns: str = "default") -> dict:
        """Merge-patch a T2IService's spec."""
        return self.patch(GROUP_PATH.format(ns=ns) + f"/{name}", {"spec": spec})

    def delete_t2i(self, name: str, ns: str = "default") -> None:
        """Delete a T2IService."""
        self.delete(GROUP_PATH.format(ns=ns) + f"/{name}")

    def owned(self, kind_path: str, service: str, ns: str = "default") -> list[dict]:
        """Children of kind (e.g. 'apis/apps/v1/.../deployments') labelled with the service."""
        return [o for o in self.items(kind_path.format(ns=ns))
                if o["metadata"].get("labels", {}).get("argus.dev/service") == service]

    def deployments(self, service: str, ns: str = "default") -> dict[str, dict]:
        """The service's Deployments by name."""
        return {d["metadata"]["name"]: d for d in self.owned("/apis/apps/v1/namespaces/{ns}/deployments", service, ns)}

    def replicas(self, service: str, ns: str = "default") -> dict[str, int]:
        """Replicas per level from the Deployments."""
        return {d["metadata"]["labels"]["argus.dev/level"]: d["spec"]["replicas"]
                for d in self.deployments(service, ns).values()}

    def events(self, ns: str = "default", name: str | None = None) -> list[dict]:
        """Events in the namespace (about `name` when given)."""
        evs = self.items(f"/api/v1/namespaces/{ns}/events")
        return [e for e in evs if name is None or e.get("involvedObject", {}).get("name") == name]

    def mark_ready(self, service: str, ns: str = "default") -> None:
        """Play the Deployment controller: readyReplicas = replicas for the service's Deployments."""
        for name, d in self.deployments(service, ns).items():
            self.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/status",
                       {"status": {"readyReplicas": d["spec"]["replicas"]}})


class Operator:
    """`kopf run -m argus.controlplane.handlers` against the KMock API, as the real operator process."""

    def __init__(self, api: KMockApi, workdir: Path, *, tick_s: float = 0.5, window: str = "5s",
                 peering: str | None = None, priority: int = 0, tag: str = "op", extra_env: dict | None = None,
                 verbosity: str | None = None):
        """Start `kopf run`; `verbosity` 'quiet', 'info' (kopf's default) or 'verbose' (default: verbose
        with peering, else quiet)."""
        self._env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "ARGUS_OPERATOR_TICK_S": str(tick_s),
                     "ARGUS_OPERATOR_RATE_WINDOW": window, "ARGUS_OPERATOR_METRICS_HOST": "127.0.0.1",
                     "ARGUS_OPERATOR_PROMETHEUS_TIMEOUT_S": "1", "ARGUS_OPERATOR_RETRY_DELAY_S": "0.5",
                     **(extra_env or {})}
        args = [str(VENV_BIN / "kopf"), "run", "-m", "argus.controlplane.handlers", "-n", "default", "-n", "argus",
                "--log-format=plain"]
        verbosity = verbosity or ("verbose" if peering else "quiet")
        args += [] if verbosity == "info" else [f"--{verbosity}"]
        args += ["--peering", peering, "--priority", str(priority)] if peering else ["--standalone"]
        self._args = args
        self.log_path = workdir / f"{tag}.log"
        self._start()

    def _start(self) -> None:
        """Start the process on a free metrics port (a fresh log)."""
        self.metrics_port = free_port()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self._args, env={**self._env, "ARGUS_OPERATOR_METRICS_PORT": str(self.metrics_port)},
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=str(ROOT))

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def wait_started(self, timeout: float = 180.0) -> "Operator":
        """Wait until its startup handler has run (its /metrics answers): what a test times after this is the
        operator's work, not the interpreter importing kopf, kubernetes and the optimizer on a busy machine
        (seconds on a quiet one, tens of seconds beside a heavy job). Fails at once if the process exits."""
        restarts = 0

        def up():
            nonlocal restarts
            if not self.alive() and METRICS_PORT_TAKEN in self.logs() and restarts < 3:
                restarts += 1  # the port picked was taken by another process before the operator bound it
                self.log.close()
                self._start()
                return False
            assert self.alive(), f"the operator exited ({self.proc.returncode}):\n{self.logs()[-3000:]}"
            try:
                return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).ok
            except requests.RequestException:
                return False
        deadline = time.monotonic() + timeout
        while not up():
            assert time.monotonic() < deadline, f"the operator did not start within {timeout:.0f} s"
            time.sleep(0.2)
        return self

    def metrics(self) -> str:
        """The operator's own /metrics text."""
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def logs(self) -> str:
        """Everything the process logged so far."""
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        """SIGTERM, then kill."""
        _stop(self.proc, 15)
        self.log.close()

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        self.proc.kill()
        self.proc.wait(5)
        self.log.close()


class FakeRouter:
    """Exports the router's metrics at rates the test sets (per second), on a loopback HTTP port."""

    def __init__(self, service: str | list[str], tick_s: float = 0.1):
        """Serve the metrics of `service`(s); counters advance every `tick_s` seconds."""
        self.tick_s = tick_s
        self.services = [service] if isinstance(service, str) else list(service)
        self.metrics = RouterMetrics()
        self.rates: dict[str, Any] = {"demand": 0.0, "h": {}, "served": {}, "quality": 95.0, "slo": 0.0}
        self.lock = threading.Lock()
        self.port = free_port()
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                body = generate_latest(metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._stop = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._tick, args=(tick_s,), daemon=True).start()

    def set(self, demand: float, h: dict[str, float], served: dict[str, float] | None = None,
            quality: float = 95.0, slo: float = 0.0) -> None:
        """Arrivals/s, shares of optimal levels, served/s per level, predicted quality, SLO misses/s."""
        with self.lock:
            self.rates = {"demand": demand, "h": dict(h), "served": dict(served or {}), "quality": quality,
                          "slo": slo}

    def _tick(self, dt: float = 0.1) -> None:
        for s in self.services:  # the series exist from the start, as after the router's first request
            self.metrics.arrivals.labels(s).inc(0)
        while not self._stop.wait(dt):
            with self.lock:
                r = dict(self.rates)
            for s in self.services:
                self._advance(s, r, dt)

    def _advance(self, s: str, r: dict[str, Any], dt: float) -> None:
        """Advance one service's counters by `dt` seconds at the configured rates."""
        m = self.metrics
        m.arrivals.labels(s).inc(r["demand"] * dt)
        for lv, share in r["h"].items():
            m.optimal.labels(s, lv).inc(r["demand"] * share * dt)
        for lv, rate in r["served"].items():
            m.requests.labels(s, lv, "ok").inc(rate * dt)
            m.slo.labels(s, lv).inc(0)
        if r["served"]:
            m.quality.labels(s).observe(r["quality"])  # only the mean (sum/count) is read
        if r["slo"]:
            m.slo.labels(s, next(iter(r["served"]), "cache-k0")).inc(r["slo"] * dt)

    def stop(self) -> None:
        """Stop serving."""
        self._stop.set()
        self.server.shutdown()


class Prometheus:
    """The real `prometheus` binary scraping the given targets every second."""

    def __init__(self, workdir: Path, targets: list[str], port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.targets = targets
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        (workdir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: router\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.start()

    def start(self) -> None:
        """Start (or restart, same port and data) and wait until it answers."""
        self.log = open(self.workdir / "prometheus.log", "a")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=2).status_code == 200, 30,
                   what="Prometheus ready")

    def query(self, promql: str) -> list[dict]:
        """Instant query result."""
        r = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def queries_answered(self) -> int:
        """Instant queries this Prometheus has answered, from its own prometheus_http_requests_total."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line))

    def stop(self) -> None:
        """Stop it."""
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
            self.log.close()


class SlowPrometheus:
    """A Prometheus query endpoint that answers every query with one sample (`value`), after `delay`
    seconds: a fault injector that holds a control period in flight. `pending` counts queries being held."""

    def __init__(self, value: float = 0.5):
        self.value, self.delay, self.pending = value, 0.0, 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                outer.pending += 1
                try:
                    time.sleep(outer.delay)
                    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [time.time(), str(outer.value)]}]}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    outer.pending -= 1

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
