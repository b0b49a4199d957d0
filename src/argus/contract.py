"""What Argus's components agree on across process and cluster boundaries, written once.

Pure constants and types: the labels the operator puts on a service's objects and the router selects
by, the ports a Triton worker listens on, the policy ConfigMap's key, and the request API's prompt limit.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_LABEL = "argus.dev/service"  # every object a T2IService owns carries its name
LEVEL_LABEL = "argus.dev/level"  # a worker Deployment / Service: the level it serves
POLICY_LABEL = "argus.dev/policy"  # "true" on the policy ConfigMap the router reads
POLICY_KEY = "policy.json"  # the ConfigMap key holding the policy document

MAX_PROMPT_CHARS = 2000  # the request API's longest prompt (a longer line is almost surely not a prompt)


@dataclass(frozen=True)
class TritonPorts:
    """Ports one tritonserver process listens on (Triton's defaults; the worker pods' container ports)."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


TRITON_PORTS = TritonPorts()
