"""End to end through real Envoy → router → Triton worker on loopback.

Cases: a prompt returns a decodable PNG of the requested size (64x64 and 32x32); the same
seed gives the same image and another seed a different one; n=2 gives two images;
Triton's /metrics counts the requests; every kind of bad input gets a 4xx JSON error
naming the problem (invalid JSON, missing/empty/too-long prompt, non-UTF-8 bytes,
unsupported size, n out of range, unknown field, body over Envoy's limit → 413);
a worker that is down gives 503 with Retry-After quickly, and a new worker in its place serves again
(the test puts the shared system back as it found it).
"""

from __future__ import annotations

import base64
import io
import re
import time

import httpx
import pytest
from PIL import Image

URL = "/v1/images/generations"


def post(system, body=None, content=None, headers=None):
    """POST to Envoy; return the httpx response."""
    return httpx.post(system.url + URL, json=body, content=content, headers=headers, timeout=120)


def png(doc, i=0):
    """Decode image i of a response as a PIL image."""
    return Image.open(io.BytesIO(base64.b64decode(doc["data"][i]["b64_json"])))


@pytest.mark.parametrize("size", ["64x64", "32x32"])
def test_png_of_requested_size(local_system, size):
    r = post(local_system, {"prompt": "a red bicycle", "size": size, "seed": 1})
    assert r.status_code == 200, r.text
    img = png(r.json())
    assert img.format == "PNG"
    assert f"{img.width}x{img.height}" == size
    rep = r.json()["argus"][0]
    assert rep["level"] == "cache-k0" and rep["steps_run"] == 4


def test_same_seed_same_image_other_seed_differs(local_system):
    a = post(local_system, {"prompt": "a lighthouse", "seed": 7}).json()
    b = post(local_system, {"prompt": "a lighthouse", "seed": 7}).json()
    c = post(local_system, {"prompt": "a lighthouse", "seed": 8}).json()
    assert png(a).tobytes() == png(b).tobytes()
    assert png(a).tobytes() != png(c).tobytes()


def test_n2_gives_two_distinct_images(local_system):
    r = post(local_system, {"prompt": "two cats", "n": 2, "seed": 3})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["data"]) == 2 and len(doc["argus"]) == 2
    assert png(doc, 0).tobytes() != png(doc, 1).tobytes()


def _success_count(system) -> float:
    rep = next(iter(system.replicas.values()))
    text = httpx.get(f"http://127.0.0.1:{rep.ports.metrics}/metrics").text
    m = re.search(r'nv_inference_request_success\{model="cache-k0",version="1"\} (\d+)', text)
    return float(m.group(1)) if m else 0.0


def test_triton_metrics_count_requests(local_system):
    before = _success_count(local_system)
    assert post(local_system, {"prompt": "a tree", "n": 2}).status_code == 200
    assert _success_count(local_system) == before + 2


@pytest.mark.parametrize("content,needle", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"n": 1}', "'prompt' is required"),
    (b'{"prompt": "   "}', "must not be empty"),
    (b'{"prompt": "' + b"x" * 2001 + b'"}', "limit is 2000"),
    (b'{"prompt": "caf\xe9"}', "not valid UTF-8"),
    (b'{"prompt": "a", "size": "1024x1024"}', "not supported"),
    (b'{"prompt": "a", "n": 0}', "'n' must be"),
    (b'{"prompt": "a", "n": 99}', "'n' must be"),
    (b'{"prompt": "a", "seed": -1}', "'seed' must be"),
    (b'{"prompt": "a", "quality_floor": 120}', "quality_floor"),
    (b'{"prompt": "a", "response_format": "url"}', "b64_json"),
    (b'{"prompt": "a", "bogus": 1}', "unknown field 'bogus'"),
    (b'{"prompt": "a", "model": "nope"}', "unknown model"),
])
def test_bad_input_is_4xx_with_reason(local_system, content, needle):
    r = post(local_system, content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert needle in r.json()["error"]["message"]


def test_body_over_envoy_limit_is_413(local_system):
    r = post(local_system, content=b'{"prompt": "' + b"x" * 70000 + b'"}',
             headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] in ("413", 413)


def test_health_and_metrics_endpoints(local_system):
    assert httpx.get(local_system.url + "/healthz").status_code == 200
    assert httpx.get(local_system.url + "/readyz").status_code == 200
    text = httpx.get(local_system.url + "/metrics").text
    assert 'argus_router_requests_total{level="cache-k0",outcome="ok",service="svc"}' in text


def test_worker_down_gives_503_with_retry_after(local_system):
    """Stops the shared system's only worker, then puts a new one in its place (the fixture is session-scoped:
    later tests in other modules use it) and shows the router serves again once it is published."""
    level = {r.level for r in local_system.replicas.values()}.pop()
    try:
        for name in list(local_system.replicas):
            local_system.supervisor.stop(name)  # killed without unpublishing: the router finds it dead
        t0 = time.monotonic()
        r = post(local_system, {"prompt": "anything"})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after")
        assert time.monotonic() - t0 < 10
        local_system.replicas.clear()
        local_system.ready.clear()
        local_system.publish_endpoints()
        time.sleep(1.0)  # the router reloads the endpoints file every 0.5 s
        r = post(local_system, {"prompt": "anything"})
        assert r.status_code == 503 and "no ready replica" in r.json()["error"]["message"]
    finally:
        for name in list(local_system.replicas):
            local_system.stop_worker(name)
        local_system.start_worker(level)  # waits until ready, then publishes it
    deadline = time.monotonic() + 10
    while (r := post(local_system, {"prompt": "anything"})).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)  # until the router has reloaded the endpoints file
    assert r.status_code == 200, r.text
