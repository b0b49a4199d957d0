"""Triton python-backend adapter for the Argus worker: parse config once, one response per request.

All logic lives in argus.worker.service; this file only converts tensors and errors.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from argus.worker.service import WorkerService, WorkRequest
from argus.worker.settings import WorkerSettings


def _scalar(request, name, default=None):
    t = pb_utils.get_input_tensor_by_name(request, name)
    if t is None:
        return default
    v = t.as_numpy().reshape(-1)[0]
    return v.decode("utf-8") if isinstance(v, bytes) else v


class TritonPythonModel:
    """One approximation level of the Argus diffusion worker."""

    def initialize(self, args):
        """Build the worker for the level named by the model (or ARGUS_LEVEL)."""
        self.service = WorkerService(WorkerSettings.from_env(level=args["model_name"]))

    def execute(self, requests):
        """Decode every request, generate the batch, answer each request on its own."""
        decoded, responses = [], [None] * len(requests)
        for i, req in enumerate(requests):
            try:
                decoded.append((i, WorkRequest(
                    prompt=_scalar(req, "PROMPT"), seed=int(_scalar(req, "SEED")),
                    height=int(_scalar(req, "HEIGHT")), width=int(_scalar(req, "WIDTH")),
                    cache_key=_scalar(req, "CACHE_KEY") or None, store_key=_scalar(req, "STORE_KEY") or None)))
            except (UnicodeDecodeError, TypeError, ValueError) as e:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {e}"))
        for (i, _), res in zip(decoded, self.service.handle([w for _, w in decoded])):
            if res.error:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(res.error))
            else:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("IMAGE", res.image[np.newaxis]),
                    pb_utils.Tensor("INFO", np.array([[res.info_json()]], dtype=np.object_))])
        return responses
