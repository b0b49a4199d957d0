"""The T2IService spec as a typed model: one parser for the operator, `argus up -f` and tests.

The CRD's OpenAPI schema (crds/t2iservice.yaml) rejects most bad values at admission;
this model re-checks everything (a CR may predate a schema change, a local manifest
never meets an API server) and adds the cross-field rules a schema cannot express.
Errors are SpecError with the offending field's path in camelCase, as users wrote it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from argus.levels import DEFAULT_LEVELS, FULL, LevelError, level_named, parse_levels
from argus.policy.demand import DEFAULT_HEADROOM, RELEASE_HALF_LIFE_S

API_GROUP = "argus.dev"
API_VERSION = "v1alpha1"
KIND = "T2IService"
PLURAL = "t2iservices"


class SpecError(ValueError):
    """The T2IService spec is invalid; ``field`` is the camelCase path of the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(f"spec.{field}: {message}")
        self.field = field
        self.message = message


KEEP_WARM_S = 1800.0  # the default keepWarm: the burst sweep's bursts recur every 20 minutes (bench/RESULTS.md)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


class ModelSpec(_Model):
    """Which diffusion model the workers serve."""

    name: str = Field("tiny-sd", description="Model identity; latents are only reused within one identity.")
    image: str = Field("ghcr.io/argus-t2i/worker:0.1.0", description="Worker container image.")
    weights_path: str | None = Field(None, description="Local path of diffusers weights; none = tiny random model.")
    weights_pvc: str | None = Field(None, description="PersistentVolumeClaim holding the weights, mounted read-only at weightsPath.")
    weights_host_path: str | None = Field(None, description="Node directory holding the weights, mounted read-only at weightsPath.")
    steps: int = Field(50, ge=2, le=1000, description="N: denoising steps of the full-quality run.")
    height: int = Field(64, ge=8, le=4096, description="Default image height (pixels).")
    width: int = Field(64, ge=8, le=4096, description="Default image width (pixels).")
    guidance_scale: float = Field(7.5, ge=0, le=50, description="Classifier-free guidance scale.")

    @model_validator(mode="after")
    def _weights_source(self) -> "ModelSpec":
        if self.weights_pvc and self.weights_host_path:
            raise ValueError("weightsPvc and weightsHostPath are exclusive: give one weights volume")
        if (self.weights_pvc or self.weights_host_path) and not self.weights_path:
            raise ValueError("weightsPath is required with a weights volume (it is the mount point)")
        return self


class LatentCacheMode(str, Enum):
    """Where the workers keep latents (README: "Storage for the latent cache"); the LatentCache condition's reason."""

    SHARED_VOLUME = "SharedVolume"  # one ReadWriteMany PVC mounted by every worker: needs an RWX storage class
    DISABLED = "Disabled"  # no latent store at all: runs on any cluster, only cache-k0/steps-/model- levels


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class CacheSpec(_Model):
    """Approximate-cache behaviour."""

    enabled: bool = Field(True, description="Serve cache levels (resume from similar prompts' latents); false "
                                            "runs without a latent store (no volume: any cluster) and serves no "
                                            f"cache-k<K> level but {FULL}.")
    cross_tenant: bool = Field(False, description="Allow one tenant's prompts to reuse another's latents.")
    max_bytes: int = Field(2 * 1024**3, ge=1024**2, description="Byte budget of the shared latent store.")
    storage_class_name: str | None = Field(
        None, min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN,
        description="StorageClass of the shared latent store's ReadWriteMany PVC; unset = the cluster's default "
                    "class (often ReadWriteOnce only: the PVC then stays Pending).")

    @property
    def mode(self) -> LatentCacheMode:
        """The latent-cache mode this spec asks for."""
        return LatentCacheMode.SHARED_VOLUME if self.enabled else LatentCacheMode.DISABLED


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


class WorkerResources(_Model):
    """CPU and memory of each worker pod (the GPU is always one nvidia.com/gpu)."""

    cpu: str = Field("2", pattern=_QUANTITY, description="CPU request of a worker (no limit: throttling adds latency).")
    memory: str = Field("16Gi", pattern=_QUANTITY, description="Memory request and limit of a worker.")


class T2IServiceSpec(_Model):
    """What a service owner asks for; see crds/t2iservice.yaml for the admission schema."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    levels: list[str] = Field(default_factory=lambda: list(DEFAULT_LEVELS))
    throughput_target: float = Field(..., gt=0, description="Requests per second the service must sustain.")
    quality_floor: float = Field(90.0, ge=0, le=100, description="Minimum relative quality, percent.")
    gpus: int = Field(..., ge=1, le=100000, description="GPU budget (= worker replicas in total).")
    latency_slo: float = Field(30.0, gt=0, alias="latencySLO", description="End-to-end latency SLO, seconds.")
    control_period: float = Field(15.0, ge=1, le=3600, description="Seconds between control-loop runs.")
    scale_down_half_life: float = Field(
        RELEASE_HALF_LIFE_S, ge=1, le=86400,
        description="Half-life (s) with which the demand estimate falls after the load drops, so capacity "
                    "moves back to full quality gradually (rises are followed at once). Like the HPA's "
                    "scale-down stabilization window: a reload idles a GPU, so giving capacity back "
                    "sooner buys churn.")
    headroom: float = Field(
        DEFAULT_HEADROOM, ge=1.0, le=3.0,
        description="The quality/violation trade: capacity is planned for this multiple of the smoothed "
                    "arrival rate. Less headroom leaves the optimizer more capacity for slower, better "
                    "levels at peak, at the cost of more SLO violations in bursts (bench/RESULTS.md, Pareto "
                    "table); 1.2 is DiffServe's.")
    quality_weight: float = Field(
        1.0, ge=1.0, le=1000.0,
        description="The second quality/violation trade, at peak: how many times the optimizer weighs "
                    "quality against serving the planned demand (headroom included). 1 serves the planned "
                    "demand first; larger values give part of the headroom to better levels, at the cost of "
                    "more SLO violations in bursts (bench/RESULTS.md, Pareto table).")
    late_rungs: bool = Field(
        True,
        description="Late requests run faster: a worker runs a group it would finish later than 0.85 x the "
                    "latency SLO after arrival at the first steps-* level of its weights that makes it "
                    "(argus.policy.lateness). false: every request runs at the level it was assigned, late "
                    "or not.")
    burst_horizon: float = Field(
        120.0, ge=1, le=86400,
        description="Seconds over which a reallocation must pay for its reloads: it is made only if, over "
                    "this horizon (stretched to how long demand has exceeded capacity so far, up to 10x), it "
                    "is expected to cause fewer SLO violations than keeping the replicas in force, or as few "
                    "and more quality. Longer: the loop moves sooner in a burst; shorter: it rides out short "
                    "bursts at full quality (argus.policy.moves).")
    keep_warm: float = Field(
        KEEP_WARM_S, ge=0, le=86400,
        description="Seconds a replica the plan leaves idle at an approximate level (after a burst) stays there, "
                    "warm for the next burst, before it goes back to full quality (meanwhile it takes its capacity "
                    "share of the arrivals). 0: as soon as the dwell allows. Longer: the next burst within it "
                    "starts on a replica that serves it at once (argus.control.loop).")
    min_full_quality_replicas: int = Field(1, ge=0, description=f"Replicas of {FULL} always kept.")
    prometheus_url: str = Field("http://argus-prometheus:9090", description="Where the operator reads metrics.")
    cache: CacheSpec = Field(default_factory=CacheSpec)
    worker_resources: WorkerResources = Field(default_factory=WorkerResources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_field(self) -> "T2IServiceSpec":
        try:
            parse_levels(self.levels, self.model.steps)
        except LevelError as e:
            raise ValueError(str(e)) from None
        cached = [lv for lv in self.levels if level_named(lv).needs_cache_hit]
        if not self.cache.enabled and cached:
            raise ValueError(f"levels: {', '.join(cached)} need the latent cache, which cache.enabled=false turns "
                             f"off; list only {FULL}, steps-<S> and model-<name> levels")
        if self.min_full_quality_replicas > self.gpus:
            raise ValueError(
                f"minFullQualityReplicas={self.min_full_quality_replicas} exceeds gpus={self.gpus}")
        return self

    def parsed_levels(self):
        """The level objects, in spec order."""
        return parse_levels(self.levels, self.model.steps)

    def with_default_storage_class(self, name: str) -> "T2IServiceSpec":
        """This spec with `name` as cache.storageClassName when it names none and caches (the operator's
        default: chart value latentCache.storageClassName); unchanged otherwise."""
        if not name or not self.cache.enabled or self.cache.storage_class_name:
            return self
        return self.model_copy(update={"cache": self.cache.model_copy(update={"storage_class_name": name})})

    @property
    def image_size(self) -> str:
        """The service's image size as the router's requests name it, 'WxH'."""
        return f"{self.model.width}x{self.model.height}"

    def data_plane(self) -> dict[str, Any]:
        """The per-service settings the router applies, as policy document fields
        (argus.policy.document.DATA_PLANE_FIELDS): every policy document of this service carries them."""
        return {"quality_floor": self.quality_floor, "latency_slo_s": self.latency_slo, "image_size": self.image_size}


def parse_spec(raw: dict[str, Any]) -> T2IServiceSpec:
    """Validate a raw spec dict; raise SpecError naming the first bad field."""
    if not isinstance(raw, dict):
        raise SpecError("", "spec must be an object")
    try:
        return T2IServiceSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or _cross_field_name(err["msg"])
        msg = err["msg"].removeprefix("Value error, ")
        raise SpecError(loc, msg) from None


def _cross_field_name(msg: str) -> str:
    for name in ("levels", "minFullQualityReplicas"):
        if name in msg:
            return name
    if "level" in msg:  # LevelError for one bad name ("unknown level 'x'") is about spec.levels too
        return "levels"
    return ""


def parse_manifest(doc: dict[str, Any]) -> tuple[str, T2IServiceSpec]:
    """Parse a whole T2IService manifest (as applied with kubectl); return (name, spec)."""
    if doc.get("kind") != KIND:
        raise SpecError("kind", f"expected kind {KIND}, got {doc.get('kind')!r}")
    name = (doc.get("metadata") or {}).get("name")
    if not name:
        raise SpecError("metadata.name", "is required")
    return name, parse_spec(doc.get("spec") or {})
