"""The published request schema and the parser are one contract: what the schema allows at its bounds
is accepted, one step past a bound is refused (400 naming the field), and the fields are the same."""

from __future__ import annotations

import json

import pytest

from argus.router.errors import BadRequest
from argus.router.schema import FIELDS, Limits, parse_request, request_schema

LIMITS = Limits(max_prompt_chars=40, max_n=3, sizes=("64x64",))
SCHEMA = request_schema(LIMITS)


def _parse(**fields):
    return parse_request(json.dumps({"prompt": "a red cube", **fields}).encode(), LIMITS)


def test_the_parser_accepts_exactly_the_schemas_fields():
    assert set(SCHEMA["properties"]) == FIELDS and SCHEMA["required"] == ["prompt"]
    with pytest.raises(BadRequest, match="unknown field 'negative_prompt'"):
        _parse(negative_prompt="x")


@pytest.mark.parametrize("field", [f for f, p in SCHEMA["properties"].items() if "maximum" in p])
def test_numeric_bounds_match(field):
    prop = SCHEMA["properties"][field]
    _parse(**{field: prop["maximum"]})
    _parse(**{field: prop["minimum"]})
    step = 1 if prop["type"] == "integer" else 0.5
    for bad in (prop["maximum"] + step, prop["minimum"] - step):
        with pytest.raises(BadRequest) as e:
            _parse(**{field: bad})
        assert e.value.param == field


@pytest.mark.parametrize("field", [f for f, p in SCHEMA["properties"].items() if "maxLength" in p])
def test_length_bounds_match(field):
    longest = SCHEMA["properties"][field]["maxLength"]
    _parse(**{field: "a" * longest})
    with pytest.raises(BadRequest) as e:
        _parse(**{field: "a" * (longest + 1)})
    assert e.value.param == field


def test_the_size_pattern_is_the_parsers():
    import re

    pattern = re.compile(SCHEMA["properties"]["size"]["pattern"])
    for size in ("64x64", "1024x768", "0x64", "64", "64x64x3", "99999x1", "100000x1"):
        ok = pattern.fullmatch(size) is not None
        try:
            _parse(size=size)
            parsed = True
        except BadRequest:
            parsed = False
        assert parsed == ok, size
