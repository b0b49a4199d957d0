"""The operator's watch-fed view of the cluster: T2IServices and the objects they own, in memory.

kopf's watch streams feed it (handlers.py: one `on.event` handler per kind); the control loop
(fleet.py) reads it instead of asking the API server, so a control period costs no request to
read what exists. Children are indexed by the `argus.dev/service` label; a DELETED event removes
an object and nothing is kept about it afterwards. Thread-safe: kopf writes from its event loop,
the loop's workers read from their threads.
"""

from __future__ import annotations

import threading
from typing import Any

from argus.contract import SERVICE_LABEL


def _key(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _older(body: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether `body` is an older version than `than` (resourceVersions compared when both are numbers,
    as etcd revisions are; otherwise the newest arrival wins)."""
    a = str((body.get("metadata") or {}).get("resourceVersion", ""))
    b = str((than.get("metadata") or {}).get("resourceVersion", ""))
    return a.isdigit() and b.isdigit() and int(a) < int(b)


class ObjectCache:
    """Latest known body of every watched object, by kind; children also by (namespace, service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._owned: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}  # (kind, ns, service) -> name -> body

    def put(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Store an ADDED/MODIFIED body (or one the operator just wrote); returns the body it replaced
        (None when new). A body older than the cached one (lower numeric resourceVersion) is ignored."""
        ns, name = _key(body)
        service = ((body.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)
        with self._lock:
            old = self._objects.setdefault(kind, {}).get((ns, name))
            if old is not None and _older(body, old):
                return old
            self._objects[kind][(ns, name)] = body
            old_service = ((old or {}).get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL)
            if old_service and old_service != service:
                self._unindex(kind, ns, old_service, name)
            if service:
                self._owned.setdefault((kind, ns, service), {})[name] = body
        return old

    def drop(self, kind: str, body: dict[str, Any]) -> None:
        """Forget an object (a DELETED event)."""
        ns, name = _key(body)
        with self._lock:
            objs = self._objects.get(kind, {})
            old = objs.pop((ns, name), None)
            if not objs:
                self._objects.pop(kind, None)  # an emptied dict keeps its peak size: let it go
            for b in (old, body):
                service = ((b or {}).get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL)
                if service:
                    self._unindex(kind, ns, service, name)

    def _unindex(self, kind: str, ns: str, service: str, name: str) -> None:
        owned = self._owned.get((kind, ns, service))
        if owned is not None:
            owned.pop(name, None)
            if not owned:
                del self._owned[(kind, ns, service)]

    def forget_service(self, namespace: str, service: str) -> int:
        """Drop every cached child of a deleted service (its own DELETED events may come later, or, for an
        object written by a period still in flight, may have come before); returns how many."""
        with self._lock:
            n = 0
            for key in [k for k in self._owned if k[1] == namespace and k[2] == service]:
                for name in self._owned.pop(key):
                    objs = self._objects.get(key[0], {})
                    n += objs.pop((namespace, name), None) is not None
                    if not objs:
                        self._objects.pop(key[0], None)
            return n

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached body, or None when the watch has not seen it (or saw it deleted)."""
        with self._lock:
            return self._objects.get(kind, {}).get((namespace, name))

    def owned(self, kind: str, namespace: str, service: str) -> list[dict[str, Any]]:
        """Cached objects of `kind` labelled as the service's."""
        with self._lock:
            return list(self._owned.get((kind, namespace, service), {}).values())

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every cached object of `kind`."""
        with self._lock:
            return list(self._objects.get(kind, {}).values())

    def size(self) -> int:
        """Number of cached objects (all kinds)."""
        with self._lock:
            return sum(len(v) for v in self._objects.values())
