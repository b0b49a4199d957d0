"""The router's HTTP API (OpenAI-compatible image generation) as a FastAPI app factory."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from argus.contract import Pace
from argus.levels import FULL, level_named
from argus.policy.lateness import AIM
from argus.policy.document import PolicyDocument
from argus.policy.prompt_plan import FullQualityPlanner, Planner
from argus.policy.assign import Ledger, assigned_level, safer_levels
from argus.router.dispatch import Dispatcher
from argus.router.errors import BadRequest, Overloaded, RouterError, Unauthorized, UnknownService, to_http
from argus.router.metrics import RouterMetrics
from argus.router.png import png_b64
from argus.router.kube_sources import ConfigMapPolicies, kubernetes_sources
from argus.router.prompting import PromptPlanning, record_safely
from argus.router.schema import ImageRequest, Limits, parse_request, request_schema
from argus.router.settings import RouterSettings
from argus.router.sources import EndpointSource, FileEndpoints, PolicyStore
from argus.adapters.triton_client import WorkerError

log = logging.getLogger("argus.router")
IMAGES_PATH = "/v1/images/generations"


def limits_of(settings: RouterSettings) -> Limits:
    """What the request API accepts under these settings."""
    return Limits(settings.max_prompt_chars, settings.max_n, settings.sizes)


class Router:
    """The router's state and request flow, independent of the HTTP framework."""

    def __init__(self, settings: RouterSettings, endpoints: EndpointSource, metrics: RouterMetrics,
                 planner: Planner | None = None, dispatcher: Dispatcher | None = None,
                 rng: random.Random | None = None, planning: PromptPlanning | None = None,
                 policy_feed: ConfigMapPolicies | None = None):
        """Wire the parts; nothing here starts I/O. With `planning`, its predictive planner plans and learns."""
        self.settings = settings
        self.endpoints = endpoints
        self.metrics = metrics
        self.planning = planning
        self.planner = planner or (planning.planner if planning else FullQualityPlanner())
        self.dispatcher = dispatcher or Dispatcher(endpoints)
        self.rng = rng or random.Random()
        self.ledgers: dict[str, Ledger] = {}  # per-prompt placement's per-level credit, per service
        self.policies = PolicyStore(settings.policy_dir,
                                    on_rejected=lambda p, e: metrics.policy_rejected.inc(),
                                    on_loaded=lambda d: metrics.policy_version.labels(d.service).set(d.version))
        self.policy_feed = policy_feed  # Kubernetes: policy ConfigMaps offered to self.policies
        self.limits = limits_of(settings)
        self.pending = 0
        self._api_key = settings.api_key_file.read_text().strip() if settings.api_key_file else None

    def refresh_sources(self) -> None:
        """Pick up endpoint and policy changes (blocking I/O: call it off the event loop)."""
        self.endpoints.refresh()
        self.policies.refresh()
        if self.policy_feed is not None:
            self.policy_feed.refresh(self.policies)

    def check_auth(self, header: str | None) -> None:
        """Raise Unauthorized unless the bearer token matches the configured key."""
        if self._api_key is None:
            return
        token = (header or "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(token.encode(), self._api_key.encode()):
            raise Unauthorized("missing or invalid API key (send 'Authorization: Bearer <key>')")

    def resolve_service(self, name: str | None) -> str:
        """The T2IService a request addresses."""
        known = sorted(set(self.endpoints.services()) | set(self.policies.policies))
        if name is None:
            if self.settings.default_service:
                return self.settings.default_service
            if len(known) == 1:
                return known[0]
            raise BadRequest(f"'model' is required; services: {', '.join(known) or 'none yet'}", "model")
        if name not in known:
            raise UnknownService(f"unknown model (T2IService) {name!r}; services: {', '.join(known) or 'none'}")
        return name

    def image_size(self, req: ImageRequest, policy: PolicyDocument | None) -> tuple[int, int]:
        """(height, width) to render: the request's size if accepted, else the service's image size."""
        own = policy.image_size if policy else self.settings.default_size
        if req.width is None or req.height is None:
            width, height = (int(v) for v in own.split("x"))
            return height, width
        size = f"{req.width}x{req.height}"
        if size != own and size not in self.limits.sizes:
            accepted = [own, *(s for s in self.limits.sizes if s != own)]
            raise BadRequest(f"'size' {size!r} is not supported; supported: {', '.join(accepted)}", "size")
        return req.height, req.width

    async def generate(self, req: ImageRequest) -> dict:
        """Serve n images; each is planned, assigned a level and dispatched."""
        service = self.resolve_service(req.service)
        policy = self.policies.get(service)
        size = self.image_size(req, policy)
        # Demand is what arrives, shed or not: counting only admitted requests would hide overload from the loop.
        self.metrics.arrivals.labels(service).inc(req.n)
        if self.pending + req.n > self.settings.max_pending:
            self.metrics.shed.labels(service, "router_max_pending").inc(req.n)
            raise Overloaded(f"router has {self.pending} requests in flight (limit {self.settings.max_pending})")
        self.pending += req.n
        try:
            base = req.seed if req.seed is not None else self.rng.randrange(2**31)
            results = await asyncio.gather(*(self._one(service, req, size, base + i) for i in range(req.n)))
        finally:
            self.pending -= req.n
        return {"created": int(time.time()), "data": [{"b64_json": r.pop("b64_json")} for r in results],
                "argus": results}

    async def _one(self, service: str, req: ImageRequest, size: tuple[int, int], seed: int) -> dict:
        start = time.monotonic()
        policy = self.policies.get(service)
        # Every per-service setting comes from the service's policy document. Before the first one arrives
        # the service is served at full quality (floor 100) and no SLO is known, so none is counted.
        floor = max(policy.quality_floor if policy else 100.0, req.quality_floor or 0.0)
        plan = await self.planner.plan(service, req.prompt, req.user or "default", floor)
        self.metrics.optimal.labels(service, plan.optimal_level).inc()
        levels = policy.levels if policy else [plan.optimal_level]
        level = assigned_level(plan.optimal_level, plan.predicted_quality, policy, self.rng,
                               self.ledgers.setdefault(service, Ledger()),
                               self.dispatcher.available_levels(service, levels,
                                                                policy.max_in_flight if policy else None),
                               self.dispatcher.ready_counts(service, levels))
        order = [level] + safer_levels(level, policy)
        self.metrics.pending.labels(service, level).inc()
        try:
            done = await self.dispatcher.call(
                service, order, start + self.settings.timeout_s, prompt=req.prompt, seed=seed,
                height=size[0], width=size[1],
                cache_key=plan.cache_key if level_named(level).needs_cache_hit else None,
                store_key=plan.store_key, request_id=uuid.uuid4().hex,
                on_retry=lambda lv: self.metrics.retries.labels(service, lv).inc(),
                late_by=time.time() + AIM * policy.latency_slo_s - (time.monotonic() - start)
                if policy is not None and policy.late_rungs else None)
        except WorkerError as e:
            self.metrics.requests.labels(service, level, type(e).__name__).inc()
            raise
        finally:
            self.metrics.pending.labels(service, level).dec()
        elapsed = time.monotonic() - start
        self.metrics.requests.labels(service, done.level, "ok").inc()
        if done.result.info.late_from:
            info = done.result.info
            self.metrics.late.labels(service, info.late_from, done.level, info.late_why or Pace.DEADLINE.value).inc()
        self.metrics.latency.labels(service, done.level).observe(elapsed)
        if policy is not None and elapsed > policy.latency_slo_s:
            self.metrics.slo.labels(service, done.level).inc()
        quality = served_quality(plan.predicted_quality, done.level, policy)
        self.metrics.quality.labels(service).observe(quality)
        if plan.cache_key is not None:
            self.metrics.cache.labels(service, "hit" if done.result.info.cache_hit else "miss").inc()
        if self.planning and plan.store_key and done.level == FULL and not done.result.info.k_used:
            # A full run from noise with STORE_KEY stored its checkpoints: similar prompts may now resume.
            await record_safely(self.planning, service, req.user or "default", req.prompt, plan.store_key)
        return {"b64_json": png_b64(done.result.image), "level": done.level, "optimal_level": plan.optimal_level,
                "replica": done.replica, "retries": done.retries, "seed": seed,
                "predicted_quality": quality, "latency_s": round(elapsed, 4), **done.result.info.outcome()}


def _json(doc) -> bytes:
    """JSON bytes exactly as Starlette's JSONResponse renders them; text UTF-8 cannot hold (a lone
    surrogate echoed in an error) is written as ASCII escapes instead of failing the answer."""
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def answer_images(r: Router, authorization: str | None, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, extra headers) for one image request: errors are translated here, once."""
    try:
        r.check_auth(authorization)
        req = parse_request(body, r.limits)
        return 200, _json(await r.generate(req)), {}
    except (RouterError, WorkerError) as e:
        status, doc, headers = to_http(e)
    except Exception:  # translated once here: never leak internals, always log them
        log.exception("unhandled error")
        status, doc, headers = to_http(RuntimeError())
    return status, _json(doc), headers


class ImagesEndpoint:
    """POST /v1/images/generations as a plain ASGI handler in front of FastAPI (the hot path).

    It skips the framework's routing and request/response objects (measured as a large share of the
    router's CPU per request); every other path and method goes to the app, and the answers are the
    bytes the FastAPI route would give.
    """

    def __init__(self, app):
        """Wrap the ASGI `app`."""
        self.app = app

    async def __call__(self, scope, receive, send):
        """Serve the image path; pass anything else on."""
        if scope["type"] != "http" or scope["path"] != IMAGES_PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before sending its body: nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, body, extra = await answer_images(scope["app"].state.router, authorization, b"".join(chunks))
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def served_quality(predicted: dict[str, float], level: str, policy) -> float:
    """The prompt's predicted quality at the level that served it; without a per-prompt prediction for
    that level, the level's planned mean quality from the policy (full quality is 100%)."""
    if level in predicted:
        return predicted[level]
    if policy is not None and level in policy.level_quality:
        return policy.level_quality[level]
    return 100.0 if level == FULL else 0.0


def create_app(settings: RouterSettings, router: Router | None = None) -> FastAPI:
    """The FastAPI app; builds a Router from settings unless one is given (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        r = router or _build_router(settings)
        app.state.router = r
        if r.planning is not None:
            r.planning.start()
        task = asyncio.create_task(_reload_loop(r, settings.reload_interval_s))
        try:
            yield
        finally:
            task.cancel()
            if r.planning is not None:
                r.planning.close()
            await r.dispatcher.close()

    app = FastAPI(title="Argus router", version="0.1.0", lifespan=lifespan)
    app.add_middleware(ImagesEndpoint)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """Framework errors (404 path, 405 method) in the same JSON error shape as ours."""
        body = {"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                          "code": exc.status_code}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.post(IMAGES_PATH, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": request_schema(limits_of(settings))}}}})
    async def images(request: Request):
        """Generate images for a prompt (OpenAI-compatible)."""
        # Served by ImagesEndpoint in front of the framework; this route documents it (OpenAPI) and
        # answers the same way should a request ever reach it.
        status, body, headers = await answer_images(request.app.state.router, request.headers.get("authorization"),
                                                    await request.body())
        return Response(body, status_code=status, headers=dict(headers), media_type="application/json")

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request):
        """Readiness: at least one worker replica is known."""
        r: Router = request.app.state.router
        ready = any(r.endpoints.replicas(s, lv) for s in r.endpoints.services()
                    for lv in _levels_of(r, s))
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request):
        """Prometheus metrics."""
        return Response(generate_latest(request.app.state.router.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _levels_of(r: Router, service: str) -> list[str]:
    p = r.policies.get(service)
    return p.levels if p else [FULL]


async def _reload_loop(r: Router, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(r.refresh_sources)  # the Kubernetes source lists the API: not on the loop
        except Exception:  # a bad file must never stop reloading
            log.exception("reload failed")


def _build_router(settings: RouterSettings) -> Router:
    feed = None
    if settings.source == "kubernetes":
        endpoints, feed = kubernetes_sources(settings)
    elif settings.endpoints_file:
        endpoints = FileEndpoints(settings.endpoints_file)
    else:
        endpoints = _NoEndpoints()
    r = Router(settings, endpoints, RouterMetrics(), planning=PromptPlanning.from_settings(settings), policy_feed=feed)
    if feed is not None:
        feed.refresh(r.policies)
    return r


class _NoEndpoints:
    def replicas(self, service, level):
        return []

    def services(self):
        return []

    def refresh(self):
        pass
