"""A Kubernetes API for operator tests and the benchmark: KMock's KubernetesEmulator in its own process.

Run: `python -m tests.support.kmock_server PORT_FILE` (from the repository root); it listens on a free loopback port, writes
the port to PORT_FILE and serves until killed. On top of KMock 0.8 it adds what the API server
does and the operator relies on: metadata.uid, creationTimestamp, resourceVersion, and
metadata.generation bumped on spec changes, names from generateName; it also works around KMock's parse of the
cluster-scoped /api/v1/namespaces path (PLATFORM.md) and declares the resources in discovery.
It also plays kube-controller-manager's garbage collector: every GC_INTERVAL_S, an object whose
ownerReferences all name objects that no longer exist is deleted (background propagation), so a
deleted T2IService takes its children with it, with no operator involved.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import sys
import uuid
from pathlib import Path

import kmock
import yaml
from kmock._internal import parsing
from kmock._internal.apps import Server

_parse_path = parsing.parse_path
GC_INTERVAL_S = 0.5


def _fixed_parse_path(path: str) -> parsing.ParsedPath:
    """KMock 0.8 reads `/api/v1/namespaces[/<name>]` as a namespace prefix; return plural namespaces."""
    parts = path.strip("/").split("/")
    if len(parts) in (3, 4) and parts[0] == "api" and parts[2] == "namespaces":
        return parsing.ParsedPath("", parts[1], "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


parsing.parse_path = _fixed_parse_path

RESOURCES = {
    "argus.dev/v1alpha1/t2iservices": dict(kind="T2IService", namespaced=True, subresources={"status"},
                                           shortnames={"t2i"}),
    "apps/v1/deployments": dict(kind="Deployment", namespaced=True, subresources={"status", "scale"}),
    "v1/services": dict(kind="Service", namespaced=True),
    "v1/configmaps": dict(kind="ConfigMap", namespaced=True),
    "v1/persistentvolumeclaims": dict(kind="PersistentVolumeClaim", namespaced=True),
    "v1/events": dict(kind="Event", namespaced=True),
    "v1/namespaces": dict(kind="Namespace", namespaced=False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": dict(kind="CustomResourceDefinition", namespaced=False),
    "kopf.dev/v1/kopfpeerings": dict(kind="KopfPeering", namespaced=True),
    "kopf.dev/v1/clusterkopfpeerings": dict(kind="ClusterKopfPeering", namespaced=False),
}
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


_scan = kmock.KubernetesEmulator._KubernetesEmulator__get_objs


class Emulator(kmock.KubernetesEmulator):
    """KubernetesEmulator plus the metadata bookkeeping of a real API server."""

    _rv = itertools.count(1)
    tally: dict[str, int] | None = None

    async def _handle(self, request):  # noqa: D102 (KMock's hook)
        if self.tally is not None:  # request census for the benchmark (ARGUS_KMOCK_PROFILE)
            key = f"{request.method} {request.resource.plural if request.resource else request.url.path}" \
                  f"{'/' + request.subresource if request.subresource else ''}{' watch' if 'watch=' in str(request.url) else ''}"
            self.tally[key] = self.tally.get(key, 0) + 1
        data = request.data if isinstance(request.data, dict) else None
        if request.resource is not None and data is not None:
            meta = data.setdefault("metadata", {}) if request.action in (kmock.action.CREATE,
                                                                          kmock.action.UPDATE) else None
            if meta is not None:
                meta["resourceVersion"] = str(next(self._rv))
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp",
                                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                meta["generation"] = 1
            elif request.action == kmock.action.UPDATE and "spec" in data and not request.subresource:
                key = (request.resource, request.namespace, request.name)
                old = self.objects[key].raw if key in self.objects else {}
                if old.get("spec") != {**(old.get("spec") or {}), **data["spec"]}:
                    meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
        try:
            return await super()._handle(request)
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        """Drop a finished request from KMock's records.

        KMock keeps every request and routes each new one by scanning that record through every
        reaction's filter, so a request costs O(requests served so far): at 50 services the emulator
        spent ~130 ms per request after 400 requests and timed out (profiled with ARGUS_KMOCK_PROFILE).
        Nothing here reads the record back, so keep only requests still in flight (open watches).
        """
        for i in range(len(self._requests) - 1, -1, -1):
            if self._requests[i] is request:
                del self._requests[i]
                break
        for payload in self._payloads:
            payload._requests.clear()


    def _KubernetesEmulator__get_objs(self, request, strict: bool) -> list:  # noqa: N802 (KMock's private hook)
        """The objects a request names: by key when it names one object, else KMock's scan.

        KMock finds the object of every fetch, create, update and delete by scanning all objects it
        ever held (events and deleted ones included) through a Python filter: at 500 services
        (~8,000 objects) that was ~250-290 ms per request, and the benchmark's 500 creates alone
        took 147 s. A request with a name (and a namespace, or strict: cluster-scoped) is one key.
        """
        if request.resource is not None and request.name is not None and (strict or request.namespace is not None):
            key = (request.resource, request.namespace, request.name)
            if key in self._objects:
                return [self._objects[key]]
        return _scan(self, request, strict)

    async def collect_garbage(self) -> int:
        """Delete every object whose owners are all gone; returns how many (one pass)."""
        async with self._lock:
            live = {(o.raw.get("metadata") or {}).get("uid") for o in self._objects.values() if not o.deleted}
            orphans = []
            for key, obj in self._objects.items():
                if obj.deleted:
                    continue
                owners = (obj.raw.get("metadata") or {}).get("ownerReferences") or []
                if owners and not any(o.get("uid") in live for o in owners):
                    orphans.append((key, obj))
            for key, obj in orphans:
                raw = obj.raw
                obj.delete()
                await self._buses[key[0]].put({"type": "DELETED", "object": raw})
        return len(orphans)


async def _gc_forever(emu: Emulator) -> None:
    while True:
        await asyncio.sleep(GC_INTERVAL_S)
        await emu.collect_garbage()


async def serve(port_file: Path) -> None:
    """Start the emulator, declare resources, create the default namespace and the CRD, then wait."""
    async with Emulator() as emu, Server(emu) as server:
        for key, info in RESOURCES.items():
            emu.resources[key] = kmock.ResourceInfo(verbs=VERBS, **info)
        for ns in ("default", "argus"):
            emu.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": ns}}
            # kopf peering (`kopf run --peering=argus`) needs its KopfPeering object in each namespace.
            emu.objects["kopf.dev/v1/kopfpeerings", ns, "argus"] = {
                "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "argus", "namespace": ns}}
        crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds/t2iservice.yaml").read_text())
        emu.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]] = crd
        port_file.write_text(str(server.port))
        gc_task = asyncio.create_task(_gc_forever(emu))
        try:
            await asyncio.Event().wait()
        finally:
            gc_task.cancel()


def _profiled(port_file: Path, out: Path) -> None:
    """Serve under cProfile with a request census; write both to `out` on SIGTERM (benchmark only)."""
    import cProfile
    import json
    import pstats
    import signal

    Emulator.tally = {}
    prof = cProfile.Profile()

    def dump(*_):
        prof.disable()
        with open(out, "w") as f:
            json.dump(Emulator.tally, f, indent=1, sort_keys=True)
            f.write("\n")
            pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(45)
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    prof.enable()
    asyncio.run(serve(port_file))


if __name__ == "__main__":
    if os.environ.get("ARGUS_KMOCK_PROFILE"):
        _profiled(Path(sys.argv[1]), Path(os.environ["ARGUS_KMOCK_PROFILE"]))
    else:
        asyncio.run(serve(Path(sys.argv[1])))
