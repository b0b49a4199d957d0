"""Fuzzing the router's HTTP handler against its own OpenAPI spec (schemathesis + hypothesis).

Cases: at least 2,000 generated requests (valid and invalid bodies, odd types, missing
fields, unknown fields, raw byte bodies) to POST /v1/images/generations; none gets a 5xx,
the app never crashes, and every non-200 answer has a JSON error body with a message.
The worker behind the router is a fake that returns an image at once: this checks the
router's input handling, not generation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis import given
from fastapi.testclient import TestClient

from argus.adapters.triton_client import Generated
from argus.router.app import Router, create_app
from argus.router.dispatch import Dispatcher
from argus.router.metrics import RouterMetrics
from argus.router.settings import RouterSettings


class OneWorker:
    def replicas(self, service, level):
        return ["fake:1"]

    def services(self):
        return ["svc"]

    def refresh(self):
        pass


class InstantClient:
    def __init__(self, url):
        pass

    async def generate(self, model, prompt, seed, h, w, **kw):
        return Generated(np.zeros((h, w, 3), np.uint8), {"level": model, "k_used": 0, "steps_run": 1,
                                                        "cache_hit": False})

    async def close(self):
        pass


def make_app():
    s = RouterSettings(sizes=("8x8", "16x16"), default_size="8x8", reload_interval_s=60)
    ep = OneWorker()
    router = Router(s, ep, RouterMetrics(), dispatcher=Dispatcher(ep, InstantClient))
    return create_app(s, router)


def _encode(body) -> bytes:
    try:
        return json.dumps(body).encode()
    except TypeError:  # schemathesis's NOT_SET: a request without a body
        return b""


APP = make_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
COUNT = {"n": 0}
SCHEMA_EXAMPLES, RAW_EXAMPLES = 1200, 1000
CLIENT: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _client():
    """One app lifespan for all examples (starting it per example is slow)."""
    with TestClient(APP) as client:
        CLIENT["c"] = client
        yield


@schema.include(path="/v1/images/generations").parametrize()
@settings(max_examples=SCHEMA_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_schema_fuzz_no_5xx(case):
    client = CLIENT["c"]
    body = case.body if isinstance(case.body, bytes) else _encode(case.body)
    response = client.request(case.method, case.formatted_path, content=body,
                              headers={**(case.headers or {}), "content-type": "application/json"})
    COUNT["n"] += 1
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["error"]["message"]


@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | st.dictionaries(st.sampled_from(["prompt", "n", "size", "seed", "model", "user", "quality_floor", "x"]),
                         st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
                         | st.lists(st.integers(), max_size=3), max_size=6).map(
                             lambda d: json.dumps(d).encode()))
@settings(max_examples=RAW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_raw_body_fuzz_no_5xx(body):
    r = CLIENT["c"].post("/v1/images/generations", content=body, headers={"content-type": "application/json"})
    COUNT["n"] += 1
    assert r.status_code in (200, 400, 404), (r.status_code, r.text)
    if r.status_code != 200:
        assert r.json()["error"]["message"]


def test_fuzz_volume():
    """The fuzzers are budgeted for 2,000+ requests and, when they ran in this session, sent them."""
    assert SCHEMA_EXAMPLES + RAW_EXAMPLES >= 2000
    if COUNT["n"]:  # zero only when this test is selected alone
        assert COUNT["n"] >= 2000
