"""Fuzzing the router's HTTP handler against its own OpenAPI spec (schemathesis + hypothesis).

Cases: at least 2,000 generated requests (valid and invalid bodies, odd types, missing
fields, unknown fields, raw byte bodies) to POST /v1/images/generations; none gets a 5xx,
the app never crashes, and every non-200 answer has a JSON error body with a message.
Invalid text, on both request paths (the ASGI fast path and the FastAPI route behind it): lone
surrogate escapes ("\\ud800", reversed pairs), bad escapes ("\\x", "\\u12"), raw control
characters and invalid UTF-8 bytes in every string field and in a field name: always a 400;
invalid Unicode names the field.
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

from argus.contract import WorkReport
from argus.adapters.triton_client import Generated
from argus.router.app import ImagesEndpoint, Router, create_app
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
        return Generated(np.zeros((h, w, 3), np.uint8), WorkReport(level=model, k_used=0, steps_run=1))

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
                         | st.text(st.characters(categories=["Cs", "Cc", "L", "N"]), max_size=20)  # lone surrogates
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


# Every string field of the request, and what a valid value of it is (the bad text is spliced into it).
STRING_FIELDS = {"prompt": "a red fox", "model": "svc", "user": "team-a", "size": "8x8",
                 "response_format": "b64_json", "quality": "hd", "style": "vivid"}
# JSON text fragments that decode to a string UTF-8 cannot hold: the field is named in the answer.
SURROGATE = (st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
             | st.tuples(st.integers(0xDC00, 0xDFFF), st.integers(0xD800, 0xDBFF)).map(
                 lambda p: f"\\u{p[0]:04x}\\u{p[1]:04x}")  # a pair in the wrong order
             | st.integers(0xD800, 0xDBFF).map(lambda c: f"\\u{c:04X}\\u0041"))  # high half, then no low half
# Fragments that are not JSON or not UTF-8 at all: the body is refused as a whole (a short \u escape is
# followed by a non-hex character, else the valid text after it would complete it).
BAD_ESCAPE = st.sampled_from(["\\x41", "\\'", "\\a", "\\u12!", "\\uZZZZ", "\\u-", "\\U0001F600", "\\\n", "\x00", "\x1f"])
BAD_BYTES = st.sampled_from([b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\x80", b"\xf0\x9f", b"\xff", b"\xf8\x88\x80\x80\x80"])


def _route_only_app():
    """The same app with the ASGI fast path taken out, so requests reach the FastAPI route."""
    app = make_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ImagesEndpoint]
    assert len(app.user_middleware) == 0
    return app


@pytest.fixture(scope="module", params=["fast-path", "fastapi-route"])
def any_path_client(request):
    with TestClient(APP if request.param == "fast-path" else _route_only_app()) as client:
        yield client


def _body(field: str, fragment: bytes, at: int, in_name: bool = False) -> bytes:
    doc = {"prompt": "a red fox"} if field != "prompt" else {}
    value = STRING_FIELDS[field].encode()
    at = min(at, len(value))
    spliced = value[:at] + fragment + value[at:]
    head = json.dumps(doc)[:-1].encode() + (b", " if doc else b"")
    if in_name:
        return head + b'"' + spliced + b'": "x"}'
    return head + json.dumps(field).encode() + b': "' + spliced + b'"}'


def _post(client, body: bytes):
    r = client.post("/v1/images/generations", content=body, headers={"content-type": "application/json"})
    COUNT["invalid_text"] = COUNT.get("invalid_text", 0) + 1
    assert r.status_code == 400, (body, r.status_code, r.text)
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    return error


@given(field=st.sampled_from(sorted(STRING_FIELDS)), fragment=SURROGATE, at=st.integers(0, 20))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_lone_surrogates_are_400_naming_the_field(any_path_client, field, fragment, at):
    error = _post(any_path_client, _body(field, fragment.encode(), at))
    assert error["param"] == field and f"'{field}' is not valid Unicode" in error["message"], error


@given(field=st.sampled_from(sorted(STRING_FIELDS)), fragment=SURROGATE, at=st.integers(0, 20))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_lone_surrogate_in_a_field_name_is_400(any_path_client, field, fragment, at):
    error = _post(any_path_client, _body(field, fragment.encode(), at, in_name=True))
    assert "field name" in error["message"] and "not valid Unicode" in error["message"], error


@given(field=st.sampled_from(sorted(STRING_FIELDS)), fragment=BAD_ESCAPE.map(str.encode) | BAD_BYTES,
       at=st.integers(0, 20), in_name=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_bad_escapes_and_bytes_are_400(any_path_client, field, fragment, at, in_name):
    error = _post(any_path_client, _body(field, fragment, at, in_name))
    assert error["message"].startswith(("request body is not valid JSON", "request body is not valid UTF-8")), error


@pytest.mark.parametrize("body,param", [
    (rb'{"prompt": "\ud800"}', "prompt"),  # the case of issue 18
    (rb'{"prompt": "ok", "user": "\udfff"}', "user"),
    (rb'{"prompt": "ok", "model": "\ud800x"}', "model"),
    (rb'{"prompt": ["ok", "\ud800"]}', "prompt"),
    (rb'{"prompt": "ok", "user": "a\u0001b"}', "user"),
])
def test_invalid_text_examples(any_path_client, body, param):
    assert _post(any_path_client, body)["param"] == param


def test_valid_surrogate_pairs_and_unicode_are_served(any_path_client):
    for prompt in ("\\ud83e\\udd8a a fox", "ünïcode ☃", "\\u00e9t\\u00e9"):
        r = any_path_client.post("/v1/images/generations", content=b'{"prompt": "' + prompt.encode() + b'"}',
                                 headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
