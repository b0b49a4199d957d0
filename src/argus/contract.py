"""What Argus's components agree on across process and cluster boundaries, written once.

Pure constants and types: the labels the operator puts on a service's objects and the router selects
by, the ports a Triton worker listens on, the policy ConfigMap's key, the request API's prompt limit,
the local endpoints file's entry format, and the report a worker returns with each image (its Triton INFO
output, read by the router).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

SERVICE_LABEL = "argus.dev/service"  # every object a T2IService owns carries its name
LEVEL_LABEL = "argus.dev/level"  # a worker Deployment / Service: the level it serves
POLICY_LABEL = "argus.dev/policy"  # "true" on the policy ConfigMap the router reads
POLICY_KEY = "policy.json"  # the ConfigMap key holding the policy document

# A worker told to stop (SIGTERM: a scale-down, a level switch) stops taking requests and finishes the
# ones it accepted, for at most this long (Triton's --exit-timeout-secs). A batch of the slowest level
# takes tens of seconds; Triton's 5 s would drop the rest of it (measured on the local system: 10 of 74
# requests of a 1.1x burst lost at one switch).
WORKER_DRAIN_S = 30
WORKER_STOP_GRACE_S = WORKER_DRAIN_S + 10  # from SIGTERM to SIGKILL: a pod's grace period, the local stop's wait
ENDPOINT_PROPAGATION_S = 5  # preStop pause: the router drops a terminating pod's endpoint before it stops

MAX_PROMPT_CHARS = 2000  # the request API's longest prompt (a longer line is almost surely not a prompt)


def replica_endpoint(addr: str, loaded: str, serves: str) -> str:
    """A worker's entry in the local endpoints file: `host:port`, or `host:port@<loaded>` when it serves a
    level other than the one it loaded (switched in place: called as its Triton model, the level per request)."""
    return addr if serves == loaded else f"{addr}@{loaded}"


def split_endpoint(entry: str) -> tuple[str, str | None]:
    """`replica_endpoint` read back: the address, and the Triton model to call (None: the level itself)."""
    addr, _, model = entry.partition("@")
    return addr, model or None


@dataclass(frozen=True)
class TritonPorts:
    """Ports one tritonserver process listens on (Triton's defaults; the worker pods' container ports)."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


TRITON_PORTS = TritonPorts()


class Pace(StrEnum):
    """Why a worker ran a request at a faster level than asked (WorkReport.late_why; argus.policy.lateness)."""

    DEADLINE = "deadline"  # its group would have finished after its aimed deadline
    SURGE = "surge"  # the worker's arrivals outran what the level's full batches serve


@dataclass(frozen=True)
class WorkReport:
    """What a worker actually did for one request: its Triton INFO output, JSON on the wire.

    `k_used` is the denoising step the run started at (0: from noise; K: resumed from a cached latent),
    `steps_run` how many steps it ran, `fallback_reason` why a cache level ran from noise or from a
    smaller K than its own (None: it did not), `model` the weights' identity, `late_from` the level asked for
    when the request ran at `level`, a faster rung, because it would have missed its deadline there or its
    worker's arrivals surged past that level's speed (`late_why`, a Pace; argus.policy.lateness).
    """

    level: str
    k_used: int = 0
    steps_run: int | None = None
    cache_hit: bool = False
    fallback_reason: str | None = None
    model: str | None = None
    late_from: str | None = None
    late_why: str | None = None

    def to_json(self) -> bytes:
        """The wire form (sorted keys)."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "WorkReport":
        """Parse the wire form; fields a newer worker adds are ignored, a missing `level` is a ValueError."""
        doc: Any = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("level"), str):
            raise ValueError(f"a worker report needs a level: {str(raw)[:200]}")
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})

    def outcome(self) -> dict[str, Any]:
        """The fields the request API returns beside the image."""
        return {"k_used": self.k_used, "steps_run": self.steps_run, "cache_hit": self.cache_hit,
                "fallback_reason": self.fallback_reason, "late_from": self.late_from, "late_why": self.late_why}
