"""Real Helm actions (helm-python-sdk's install) against a KMock API server (tests/chart/kmock_fresh_cluster.py).

Cases, cluster-wide and namespaced:
- `helm install --dry-run=server` on a fresh cluster (no CRD installed: a server dry run does not
  install crds/) succeeds; the operator still runs with --peering, the peering object is left out;
- with the chart's CRDs served (what `helm install` sees: it installs crds/ before it reads the
  cluster's capabilities), the same install creates the peering object (ClusterKopfPeering, or a
  KopfPeering per watched namespace); a standalone operator (peering off) gets none, with crds or not.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from argus.adapters.helm_chart import parse_documents
from tests.support.chart import ROOT

MODES = {"cluster": {}, "namespace": {"rbac": {"scope": "namespace", "watchNamespaces": ["team-a", "team-b"]}},
         "standalone": {"operator": {"peering": {"enabled": False}}}}


@pytest.fixture(scope="module", params=["fresh", "with-crds"])
def cluster(request, tmp_path_factory):
    """(kind, kubeconfig text) of a KMock API server, fresh or with the chart's CRDs installed."""
    tmp = tmp_path_factory.mktemp(request.param)
    port_file = tmp / "port"
    args = [sys.executable, str(ROOT / "tests/chart/kmock_fresh_cluster.py"), str(port_file)]
    log = open(tmp / "kmock.log", "w")
    server = subprocess.Popen(args + (["--with-crds"] if request.param == "with-crds" else []),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert server.poll() is None and time.monotonic() < deadline, (tmp / "kmock.log").read_text()
            time.sleep(0.2)
        yield request.param, yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{port_file.read_text()}"}}],
            "users": [{"name": "admin", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "admin", "namespace": "argus"}}]})
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def server_dry_run(kubeconfig: str, values: dict) -> list[dict]:
    """`helm install argus . -n argus --dry-run=server`: the objects it would create."""
    import helm_python

    with helm_python.Config(kubeconfig_content=kubeconfig, namespace="argus", storage_driver="memory") as cfg:
        release = cfg.install(str(ROOT), "argus", values, namespace="argus", dry_run="server")
    return parse_documents(release["manifest"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_server_dry_run(cluster, mode):
    kind, kubeconfig = cluster
    objects = server_dry_run(kubeconfig, MODES[mode])
    operator = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "argus-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ("--standalone" if mode == "standalone" else "--peering=argus") in args
    peerings = [o for o in objects if o["kind"] in ("ClusterKopfPeering", "KopfPeering")]
    if kind == "fresh" or mode == "standalone":
        assert peerings == []
    elif mode == "cluster":
        assert [(p["kind"], p["metadata"]["name"]) for p in peerings] == [("ClusterKopfPeering", "argus")]
    else:
        assert sorted((p["kind"], p["metadata"]["namespace"]) for p in peerings) == \
            [("KopfPeering", "team-a"), ("KopfPeering", "team-b")]
