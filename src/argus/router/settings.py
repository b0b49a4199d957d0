"""Router settings: the one place the router reads its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class RouterSettings:
    """Everything the router process needs."""

    host: str = "127.0.0.1"
    port: int = 8080
    policy_dir: Path | None = None  # <service>.json policy documents (a mounted ConfigMap in Kubernetes)
    endpoints_file: Path | None = None  # local runtime: {service: {level: [host:port]}}
    default_service: str | None = None  # served when a request names no `model`
    sizes: tuple[str, ...] = ("64x64",)
    default_size: str = "64x64"
    max_prompt_chars: int = 2000
    max_n: int = 4
    timeout_s: float = 120.0  # deadline for one image, worker call included
    max_pending: int = 256  # admission limit: requests in flight in this router
    latency_slo_s: float = 30.0
    quality_floor: float = 90.0  # used until a policy document states the service's floor
    api_key_file: Path | None = None  # when set, requests must carry `Authorization: Bearer <key>`
    reload_interval_s: float = 0.5
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RouterSettings":
        """Read ARGUS_ROUTER_* variables."""
        env = os.environ if env is None else env
        d = cls()

        def get(name, conv, default):
            v = env.get(f"ARGUS_ROUTER_{name}")
            return default if v in (None, "") else conv(v)

        sizes = get("SIZES", lambda v: tuple(s.strip() for s in v.split(",") if s.strip()), d.sizes)
        return cls(
            host=get("HOST", str, d.host), port=get("PORT", int, d.port),
            policy_dir=get("POLICY_DIR", Path, None), endpoints_file=get("ENDPOINTS_FILE", Path, None),
            default_service=get("DEFAULT_SERVICE", str, None), sizes=sizes,
            default_size=get("DEFAULT_SIZE", str, sizes[0]), max_prompt_chars=get("MAX_PROMPT_CHARS", int, d.max_prompt_chars),
            max_n=get("MAX_N", int, d.max_n), timeout_s=get("TIMEOUT_S", float, d.timeout_s),
            max_pending=get("MAX_PENDING", int, d.max_pending), latency_slo_s=get("LATENCY_SLO_S", float, d.latency_slo_s),
            quality_floor=get("QUALITY_FLOOR", float, d.quality_floor),
            api_key_file=get("API_KEY_FILE", Path, None),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {"ARGUS_ROUTER_HOST": self.host, "ARGUS_ROUTER_PORT": str(self.port),
               "ARGUS_ROUTER_SIZES": ",".join(self.sizes), "ARGUS_ROUTER_DEFAULT_SIZE": self.default_size,
               "ARGUS_ROUTER_MAX_PROMPT_CHARS": str(self.max_prompt_chars), "ARGUS_ROUTER_MAX_N": str(self.max_n),
               "ARGUS_ROUTER_TIMEOUT_S": str(self.timeout_s), "ARGUS_ROUTER_MAX_PENDING": str(self.max_pending),
               "ARGUS_ROUTER_LATENCY_SLO_S": str(self.latency_slo_s),
               "ARGUS_ROUTER_QUALITY_FLOOR": str(self.quality_floor)}
        for key, val in (("POLICY_DIR", self.policy_dir), ("ENDPOINTS_FILE", self.endpoints_file),
                         ("DEFAULT_SERVICE", self.default_service), ("API_KEY_FILE", self.api_key_file)):
            if val:
                env[f"ARGUS_ROUTER_{key}"] = str(val)
        return env
