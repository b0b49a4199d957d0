"""The only module that speaks Triton gRPC: async inference against one worker replica.

gRPC failures are translated here, once, into the domain errors below; callers never
see tritonclient exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


class WorkerError(Exception):
    """A worker call failed; `retryable` says whether another replica may succeed."""

    retryable = True


class WorkerUnavailable(WorkerError):
    """The replica cannot be reached or is not ready."""


class WorkerOverloaded(WorkerError):
    """The replica's queue is full; it rejected the request at once."""


class WorkerTimeout(WorkerError):
    """The replica did not answer within the deadline."""

    retryable = False


class WorkerRejected(WorkerError):
    """The replica refused this request's input (a client error)."""

    retryable = False


@dataclass
class Generated:
    """One image and the worker's report of what it did."""

    image: np.ndarray
    info: dict


class TritonWorkerClient:
    """An async gRPC client for one replica (`host:port`); one channel, reused."""

    def __init__(self, url: str):
        """Create the channel lazily on the running event loop."""
        self.url = url
        self._client = None

    def _get(self):
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    async def generate(self, model: str, prompt: str, seed: int, height: int, width: int, *,
                       cache_key: str | None = None, store_key: str | None = None,
                       timeout_s: float = 60.0, request_id: str = "") -> Generated:
        """Run one image through `model` (a level) with a client-side deadline."""
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        def tensor(name, value, dtype):
            np_dtype = {"BYTES": np.object_, "INT64": np.int64, "INT32": np.int32}[dtype]
            arr = np.array([[value]], dtype=np_dtype)
            t = grpcclient.InferInput(name, [1, 1], dtype)
            t.set_data_from_numpy(arr)
            return t

        inputs = [tensor("PROMPT", prompt.encode("utf-8"), "BYTES"), tensor("SEED", seed, "INT64"),
                  tensor("HEIGHT", height, "INT32"), tensor("WIDTH", width, "INT32")]
        if cache_key:
            inputs.append(tensor("CACHE_KEY", cache_key.encode(), "BYTES"))
        if store_key:
            inputs.append(tensor("STORE_KEY", store_key.encode(), "BYTES"))
        try:
            res = await self._get().infer(model, inputs, request_id=request_id,
                                          client_timeout=timeout_s,
                                          outputs=[grpcclient.InferRequestedOutput("IMAGE"),
                                                   grpcclient.InferRequestedOutput("INFO")])
        except InferenceServerException as e:
            raise _translate(e) from None
        info_raw = res.as_numpy("INFO").reshape(-1)[0]
        return Generated(image=res.as_numpy("IMAGE")[0], info=json.loads(info_raw))

    async def ready(self, model: str, timeout_s: float = 2.0) -> bool:
        """True when the server and the model are ready."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(await self._get().is_model_ready(model, client_timeout=timeout_s))
        except InferenceServerException:
            return False

    async def close(self) -> None:
        """Close the channel."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def _translate(e) -> WorkerError:
    status = (e.status() or "").upper()
    msg = e.message() or str(e)
    if "DEADLINE" in status or "Deadline Exceeded" in msg:
        return WorkerTimeout(msg)
    if "maximum queue size" in msg or "RESOURCE_EXHAUSTED" in status:
        return WorkerOverloaded(msg)
    if "UNAVAILABLE" in status or "failed to connect" in msg.lower() or "not ready" in msg or "unavailable" in msg.lower():
        return WorkerUnavailable(msg)
    if "INVALID_ARG" in status or "bad input" in msg or "must be" in msg or "must not" in msg:
        return WorkerRejected(msg)
    return WorkerUnavailable(msg)
