"""The Actuator protocol: how a Plan reaches the running system (Kubernetes objects or local processes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from argus.control.loop import Plan
from argus.spec import T2IServiceSpec


@dataclass(frozen=True)
class Readiness:
    """Workers wanted versus ready, per level, as the actuator sees them now."""

    wanted: dict[str, int] = field(default_factory=dict)
    ready: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # levels whose workload object does not exist

    @property
    def all_ready(self) -> bool:
        """Every level has as many ready workers as wanted, and nothing is missing."""
        return not self.missing and all(self.ready.get(k, 0) >= n for k, n in self.wanted.items())

    @property
    def loading(self) -> int:
        """Workers wanted and not ready yet (started, loading: the control loop's `loading`)."""
        return sum(max(0, n - self.ready.get(k, 0)) for k, n in self.wanted.items())


class Actuator(Protocol):
    """Applies plans for one service; implemented by the Kubernetes adapter and the local runtime."""

    def apply(self, service: str, spec: T2IServiceSpec, plan: Plan, *, full: bool) -> None:
        """Make the system match the plan; `full` re-ensures every object, otherwise only what changed."""

    def readiness(self, service: str, spec: T2IServiceSpec) -> Readiness:
        """How many workers per level are ready now."""

    def remove(self, service: str) -> None:
        """Remove everything the service runs."""
