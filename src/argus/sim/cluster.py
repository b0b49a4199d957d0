"""Replicas per level on a fixed set of GPUs, with start-up delays and graceful drains.

A replica is two times: when it finished loading (`ready`) and when it is next free (`free`,
equal to `ready` while loading). Removing a replica cancels a loading one first, then takes idle
ones, then busy ones (which finish their batch: the GPU frees when it ends). An added replica
takes the GPU that frees first and serves `load_time` seconds after that. With `models` (in-place
switches), a replica removed from one level is first given to an added level of the same model: it keeps
its times (it finishes its batch, then serves the new level) and loads nothing.
"""

from __future__ import annotations

import numpy as np


class Cluster:
    """GPUs, the replicas on them per level, and the free GPU pool."""

    def __init__(self, gpus: int, load_times: list[float], initial: list[int],
                 models: list[str] | None = None) -> None:
        if sum(initial) > gpus:
            raise ValueError(f"initial allocation of {sum(initial)} replicas exceeds {gpus} GPUs")
        self.gpus = gpus
        self.load = list(load_times)
        self.free = [np.zeros(n) for n in initial]  # warm start: the initial allocation is loaded at t=0
        self.ready = [np.zeros(n) for n in initial]
        self.pool = np.zeros(gpus - sum(initial))  # times idle GPUs become free
        self.starts = 0  # replica start-ups so far (each costs a model load)
        self.models = models  # each level's model when replicas switch in place between its levels
        self.switches = 0  # replicas switched in place so far

    def replicas(self) -> list[int]:
        """Replicas per level, loading ones included (what the Deployments ask for)."""
        return [len(f) for f in self.free]

    def ready_counts(self, t: float) -> list[int]:
        """Loaded replicas per level at time t (the router's endpoints per level)."""
        return [int(np.count_nonzero(r <= t)) for r in self.ready]

    def available(self, t: float) -> list[bool]:
        """Levels with at least one loaded replica at time t (what the router's endpoints show)."""
        return [bool(np.any(r <= t)) for r in self.ready]

    def apply(self, target: list[int], now: float, busy: list[float] | None = None) -> None:
        """Move to `target` replicas per level at time `now` (removals first, then switches, then start-ups).
        `busy[j]`: seconds level j's removed ready replicas keep serving (their own queue's drain) before
        their GPUs are free to load another level, or (in place) to serve the level they switch to."""
        released = [self.pool]
        spare: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # removed replicas a same-model level may take
        for j, want in enumerate(target):
            excess = len(self.free[j]) - want
            if excess <= 0:
                continue
            loading = self.ready[j] > now
            order = np.lexsort((self.free[j], ~loading))  # loading first, then the earliest free
            drop, keep = order[:excess], order[excess:]
            free, gone_loading = self.free[j][drop], loading[drop]
            if busy is not None and busy[j] > 0:  # a ready one drains its own queue first
                free = np.where(gone_loading, free, np.maximum(free, now + busy[j]))
            if self.models is not None:  # switched in place: it serves its new level once its queue is drained
                spare.setdefault(self.models[j], []).append((free, self.ready[j][drop]))
            else:  # its GPU is free once it is drained; a loading one's at once
                released.append(np.where(gone_loading, now, np.maximum(free, now)))
            self.free[j], self.ready[j] = self.free[j][keep], self.ready[j][keep]
        for model, parts in spare.items():
            free, ready = np.concatenate([f for f, _ in parts]), np.concatenate([r for _, r in parts])
            order = np.argsort(np.maximum(free, ready))  # the ones that serve soonest switch first
            free, ready = free[order], ready[order]
            for j, want in enumerate(target):
                need = want - len(self.free[j])
                if need <= 0 or self.models[j] != model or not len(free):  # type: ignore[index]
                    continue
                take = min(need, len(free))
                self.free[j] = np.concatenate([self.free[j], free[:take]])
                self.ready[j] = np.concatenate([self.ready[j], ready[:take]])
                free, ready = free[take:], ready[take:]
                self.switches += take
            released.append(np.where(ready > now, now, np.maximum(free, now)))
        self.pool = np.sort(np.concatenate(released))
        for j, want in enumerate(target):
            need = min(want - len(self.free[j]), len(self.pool))
            if need <= 0:
                continue
            gpu, self.pool = self.pool[:need], self.pool[need:]
            ready = np.maximum(gpu, now) + self.load[j]
            self.free[j] = np.concatenate([self.free[j], ready])
            self.ready[j] = np.concatenate([self.ready[j], ready])
            self.starts += need
