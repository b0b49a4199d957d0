"""Triton python-backend adapter for the Argus worker: parse config once, one response per request.

All logic lives in argus.worker.service; this file only converts tensors and errors.
"""

import json
import logging
import math
import urllib.request

import numpy as np
import triton_python_backend_utils as pb_utils

from argus.telemetry import WORKER_CACHE, WORKER_STORE_ERRORS
from argus.worker.pacing import arrived_from_metrics
from argus.worker.service import WorkerService, WorkRequest
from argus.worker.settings import WorkerSettings


def _scalar(request, name, default=None):
    t = pb_utils.get_input_tensor_by_name(request, name)
    if t is None:
        return default
    v = t.as_numpy().reshape(-1)[0]
    return v.decode("utf-8") if isinstance(v, bytes) else v


def _deadline(request):
    v = _scalar(request, "DEADLINE")
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"DEADLINE must be a finite Unix time, got {v}")
    return v


class TritonArrivals:
    """The requests that have reached this model so far, from the server's own /metrics (argus.worker.pacing:
    answered + failed + queued); None when the endpoint does not answer (the surge rule then rests)."""

    def __init__(self, port, model):
        self.url, self.model, self.warned = f"http://127.0.0.1:{port}/metrics", model, False

    def __call__(self):
        try:
            with urllib.request.urlopen(self.url, timeout=0.5) as r:
                return arrived_from_metrics(r.read().decode("utf-8", "replace"), self.model)
        except OSError as e:
            if not self.warned:
                logging.getLogger("argus.worker").warning("no arrival counts from %s: %s", self.url, e)
                self.warned = True
            return None


class TritonMetrics:
    """argus.worker.service.WorkerMetrics as Triton custom metrics, served on Triton's /metrics."""

    def __init__(self, level):
        """Create the metric families once; one labelled counter per label set, made on first use."""
        self.level = level
        self._cache = pb_utils.MetricFamily(
            name=WORKER_CACHE, description="Cache-level requests by result (hit|miss|fallback) and reason",
            kind=pb_utils.MetricFamily.COUNTER)
        self._errors = pb_utils.MetricFamily(
            name=WORKER_STORE_ERRORS, description="Failed latent-store operations by op (open|read|write)",
            kind=pb_utils.MetricFamily.COUNTER)
        self._metrics = {}

    def _inc(self, family, labels):
        key = (id(family), tuple(sorted(labels.items())))
        if key not in self._metrics:
            self._metrics[key] = family.Metric(labels={"level": self.level, **labels})
        self._metrics[key].increment(1)

    def cache(self, result, reason):
        """Count one cache outcome."""
        self._inc(self._cache, {"result": result, "reason": reason})

    def store_error(self, op):
        """Count one failed store operation."""
        self._inc(self._errors, {"op": op})


class TritonPythonModel:
    """One approximation level of the Argus diffusion worker."""

    def initialize(self, args):
        """Build the worker for the level named by the model (or ARGUS_LEVEL)."""
        settings = WorkerSettings.from_env(level=args["model_name"])
        self.metrics = TritonMetrics(settings.level)
        config = json.loads(args["model_config"])
        self.service = WorkerService.create(settings, self.metrics,
                                            arrivals=TritonArrivals(settings.metrics_port, args["model_name"]),
                                            max_batch=int(config.get("max_batch_size", 0)) or None)

    def execute(self, requests):
        """Decode every request, generate the batch, answer each request on its own."""
        decoded, responses = [], [None] * len(requests)
        for i, req in enumerate(requests):
            try:
                decoded.append((i, WorkRequest(
                    prompt=_scalar(req, "PROMPT"), seed=int(_scalar(req, "SEED")),
                    height=int(_scalar(req, "HEIGHT")), width=int(_scalar(req, "WIDTH")),
                    cache_key=_scalar(req, "CACHE_KEY") or None, store_key=_scalar(req, "STORE_KEY") or None,
                    level=_scalar(req, "LEVEL") or None, deadline=_deadline(req))))
            except (UnicodeDecodeError, TypeError, ValueError) as e:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {e}"))
        for (i, _), res in zip(decoded, self.service.handle([w for _, w in decoded])):
            if res.error:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(res.error))
            else:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("IMAGE", res.image[np.newaxis]),
                    pb_utils.Tensor("INFO", np.array([[res.info.to_json()]], dtype=np.object_))])
        return responses
