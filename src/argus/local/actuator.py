"""The process actuator: applies control-loop plans to the local system by switching, starting and stopping
workers.

The local counterpart of patching Deployment replicas: one worker process per replica,
the GPU budget is the number of process slots, the router's policy is a file.
"""

from __future__ import annotations

import os
import time

from argus.control.actuator import Readiness
from argus.control.loop import Plan
from argus.levels import level_named
from argus.local.runtime import LocalSystem
from argus.spec import T2IServiceSpec

DRAIN_S = 1.0  # after unpublishing a replica, let the router (reload every 0.5 s) stop sending to it


class ProcessActuator:
    """Makes the set of worker processes match a plan's allocation, within the slot budget."""

    def __init__(self, system: LocalSystem, drain_s: float = DRAIN_S, sleep=time.sleep):
        """`sleep` is injected so tests need not wait for drains."""
        self.system = system
        self.drain_s = drain_s
        self._sleep = sleep

    def apply(self, service: str, spec: T2IServiceSpec, plan: Plan, *, full: bool) -> None:
        """Switch surplus replicas in place to missing levels of the same weights (no reload: the worker
        serves any level of its model); stop the rest of the surplus (freeing slots: `LocalSystem.stop_workers`
        drains them), then start what is still missing; write the policy file."""
        self.write_policy(plan, force=full)
        wanted = plan.allocation
        current = self.system.counts()
        surplus: list[str] = []
        for level, have in current.items():
            extra = have - wanted.get(level, 0)
            if extra > 0:
                names = [n for n, r in self.system.replicas.items() if r.serves == level]
                names.sort(key=lambda n: (n in self.system.ready, n))  # not-yet-ready ones go first
                surplus += names[:extra]
        for level, want in wanted.items():
            missing = want - current.get(level, 0)
            for name in [n for n in reversed(surplus) if self._same_weights(n, level)][:max(missing, 0)]:
                self.system.switch_worker(name, level)  # ready ones first: they serve the new level at once
                surplus.remove(name)
        if surplus:
            self.system.stop_workers(surplus, self.drain_s, sleep=self._sleep)
        slots = spec.gpus - sum(self.system.counts().values())
        for level, want in wanted.items():
            missing = want - self.system.counts().get(level, 0)
            for _ in range(max(0, min(missing, slots))):
                self.system.start_worker(level, wait=False)
                slots -= 1

    def _same_weights(self, name: str, level: str) -> bool:
        """Whether replica `name` can serve `level` without loading other weights."""
        return level_named(level).runs_on(level_named(self.system.replicas[name].level))

    def write_policy(self, plan: Plan, force: bool = False) -> None:
        """Write the router's policy document atomically (when it changed, or when forced)."""
        if not (plan.policy_changed or force):
            return
        path = self.system.workdir / "policy" / f"{plan.policy.service}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(plan.policy.to_json())
        os.replace(tmp, path)

    def readiness(self, service: str, spec: T2IServiceSpec) -> Readiness:
        """Wanted (started) versus ready replicas per level."""
        return Readiness(wanted=self.system.counts(), ready=self.system.counts(ready_only=True))

    def remove(self, service: str) -> None:
        """Stop every process of the system."""
        self.system.stop()
