"""The router's hot path pieces: the plain PNG encoder, the raw Triton request/response, the ASGI endpoint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from argus.contract import WorkReport
from argus.adapters.triton_client import (Generated, WorkerOverloaded, WorkerUnavailable, infer_request,
                                         parse_response)
from argus.router.app import Router, create_app
from argus.router.dispatch import Dispatcher
from argus.router.metrics import RouterMetrics
from argus.router.png import encode_png, png_b64
from argus.router.settings import RouterSettings


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (32, 32, 3), (64, 48, 3), (9, 4)])
def test_png_decodes_to_the_same_pixels(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(encode_png(img))))
    assert back.shape == img.shape and np.array_equal(back, img)


def test_png_rejects_other_dtypes_and_shapes():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 4), np.uint8))


@pytest.mark.parametrize("keys", [{}, {"cache_key": "t/abc"}, {"store_key": "t/def"},
                                  {"cache_key": "t/abc", "store_key": "t/def"},
                                  {"cache_key": "t/abc", "level": "steps-5"}])
def test_infer_request_is_the_one_tritonclient_builds(keys):
    """Same protobuf bytes as tritonclient's InferInput/InferRequestedOutput path (the worker's contract)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc._utils import _get_inference_request

    def tensor(name, value, dtype):
        t = grpcclient.InferInput(name, [1, 1], dtype)
        t.set_data_from_numpy(np.array([[value]], dtype={"BYTES": np.object_, "INT64": np.int64,
                                                         "INT32": np.int32}[dtype]))
        return t

    prompt = "a fox, ünïcode ☃"
    inputs = [tensor("PROMPT", prompt.encode(), "BYTES"), tensor("SEED", 2**40 + 3, "INT64"),
              tensor("HEIGHT", 32, "INT32"), tensor("WIDTH", 64, "INT32")]
    if "cache_key" in keys:
        inputs.append(tensor("CACHE_KEY", keys["cache_key"].encode(), "BYTES"))
    if "store_key" in keys:
        inputs.append(tensor("STORE_KEY", keys["store_key"].encode(), "BYTES"))
    if "level" in keys:  # a worker switched in place: its model (cache-k5) serves the request at LEVEL
        inputs.append(tensor("LEVEL", keys["level"].encode(), "BYTES"))
    theirs = _get_inference_request(model_name="cache-k5", inputs=inputs, model_version="", request_id="r1",
                                    outputs=[grpcclient.InferRequestedOutput("IMAGE"),
                                             grpcclient.InferRequestedOutput("INFO")],
                                    sequence_id=0, sequence_start=False, sequence_end=False, priority=0,
                                    timeout=None, parameters=None)
    ours = infer_request("cache-k5", prompt, 2**40 + 3, 32, 64, request_id="r1", **keys)
    assert ours == theirs


def _response(info: bytes, img: np.ndarray):
    from tritonclient.grpc import service_pb2

    res = service_pb2.ModelInferResponse(model_name="cache-k0")
    for name, dtype, shape in (("INFO", "BYTES", (1, 1)), ("IMAGE", "UINT8", img.shape)):
        o = res.outputs.add()
        o.name, o.datatype = name, dtype
        o.shape.extend(shape)
    res.raw_output_contents.extend([len(info).to_bytes(4, "little") + info, img.tobytes()])
    return res


def test_parse_response_reads_image_and_info():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3)
    g = parse_response(_response(json.dumps({"level": "cache-k0", "k_used": 0, "from_a_newer_worker": 1}).encode(), img))
    assert np.array_equal(g.image, img[0]) and g.info == WorkReport(level="cache-k0", k_used=0)
    report = WorkReport(level="cache-k10", k_used=10, steps_run=20, cache_hit=True, model="m")
    assert parse_response(_response(report.to_json(), img)).info == report  # the worker's bytes, read back


@pytest.mark.parametrize("info", [b"not json", b'{"k_used": 0}', b"[1, 2]"])
def test_an_unreadable_worker_report_is_a_worker_failure(info):
    img = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(WorkerUnavailable, match="INFO is not a report"):
        parse_response(_response(info, img))


class _Endpoints:
    def replicas(self, service, level):
        return ["fake:1"]

    def services(self):
        return ["svc"]

    def refresh(self):
        pass


class _Client:
    fail = False

    def __init__(self, url):
        pass

    async def generate(self, model, prompt, seed, h, w, **kw):
        if _Client.fail:
            raise WorkerOverloaded("queue full")
        return Generated(np.full((h, w, 3), 9, np.uint8), WorkReport(level=model, k_used=0, steps_run=1))

    async def close(self):
        pass


@pytest.fixture
def client(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    s = RouterSettings(sizes=("8x8",), default_size="8x8", reload_interval_s=60, api_key_file=key)
    ep = _Endpoints()
    app = create_app(s, Router(s, ep, RouterMetrics(), dispatcher=Dispatcher(ep, _Client)))
    with TestClient(app) as c:
        yield c
    _Client.fail = False


def test_images_endpoint_answers(client):
    ok = client.post("/v1/images/generations", json={"prompt": "a boat", "seed": 3},
                     headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert int(ok.headers["content-length"]) == len(ok.content)
    doc = ok.json()
    img = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(doc["data"][0]["b64_json"]))))
    assert img.shape == (8, 8, 3) and (img == 9).all()
    assert doc["argus"][0]["seed"] == 3 and doc["argus"][0]["level"] == "cache-k0"


def test_images_endpoint_errors_keep_their_shape(client):
    no_key = client.post("/v1/images/generations", json={"prompt": "a boat"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    bad = client.post("/v1/images/generations", content=b"{", headers={"Authorization": "Bearer s3cret"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("request body is not valid JSON")
    _Client.fail = True
    busy = client.post("/v1/images/generations", json={"prompt": "a boat"}, headers={"Authorization": "Bearer s3cret"})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"] == {"message": "queue full", "type": "overloaded_error", "param": None, "code": 503}


def test_other_methods_and_paths_still_go_through_fastapi(client):
    assert client.get("/v1/images/generations").status_code == 405
    assert client.get("/nope").json()["error"]["code"] == 404
    spec = client.get("/openapi.json").json()
    assert "requestBody" in spec["paths"]["/v1/images/generations"]["post"]
