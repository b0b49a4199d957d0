"""Load-aware dispatch to Triton replicas: least pending first, one retry on a replica failure."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from argus.adapters.triton_client import Generated, TritonWorkerClient, WorkerError, WorkerRejected, WorkerTimeout
from argus.contract import split_endpoint
from argus.router.errors import NoReplicas
from argus.router.sources import EndpointSource


@dataclass
class Dispatched:
    """A finished worker call: the result, where it ran, how many retries it took."""

    result: Generated
    level: str
    replica: str
    retries: int


class Dispatcher:
    """Picks a replica for a level and calls it, retrying once elsewhere when that can still help."""

    def __init__(self, endpoints: EndpointSource,
                 client_factory: Callable[[str], TritonWorkerClient] = TritonWorkerClient,
                 clock: Callable[[], float] = time.monotonic):
        """`client_factory(url)` builds a client per replica, reused for the router's lifetime."""
        self.endpoints = endpoints
        self._factory = client_factory
        self._clients: dict[str, TritonWorkerClient] = {}
        self.inflight: dict[str, int] = defaultdict(int)
        self.without_deadline: set[str] = set()  # replicas whose worker predates the DEADLINE input
        self._clock = clock

    def pick(self, service: str, level: str, exclude: set[str]) -> str | None:
        """The ready replica of `level` with the fewest requests in flight (ties: stable order)."""
        cands = [r for r in self.endpoints.replicas(service, level) if r not in exclude]
        return min(cands, key=lambda r: self.inflight[r]) if cands else None

    def ready_counts(self, service: str, levels: list[str]) -> dict[str, int]:
        """Ready replicas per level of `service` (its endpoints; a pod still loading has none)."""
        return {lv: len(self.endpoints.replicas(service, lv)) for lv in levels}

    def available_levels(self, service: str, levels: list[str],
                         max_in_flight: dict[str, float] | None = None) -> set[str]:
        """Levels of `service` with at least one replica and, where `max_in_flight` limits a level, fewer requests
        in flight per replica than that (argus.policy.document.PolicyDocument.max_in_flight); every level with a
        replica when none has room."""
        ready = {lv: self.endpoints.replicas(service, lv) for lv in levels}
        ready = {lv: reps for lv, reps in ready.items() if reps}
        limits = max_in_flight or {}
        room = {lv for lv, reps in ready.items()
                if lv not in limits or sum(self.inflight[r] for r in reps) < limits[lv] * len(reps)}
        return room or set(ready)

    async def call(self, service: str, levels: list[str], deadline: float, *, prompt: str, seed: int,
                   height: int, width: int, cache_key: str | None, store_key: str | None,
                   request_id: str, on_retry: Callable[[str], None] = lambda lv: None,
                   late_by: float | None = None) -> Dispatched:
        """Run on `levels[0]`; after a retryable failure try another replica, then the next level in `levels`.
        With `late_by` (Unix time) the worker may run it at a faster level rather than finish after it; the
        result's level is the one that served it."""
        tried: set[str] = set()
        last: Exception | None = None
        attempts = 0
        for level in levels:
            while attempts < 2:
                replica = self.pick(service, level, tried)
                if replica is None:
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise WorkerTimeout("deadline exceeded before the worker call")
                tried.add(replica)
                attempts += 1
                if attempts > 1:
                    on_retry(level)
                self.inflight[replica] += 1
                try:
                    res = await self._generate(replica, level, prompt, seed, height, width, cache_key, store_key,
                                               remaining, request_id, late_by)
                    return Dispatched(res, res.info.level if res.info.late_from else level, replica, attempts - 1)
                except WorkerError as e:
                    last = e
                    if not e.retryable:
                        raise
                finally:
                    self.inflight[replica] -= 1
            if attempts >= 2:
                break
        if last is not None:
            raise last
        raise NoReplicas(f"no ready replica for level {levels[0]!r} of service {service!r}")

    async def _generate(self, replica: str, level: str, prompt: str, seed: int, height: int, width: int,
                        cache_key: str | None, store_key: str | None, timeout_s: float, request_id: str,
                        late_by: float | None) -> Generated:
        """One call to `replica`. A worker of an older image refuses the DEADLINE input: it is called again at
        once without it, and never sent it again (a rolling upgrade serves on, without late rungs there)."""
        addr, model = split_endpoint(replica)
        call = dict(cache_key=cache_key, store_key=store_key, request_id=request_id, level=level)
        if late_by is not None and replica not in self.without_deadline:
            try:
                return await self._client(addr).generate(model or level, prompt, seed, height, width,
                                                         timeout_s=timeout_s, deadline=late_by, **call)
            except WorkerRejected as e:
                if "unexpected inference input 'DEADLINE'" not in str(e):
                    raise
                self.without_deadline.add(replica)  # refused at once: the call's time is nearly all left
        return await self._client(addr).generate(model or level, prompt, seed, height, width, timeout_s=timeout_s,
                                                 **call)

    def _client(self, addr: str) -> TritonWorkerClient:
        if addr not in self._clients:
            self._clients[addr] = self._factory(addr)
        return self._clients[addr]

    async def close(self) -> None:
        """Close every client channel."""
        for c in self._clients.values():
            await c.close()
        self._clients.clear()
