"""The operator tests' KMock API server (tests.support.kmock_server), with an audit log.

Run: `python -m tests.support.kmock_audit_server PORT_FILE AUDIT_FILE [PEERING [GRANTS_FILE]]` (from the repository root). Every request
is appended to AUDIT_FILE as one JSON line (method, action, group, plural, subresource, namespace, user
agent, status) before KMock serves it, so a test can compare what the operator really calls with the
RBAC the chart grants. It also holds the ClusterKopfPeering the chart creates for a cluster-wide operator.
With GRANTS_FILE (JSON: {"cluster": [[group, resource, verb], ...], "namespaces": {ns: [[...], ...]}})
it enforces that RBAC as an API server does: a request of a client other than the test's own
(python-requests) that no rule grants is answered 403 Forbidden.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp.web

from tests.support import kmock_server


VERBS = {"WATCH": "watch", "LIST": "list", "FETCH": "get", "CREATE": "create", "DELETE": "delete"}


def _verb(request) -> str:
    action = str(request.action.value) if request.action else ""
    return VERBS.get(action) or {"PATCH": "patch", "PUT": "update"}.get(str(request.method.value), action.lower())


def _forbidden(request, grants: dict) -> bool:
    """True when the grants give no rule for this request (RBAC: cluster rules, or rules of its namespace)."""
    res = request.resource
    if res is None or getattr(res, "plural", None) is None or request.headers.get("User-Agent", "").startswith("python-requests"):
        return False  # discovery (allowed to every authenticated user), and the test's own calls
    resource = res.plural + (f"/{request.subresource}" if request.subresource else "")
    triple = [getattr(res, "group", None) or "", resource, _verb(request)]
    return triple not in grants["cluster"] and triple not in grants["namespaces"].get(request.namespace or "", [])


def audited(base: type, audit_path: Path, peering: str, grants: dict | None = None) -> type:
    """An Emulator class that logs each request, enforces `grants` if given, and starts with a
    ClusterKopfPeering `peering`."""

    class AuditEmulator(base):
        async def __aenter__(self):
            entered = await super().__aenter__()
            self.objects["kopf.dev/v1/clusterkopfpeerings", None, peering] = {
                "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}}
            return entered

        async def _handle(self, request):  # noqa: D102 (KMock's hook)
            res = request.resource
            denied = grants is not None and _forbidden(request, grants)
            entry = {"method": str(request.method.value), "action": str(request.action.value) if request.action else None,
                     "group": getattr(res, "group", None), "plural": getattr(res, "plural", None),
                     "subresource": request.subresource, "namespace": request.namespace,
                     "path": str(request.url.path), "agent": request.headers.get("User-Agent", ""),
                     "status": 403 if denied else None, "t": time.time()}
            with audit_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            if denied:
                return aiohttp.web.json_response(
                    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                     "message": f"{res.plural} is forbidden: no RBAC rule grants {_verb(request)}"}, status=403)
            return await super()._handle(request)

    return AuditEmulator


if __name__ == "__main__":
    kmock_server.Emulator = audited(kmock_server.Emulator, Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "argus",
                                    json.loads(Path(sys.argv[4]).read_text()) if len(sys.argv) > 4 else None)
    asyncio.run(kmock_server.serve(Path(sys.argv[1])))
