"""Where the router learns its policy and its worker endpoints: files locally, the API in Kubernetes.

Both are behind small interfaces so the router logic never knows which one it has.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

from argus.policy.document import PolicyDocument, PolicyError, parse_policy

log = logging.getLogger("argus.router")


class EndpointSource(Protocol):
    """Ready replicas (gRPC `host:port`) per service and level."""

    def replicas(self, service: str, level: str) -> list[str]:
        """Replica addresses serving `level` of `service`."""

    def services(self) -> list[str]:
        """Services known to this source."""

    def refresh(self) -> None:
        """Pick up changes (cheap when nothing changed)."""


class FileEndpoints:
    """Endpoints from a JSON file `{service: {level: ["host:port", ...]}}`, written atomically by the local runtime;
    `host:port@model` is a worker serving `level` on the weights it loaded as `model` (switched in place)."""

    def __init__(self, path: Path):
        """Read `path` now and whenever its mtime changes."""
        self.path = Path(path)
        self._mtime = -1.0
        self._data: dict[str, dict[str, list[str]]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Reload the file if it changed; keep the last good content on errors."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("endpoints file %s unreadable, keeping the last one: %s", self.path, e)
            return
        self._data, self._mtime = data, mtime

    def replicas(self, service: str, level: str) -> list[str]:
        """Replica addresses of one level."""
        return list(self._data.get(service, {}).get(level, []))

    def services(self) -> list[str]:
        """Services in the file."""
        return sorted(self._data)


class PolicyStore:
    """The policy in force per service; a newer valid document replaces it, an invalid one is ignored."""

    def __init__(self, directory: Path | None, on_rejected=None, on_loaded=None):
        """Watch `directory` for `<service>.json` policy documents."""
        self.directory = Path(directory) if directory else None
        self._mtimes: dict[Path, float] = {}
        self.policies: dict[str, PolicyDocument] = {}
        self._on_rejected = on_rejected or (lambda path, err: None)
        self._on_loaded = on_loaded or (lambda doc: None)
        self.refresh()

    def refresh(self) -> None:
        """Load new or changed documents."""
        if not self.directory or not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.json")):
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if self._mtimes.get(path) == mtime:
                continue
            self._mtimes[path] = mtime
            try:
                self.offer(parse_policy(path.read_bytes()))
            except (OSError, PolicyError) as e:
                self.reject(path, e)

    def reject(self, where, err: Exception) -> None:
        """Log and count a policy that was not adopted (the last good one stays)."""
        log.error("rejected policy %s (keeping the last good one): %s", where, err)
        self._on_rejected(where, err)

    def offer(self, doc: PolicyDocument) -> bool:
        """Adopt `doc` unless an equal or newer version of the same epoch is already in force."""
        cur = self.policies.get(doc.service)
        if cur is not None and cur.epoch == doc.epoch and cur.version >= doc.version:
            return False
        # Copy on write: refreshes run in a thread while the event loop reads the dict.
        self.policies = {**self.policies, doc.service: doc}
        self._on_loaded(doc)
        return True

    def get(self, service: str) -> PolicyDocument | None:
        """The policy in force, or None before the first one."""
        return self.policies.get(service)
