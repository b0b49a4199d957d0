"""The operator tests' KMock API server (tests/operator/kmock_server.py), with an audit log.

Run: `python tests/chart/kmock_audit_server.py PORT_FILE AUDIT_FILE`. Every request is appended to
AUDIT_FILE as one JSON line (method, action, group, plural, subresource, user agent) before KMock
serves it, so a test can compare what the operator really calls with the RBAC the chart grants.
It also holds the ClusterKopfPeering the chart creates for a cluster-wide operator.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "argus_kmock_server", Path(__file__).resolve().parents[1] / "operator" / "kmock_server.py")
kmock_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kmock_server)


def audited(base: type, audit_path: Path, peering: str) -> type:
    """An Emulator class that logs each request and starts with a ClusterKopfPeering `peering`."""

    class AuditEmulator(base):
        async def __aenter__(self):
            entered = await super().__aenter__()
            self.objects["kopf.dev/v1/clusterkopfpeerings", None, peering] = {
                "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}}
            return entered

        async def _handle(self, request):  # noqa: D102 (KMock's hook)
            res = request.resource
            entry = {"method": str(request.method.value), "action": str(request.action.value) if request.action else None,
                     "group": getattr(res, "group", None), "plural": getattr(res, "plural", None),
                     "subresource": request.subresource, "path": str(request.url.path),
                     "agent": request.headers.get("User-Agent", "")}
            with audit_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            return await super()._handle(request)

    return AuditEmulator


if __name__ == "__main__":
    kmock_server.Emulator = audited(kmock_server.Emulator, Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "argus")
    asyncio.run(kmock_server.serve(Path(sys.argv[1])))
