"""The operator, started exactly as the chart starts it, calls only what the chart's RBAC grants.

Cases, in cluster-wide and in namespaced mode: the real `kopf run` process with the args and env of
the rendered operator Deployment (peering on; the liveness address moved to loopback, its metrics off) runs against
the operator tests' KMock API server with an audit log; a T2IService (the laptop example) is
applied, edited to drop a level, and deleted. Every request the operator sent, mapped to
(apiGroup, resource[/subresource], verb), must be granted by the operator's ClusterRole/Role of that mode.
The run must have exercised the main paths (watch, create, patch, delete of children, status).
Namespaced without cluster discovery (no ClusterRole), with KMock enforcing the rendered Role (403
otherwise): the operator acts on a T2IService within 20 s of its start and is refused nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from argus.adapters import helm_chart
from argus.adapters import kube_permissions as kp
from argus.local.supervisor import free_port
from tests.support.chart import ROOT, by_kind

VERB = {"WATCH": "watch", "LIST": "list", "FETCH": "get", "CREATE": "create", "DELETE": "delete"}
NS = "argus"
T2I = f"/apis/argus.dev/v1alpha1/namespaces/{NS}/t2iservices"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def _wait(check, timeout, what, logs: Path | None = None, operator: subprocess.Popen | None = None):
    """Wait for `check`; on a timeout, or as soon as the operator has exited, fail with the logs' tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator is not None and operator.poll() is not None:
            what = f"{what}: the operator exited with {operator.returncode}"
            break
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    tails = "".join(f"\n--- {f.name} (tail) ---\n{f.read_text()[-4000:]}"
                    for f in (sorted(logs.glob("*.log")) if logs else []))
    raise AssertionError(f"timed out waiting for {what}{tails}")


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _operator_command(objects: list[dict], kubeconfig: Path, liveness_port: int,
                      **env_extra: str) -> tuple[list[str], dict[str, str]]:
    deployment = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "argus-operator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [f"--liveness=http://127.0.0.1:{liveness_port}/healthz" if a.startswith("--liveness=") else a
            for a in container["args"]]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e},
           "POD_ID": "argus-operator-audit", "KUBECONFIG": str(kubeconfig),
           "ARGUS_OPERATOR_METRICS_PORT": "0",  # not audited; a port picked here can be taken before the bind
           "ARGUS_OPERATOR_TICK_S": "0.5", "ARGUS_OPERATOR_PROMETHEUS_TIMEOUT_S": "1",
           "ARGUS_OPERATOR_RETRY_DELAY_S": "0.5", **env_extra}
    return [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:], *args], env


def _triples(audit: Path) -> set[tuple[str, str, str]]:
    used = set()
    for line in audit.read_text().splitlines():
        e = json.loads(line)
        if e["plural"] is None or e["agent"].startswith("python-requests"):  # discovery; the test's own calls
            continue
        verb = VERB.get(e["action"]) or {"PATCH": "patch", "PUT": "update"}[e["method"]]
        resource = e["plural"] + (f"/{e['subresource']}" if e["subresource"] else "")
        used.add((e["group"] or "", resource, verb))
    return used


MODES = {  # RBAC mode -> chart values (KMock is seeded with the peering objects the chart would create)
    "cluster": {},
    "namespace": {"rbac": {"scope": "namespace"}},
}


def _granted(objects: list[dict]) -> set[tuple[str, str, str]]:
    """What the operator's ServiceAccount may do: its ClusterRole and its Role in the watched namespace."""
    return {t for o in objects if o["kind"] in ("ClusterRole", "Role")
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
            and o["metadata"].get("namespace", NS) == NS for t in kp.flatten(o["rules"])}


@contextlib.contextmanager
def _operator_against_kmock(tmp_path: Path, objects: list[dict], grants: dict | None = None, **env_extra: str):
    """KMock (with an audit log, enforcing `grants` if given) and the operator as the chart starts it;
    yields (API URL, operator process, audit path); stops both."""
    port_file, audit = tmp_path / "port", tmp_path / "audit.jsonl"
    extra = []
    if grants is not None:
        (tmp_path / "grants.json").write_text(json.dumps(grants))
        extra = [str(tmp_path / "grants.json")]
    server_log = open(tmp_path / "kmock.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "tests.support.kmock_audit_server", str(port_file),
                               str(audit), "argus", *extra], cwd=ROOT, stdout=server_log, stderr=subprocess.STDOUT)
    operator = None
    try:
        _wait(lambda: port_file.exists() and port_file.read_text(), 30, "KMock to listen")
        url = f"http://127.0.0.1:{port_file.read_text()}"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": url}}],
            "users": [{"name": "op", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "op"}}]}))
        for _ in range(3):  # a liveness port picked here can be taken before kopf binds it: kopf exits, pick again
            port = free_port()
            cmd, env = _operator_command(objects, kubeconfig, port, **env_extra)
            with open(tmp_path / "operator.log", "w") as op_log:
                operator = subprocess.Popen(cmd, env=env, stdout=op_log, stderr=subprocess.STDOUT, cwd=tmp_path)
            _wait(lambda: operator.poll() is not None or requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok,
                  120, "the operator's liveness endpoint", tmp_path)
            if f"{port}): address already in use" not in (tmp_path / "operator.log").read_text():
                break
        yield url, operator, audit
    finally:
        if operator is not None:
            _stop(operator)
        _stop(server)
        server_log.close()


def _example() -> dict:
    example = yaml.safe_load((ROOT / "manifests/examples/laptop.yaml").read_text())
    example["metadata"]["namespace"] = NS
    example["spec"]["prometheusUrl"] = f"http://127.0.0.1:{free_port()}"  # nothing there: NoMetrics path
    return example


def _deployment_names(url: str) -> set[str]:
    return {d["metadata"]["name"] for d in requests.get(url + DEPLOYMENTS, timeout=10).json()["items"]}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_operator_calls_only_what_the_chart_grants(tmp_path, mode):
    objects = helm_chart.render(ROOT, MODES[mode], release="argus", namespace=NS)
    with _operator_against_kmock(tmp_path, objects) as (url, operator, audit):
        example = _example()
        name, levels = example["metadata"]["name"], example["spec"]["levels"]
        requests.post(url + T2I, json=example, timeout=10).raise_for_status()
        _wait(lambda: _deployment_names(url) >= {f"{name}-{lv}" for lv in levels}, 90, "worker Deployments",
              tmp_path, operator)
        requests.patch(url + f"{T2I}/{name}", json={"spec": {"levels": levels[:-1]}}, timeout=10,
                       headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        _wait(lambda: f"{name}-{levels[-1]}" not in _deployment_names(url), 60, "the dropped level's Deployment to go",
              tmp_path, operator)
        requests.delete(url + f"{T2I}/{name}", timeout=10).raise_for_status()
        _wait(lambda: requests.get(url + f"{T2I}/{name}", timeout=10).status_code == 404, 60, "the T2IService to go",
              tmp_path, operator)
        assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]

    used, granted = _triples(audit), _granted(objects)
    assert used <= granted, f"called but not granted: {sorted(used - granted)}"
    peering = "clusterkopfpeerings" if mode == "cluster" else "kopfpeerings"
    # The T2IService itself is patched only to drop an older operator's finalizer (none here).
    assert {("argus.dev", "t2iservices", "watch"),
            ("argus.dev", "t2iservices/status", "patch"), ("apps", "deployments", "create"),
            ("apps", "deployments", "delete"), ("", "configmaps", "create"), ("kopf.dev", peering, "patch")} <= used, \
        sorted(used)


def _grants(objects: list[dict]) -> dict:
    """The operator's RBAC as the audit server enforces it: ClusterRole rules everywhere, Role rules in their namespace."""
    grants: dict = {"cluster": [], "namespaces": {}}
    for o in objects:
        if o["kind"] in ("ClusterRole", "Role") and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator":
            rules = [list(t) for t in kp.flatten(o["rules"])]
            if o["kind"] == "ClusterRole":
                grants["cluster"] += rules
            else:
                grants["namespaces"].setdefault(o["metadata"]["namespace"], []).extend(rules)
    return grants


@pytest.mark.timeout(120)
def test_namespaced_operator_without_cluster_discovery_starts_at_once(tmp_path):
    """rbac.clusterDiscovery=false: no ClusterRole, and KMock answers 403 to what the Role does not grant,
    as an API server would. The operator must act on a T2IService within 20 s of its start (kopf's
    scanning of namespaces and CRDs, retried on 403 through its backoffs, held it ~54 s) and must not
    be refused anything."""
    objects = helm_chart.render(ROOT, {"rbac": {"scope": "namespace", "clusterDiscovery": False}},
                                release="argus", namespace=NS)
    grants = _grants(objects)
    assert grants["cluster"] == [] and set(grants["namespaces"]) == {NS}
    with _operator_against_kmock(tmp_path, objects, grants) as (url, operator, audit):
        started = time.monotonic()
        example = _example()
        requests.post(url + T2I, json=example, timeout=10).raise_for_status()
        wanted = {f"{example['metadata']['name']}-{lv}" for lv in example["spec"]["levels"]}
        _wait(lambda: _deployment_names(url) >= wanted, 20, "worker Deployments within 20 s of the operator's start",
              tmp_path, operator)
        took = time.monotonic() - started
        assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
    refused = [json.loads(line) for line in audit.read_text().splitlines() if json.loads(line)["status"] == 403]
    assert refused == [], refused[:5]
    print(f"worker Deployments {took:.1f} s after the operator started")


@pytest.mark.timeout(90)
def test_operator_exits_at_once_when_its_metrics_port_is_taken(tmp_path):
    """A metrics port already in use stops the operator with the address in its log (the pod restarts
    and says why), rather than kopf retrying its startup a minute later with nothing running meanwhile."""
    objects = helm_chart.render(ROOT, {}, release="argus", namespace=NS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with _operator_against_kmock(tmp_path, objects, ARGUS_OPERATOR_METRICS_HOST="127.0.0.1",
                                     ARGUS_OPERATOR_METRICS_PORT=str(port)) as (_, operator, _):
            operator.wait(45)
    log = (tmp_path / "operator.log").read_text()
    assert operator.returncode != 0, log[-3000:]
    assert f"cannot serve the operator's metrics on 127.0.0.1:{port}" in log, log[-3000:]
