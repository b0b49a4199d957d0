"""Router settings: the one place the router reads its environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from argus.contract import MAX_PROMPT_CHARS


class RouterSettingsError(ValueError):
    """A router setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class ServicePredictor:
    """One service's predictor artifact and what it must match (None: not checked), plus its latent store."""

    path: Path
    levels: tuple[str, ...] | None = None
    model: str | None = None  # the workers' model identity (tiny-sd-<hash> or the weights' name)
    steps: int | None = None
    latent_store: Path | None = None  # directory the router syncs the similarity index from
    cross_tenant: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON form read back by `parse_predictors`."""
        d: dict[str, Any] = {"path": str(self.path), "cross_tenant": self.cross_tenant}
        if self.levels is not None:
            d["levels"] = list(self.levels)
        for k in ("model", "steps", "latent_store"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v if k == "steps" else str(v)
        return d


def parse_predictors(text: str, var: str = "ARGUS_ROUTER_PREDICTORS") -> dict[str, ServicePredictor]:
    """Parse `{service: {path, levels?, model?, steps?, latent_store?, cross_tenant?}}` (JSON)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RouterSettingsError(f"{var}: not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(raw, dict):
        raise RouterSettingsError(f"{var}: expected a JSON object {{service: {{\"path\": ...}}}}")
    out = {}
    allowed = {"path", "levels", "model", "steps", "latent_store", "cross_tenant"}
    for svc, cfg in raw.items():
        where = f"{var}: service {svc!r}"
        if not isinstance(cfg, dict):
            raise RouterSettingsError(f"{where}: expected an object with 'path'")
        if set(cfg) - allowed:
            raise RouterSettingsError(f"{where}: unknown field(s) {sorted(set(cfg) - allowed)}")
        if not isinstance(cfg.get("path"), str) or not cfg["path"]:
            raise RouterSettingsError(f"{where}: 'path' (predictor artifact file) is required")
        levels = cfg.get("levels")
        if levels is not None and (not isinstance(levels, list) or not all(isinstance(x, str) for x in levels)):
            raise RouterSettingsError(f"{where}: 'levels' must be a list of level names")
        steps = cfg.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise RouterSettingsError(f"{where}: 'steps' must be a positive integer, got {steps!r}")
        for k in ("model", "latent_store"):
            if cfg.get(k) is not None and not isinstance(cfg[k], str):
                raise RouterSettingsError(f"{where}: {k!r} must be a string")
        if not isinstance(cfg.get("cross_tenant", False), bool):
            raise RouterSettingsError(f"{where}: 'cross_tenant' must be true or false")
        out[svc] = ServicePredictor(Path(cfg["path"]), tuple(levels) if levels is not None else None,
                                    cfg.get("model"), steps,
                                    Path(cfg["latent_store"]) if cfg.get("latent_store") else None,
                                    cfg.get("cross_tenant", False))
    return out


SOURCES = ("files", "kubernetes")


def _source(v: str) -> str:
    if v not in SOURCES:
        raise ValueError(f"expected one of {', '.join(SOURCES)}")
    return v


def _positive(v: str) -> float:
    x = float(v)
    if not x > 0:
        raise ValueError("must be a positive number of seconds")
    return x


@dataclass(frozen=True)
class RouterSettings:
    """Everything the router process needs."""

    host: str = "127.0.0.1"
    port: int = 8080
    policy_dir: Path | None = None  # <service>.json policy documents (a mounted ConfigMap in Kubernetes)
    endpoints_file: Path | None = None  # local runtime: {service: {level: [host:port]}}
    default_service: str | None = None  # served when a request names no `model`
    # Sizes ('WxH') accepted for every service besides its own image size (from its policy document), and
    # the size served to a service whose policy document has not arrived yet.
    sizes: tuple[str, ...] = ("64x64",)
    default_size: str = "64x64"
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_n: int = 4
    timeout_s: float = 120.0  # deadline for one image, worker call included
    max_pending: int = 256  # admission limit: requests in flight in this router
    api_key_file: Path | None = None  # when set, requests must carry `Authorization: Bearer <key>`
    reload_interval_s: float = 0.5
    predictors: dict[str, ServicePredictor] = field(default_factory=dict)  # services planned by a predictor
    encoder: str = "minilm"  # prompt encoder the predictors were trained with (argus.prompt.embedder)
    encoder_weights: Path | None = None  # the encoder's weights (clip: the served model's directory)
    index_sync_s: float = 5.0  # how often the similarity index follows the latent store
    source: str = "files"  # where endpoints and policies come from: files (local runtime) or kubernetes
    namespace: str | None = None  # kubernetes source: the namespace served (default: the pod's own)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RouterSettings":
        """Read ARGUS_ROUTER_* variables."""
        env = os.environ if env is None else env
        d = cls()

        def get(name, conv, default):
            v = env.get(f"ARGUS_ROUTER_{name}")
            if v in (None, ""):
                return default
            try:
                return conv(v)
            except RouterSettingsError:
                raise
            except ValueError as e:
                raise RouterSettingsError(f"ARGUS_ROUTER_{name}={v!r}: {e}") from None

        sizes = get("SIZES", lambda v: tuple(s.strip() for s in v.split(",") if s.strip()), d.sizes)
        return cls(
            host=get("HOST", str, d.host), port=get("PORT", int, d.port),
            policy_dir=get("POLICY_DIR", Path, None), endpoints_file=get("ENDPOINTS_FILE", Path, None),
            default_service=get("DEFAULT_SERVICE", str, None), sizes=sizes,
            default_size=get("DEFAULT_SIZE", str, sizes[0]), max_prompt_chars=get("MAX_PROMPT_CHARS", int, d.max_prompt_chars),
            max_n=get("MAX_N", int, d.max_n), timeout_s=get("TIMEOUT_S", float, d.timeout_s),
            max_pending=get("MAX_PENDING", int, d.max_pending),
            api_key_file=get("API_KEY_FILE", Path, None),
            predictors=get("PREDICTORS", parse_predictors, {}), encoder=get("ENCODER", str, d.encoder),
            encoder_weights=get("ENCODER_WEIGHTS", Path, None), index_sync_s=get("INDEX_SYNC_S", float, d.index_sync_s),
            source=get("SOURCE", _source, d.source), namespace=get("NAMESPACE", str, None),
            reload_interval_s=get("RELOAD_INTERVAL_S", _positive, d.reload_interval_s),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {"ARGUS_ROUTER_HOST": self.host, "ARGUS_ROUTER_PORT": str(self.port),
               "ARGUS_ROUTER_SIZES": ",".join(self.sizes), "ARGUS_ROUTER_DEFAULT_SIZE": self.default_size,
               "ARGUS_ROUTER_MAX_PROMPT_CHARS": str(self.max_prompt_chars), "ARGUS_ROUTER_MAX_N": str(self.max_n),
               "ARGUS_ROUTER_TIMEOUT_S": str(self.timeout_s), "ARGUS_ROUTER_MAX_PENDING": str(self.max_pending),
               "ARGUS_ROUTER_ENCODER": self.encoder,
               "ARGUS_ROUTER_INDEX_SYNC_S": str(self.index_sync_s), "ARGUS_ROUTER_SOURCE": self.source,
               "ARGUS_ROUTER_RELOAD_INTERVAL_S": str(self.reload_interval_s)}
        if self.predictors:
            env["ARGUS_ROUTER_PREDICTORS"] = json.dumps({k: v.to_json() for k, v in self.predictors.items()})
        for key, val in (("POLICY_DIR", self.policy_dir), ("ENDPOINTS_FILE", self.endpoints_file),
                         ("DEFAULT_SERVICE", self.default_service), ("API_KEY_FILE", self.api_key_file),
                         ("ENCODER_WEIGHTS", self.encoder_weights), ("NAMESPACE", self.namespace)):
            if val:
                env[f"ARGUS_ROUTER_{key}"] = str(val)
        return env
