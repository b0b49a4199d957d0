"""The only module that speaks Triton gRPC: async inference against one worker replica.

gRPC failures are translated here, once, into the domain errors below; callers never
see tritonclient exceptions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from argus.contract import WorkReport


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
    info: WorkReport


class TritonWorkerClient:
    """An async gRPC client for one replica (`host:port`); one channel and stub, reused.

    Requests are built as Triton `ModelInferRequest` protobufs with raw input contents directly
    (no tritonclient InferInput/InferResult objects): this is the router's hot path.
    """

    def __init__(self, url: str):
        """Create the channel lazily on the running event loop."""
        self.url = url
        self._channel = None
        self._stub = None

    def _get(self):
        if self._stub is None:
            import grpc
            from tritonclient.grpc import service_pb2_grpc

            self._channel = grpc.aio.insecure_channel(self.url, options=_CHANNEL_OPTIONS)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def generate(self, model: str, prompt: str, seed: int, height: int, width: int, *,
                       cache_key: str | None = None, store_key: str | None = None,
                       timeout_s: float = 60.0, request_id: str = "", level: str | None = None,
                       deadline: float | None = None) -> Generated:
        """Run one image through `model` (the Triton model: the level the worker loaded) with a client-side
        deadline; `level` (when it differs from `model`) serves it at another level of the same weights;
        `deadline` (Unix time) lets the worker run it at a faster level rather than finish it late."""
        import grpc

        request = infer_request(model, prompt, seed, height, width, cache_key=cache_key, store_key=store_key,
                                request_id=request_id, level=level, deadline=deadline)
        try:
            response = await self._get().ModelInfer(request, timeout=timeout_s)
        except grpc.RpcError as e:
            raise _translate(str(e.code()), e.details() or str(e)) from None
        return parse_response(response)

    async def ready(self, model: str, timeout_s: float = 2.0) -> bool:
        """True when the server and the model are ready."""
        import grpc
        from tritonclient.grpc import service_pb2

        try:
            res = await self._get().ModelReady(service_pb2.ModelReadyRequest(name=model), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(res.ready)

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


_MAX_MESSAGE = 2**31 - 1  # as tritonclient: images are large, never truncate
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", _MAX_MESSAGE),
                    ("grpc.max_receive_message_length", _MAX_MESSAGE),
                    ("grpc.keepalive_time_ms", 2**31 - 1), ("grpc.keepalive_timeout_ms", 20000),
                    ("grpc.keepalive_permit_without_calls", False), ("grpc.http2.max_pings_without_data", 2)]
_OUTPUTS = ("IMAGE", "INFO")


def _bytes_element(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value  # Triton's BYTES wire format: 4-byte LE length, then the bytes


def infer_request(model: str, prompt: str, seed: int, height: int, width: int, *, cache_key: str | None = None,
                  store_key: str | None = None, request_id: str = "", level: str | None = None,
                  deadline: float | None = None):
    """The worker's input tensors (PROMPT, SEED, HEIGHT, WIDTH, optional CACHE_KEY/STORE_KEY/LEVEL/DEADLINE),
    each [1, 1]."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    tensors = [("PROMPT", "BYTES", _bytes_element(prompt.encode("utf-8"))),
               ("SEED", "INT64", struct.pack("<q", seed)),
               ("HEIGHT", "INT32", struct.pack("<i", height)),
               ("WIDTH", "INT32", struct.pack("<i", width))]
    if cache_key:
        tensors.append(("CACHE_KEY", "BYTES", _bytes_element(cache_key.encode())))
    if store_key:
        tensors.append(("STORE_KEY", "BYTES", _bytes_element(store_key.encode())))
    if level and level != model:
        tensors.append(("LEVEL", "BYTES", _bytes_element(level.encode())))
    if deadline is not None:
        tensors.append(("DEADLINE", "FP64", struct.pack("<d", deadline)))
    for name, dtype, _ in tensors:
        t = req.inputs.add()
        t.name, t.datatype = name, dtype
        t.shape.extend((1, 1))
    req.raw_input_contents.extend(raw for _, _, raw in tensors)
    for name in _OUTPUTS:
        req.outputs.add().name = name
    return req


def parse_response(response) -> Generated:
    """IMAGE (uint8 [1, H, W, 3]) and INFO (one JSON string) from a ModelInferResponse."""
    out = {o.name: (o, raw) for o, raw in zip(response.outputs, response.raw_output_contents)}
    try:
        (image_meta, image_raw), (_, info_raw) = out["IMAGE"], out["INFO"]
    except KeyError as e:
        raise WorkerUnavailable(f"worker response lacks output {e.args[0]}") from None
    if image_meta.datatype != "UINT8":
        raise WorkerUnavailable(f"worker IMAGE is {image_meta.datatype}, not UINT8")
    shape = tuple(image_meta.shape)
    image = np.frombuffer(image_raw, dtype=np.uint8).reshape(shape)[0]
    try:
        (n,) = struct.unpack_from("<I", info_raw)
        info = WorkReport.from_json(info_raw[4:4 + n])
    except (struct.error, ValueError, TypeError) as e:  # json's errors are ValueErrors
        raise WorkerUnavailable(f"worker INFO is not a report: {e}") from None
    return Generated(image=image, info=info)


def _translate(status: str, msg: str) -> WorkerError:
    status = (status or "").upper()
    if "DEADLINE" in status or "Deadline Exceeded" in msg:
        return WorkerTimeout(msg)
    if "maximum queue size" in msg or "RESOURCE_EXHAUSTED" in status:
        return WorkerOverloaded(msg)
    if "UNAVAILABLE" in status or "failed to connect" in msg.lower() or "not ready" in msg or "unavailable" in msg.lower():
        return WorkerUnavailable(msg)
    if "INVALID_ARG" in status or "bad input" in msg or "must be" in msg or "must not" in msg:
        return WorkerRejected(msg)
    return WorkerUnavailable(msg)
