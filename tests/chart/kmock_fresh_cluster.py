"""A fresh cluster's API server for real Helm actions (helm-python-sdk) against KMock.

Run: `python tests/chart/kmock_fresh_cluster.py PORT_FILE [--with-crds]`. It serves KMock's bundled
discovery of the built-in kinds, Kubernetes v1.30 in /version and an OpenAPI v2 document with no
definitions (kubectl-style validation then skips every kind; Helm refuses to build objects without
one). Without --with-crds no CustomResourceDefinition is installed: what `helm install --dry-run=server`
meets on a fresh cluster (it does not install crds/). With --with-crds the kinds of the chart's crds/
are served too: what the rest of `helm install` meets, since Helm installs crds/ before it reads the
cluster's capabilities and renders the templates.
Two KMock 0.8 quirks are fixed: the core group's resource list says groupVersion "/v1" (clients then
map no core kind), and /version says v1.26 (below the chart's kubeVersion).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp.web
import kmock
import yaml
from kmock._internal.apps import Server

ROOT = Path(__file__).resolve().parents[2]
VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.2", "platform": "linux/amd64"}


def _field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (short values only)."""
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


# gnostic's openapi_v2.Document{swagger: "2.0", info: {title, version}}: what /openapi/v2 serves (protobuf).
OPENAPI_V2 = _field(1, b"2.0") + _field(2, _field(1, b"Kubernetes") + _field(2, VERSION["gitVersion"].encode()))


def chart_crd_resources() -> dict[str, dict]:
    """KMock resource declarations ("group/version/plural" -> ResourceInfo kwargs) of the chart's crds/."""
    out = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            spec, names = crd["spec"], crd["spec"]["names"]
            for v in spec["versions"]:
                out[f"{spec['group']}/{v['name']}/{names['plural']}"] = dict(
                    kind=names["kind"], namespaced=spec["scope"] == "Namespaced",
                    verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                    subresources=set(v.get("subresources") or {}))
    return out


class FreshCluster(kmock.KubernetesEmulator):
    """KMock with the fixes above."""

    async def _handle(self, request):  # noqa: D102 (KMock's hook)
        if request.url.path == "/openapi/v2":
            return aiohttp.web.Response(body=OPENAPI_V2, content_type="application/octet-stream")
        if request.url.path == "/version":
            return aiohttp.web.json_response(VERSION)
        response = await super()._handle(request)
        if request.url.path == "/api/v1":
            response.body = response.body.replace(b'"groupVersion": "/v1"', b'"groupVersion": "v1"')
        return response


async def serve(port_file: Path, with_crds: bool) -> None:
    """Serve until killed; write the port once listening."""
    async with FreshCluster() as emu, Server(emu) as server:
        emu.resources.load_bundled()
        if with_crds:
            for key, info in chart_crd_resources().items():
                emu.resources[key] = kmock.ResourceInfo(**info)
        port_file.write_text(str(server.port))
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), "--with-crds" in sys.argv[2:]))
