"""The OpenAI-compatible image request: its JSON Schema and its parser, written from the same limits.

`request_schema` is what the router's OpenAPI document publishes; `parse_request` enforces it with
messages that name the field, plus what a schema does not say (UTF-8, no NUL or lone surrogates, a
user name without control characters). The accepted fields are the schema's properties.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from argus.contract import MAX_PROMPT_CHARS
from argus.router.errors import BadRequest

KNOWN_IGNORED = ("quality", "style")  # OpenAI fields accepted for compatibility, no effect here
MAX_SEED = 2**63 - 1
MAX_USER_CHARS = 256
SIZE = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")  # 'WxH'


@dataclass(frozen=True)
class ImageRequest:
    """A validated request for n images of one prompt."""

    prompt: str
    n: int
    height: int | None  # None: the request names no size, the service's image size applies
    width: int | None
    seed: int | None
    quality_floor: float | None
    service: str | None
    user: str


@dataclass(frozen=True)
class Limits:
    """What the router accepts."""

    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_n: int = 4
    sizes: tuple[str, ...] = ("64x64",)  # accepted for every service, besides each service's own image size


def request_schema(limits: Limits = Limits()) -> dict:
    """The request body's JSON Schema under `limits` (the OpenAPI document's requestBody)."""
    return {
        "type": "object", "required": ["prompt"], "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": limits.max_prompt_chars},
            "n": {"type": "integer", "minimum": 1, "maximum": limits.max_n, "default": 1},
            "size": {"type": "string", "pattern": f"^{SIZE.pattern}$", "example": limits.sizes[0],
                     "description": "WIDTHxHEIGHT; the service's own image size or one of the router's sizes"},
            "response_format": {"type": "string", "enum": ["b64_json"]},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
            "quality_floor": {"type": "number", "minimum": 0, "maximum": 100},
            "model": {"type": "string", "minLength": 1, "description": "T2IService name"},
            "user": {"type": "string", "maxLength": MAX_USER_CHARS, "description": "tenant (cache namespace)"},
            **{name: {"type": "string", "description": "accepted for compatibility; no effect"}
               for name in KNOWN_IGNORED},
        },
    }


FIELDS = frozenset(request_schema()["properties"])


def parse_request(body: bytes, limits: Limits) -> ImageRequest:
    """Decode and validate a request body; raise BadRequest naming the problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not valid UTF-8 (byte {e.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    _check_unicode(doc)
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", unknown[0])

    prompt = doc.get("prompt")
    if prompt is None:
        raise BadRequest("'prompt' is required", "prompt")
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string", "prompt")
    if not prompt.strip():
        raise BadRequest("'prompt' must not be empty", "prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise BadRequest(f"'prompt' is {len(prompt)} characters; the limit is {limits.max_prompt_chars}", "prompt")
    if "\x00" in prompt:
        raise BadRequest("'prompt' must not contain NUL characters", "prompt")

    n = doc.get("n", 1)
    if not _is_int(n) or not 1 <= n <= limits.max_n:
        raise BadRequest(f"'n' must be an integer between 1 and {limits.max_n}", "n")

    size = doc.get("size")
    if size is not None and (not isinstance(size, str) or not SIZE.fullmatch(size)):
        raise BadRequest(f"'size' {size!r} is not supported; supported: {', '.join(limits.sizes)}", "size")
    width, height = (int(v) for v in size.split("x")) if size is not None else (None, None)

    fmt = doc.get("response_format", "b64_json")
    if fmt != "b64_json":
        raise BadRequest("'response_format' must be 'b64_json' (URLs are not served)", "response_format")

    seed = doc.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise BadRequest(f"'seed' must be an integer between 0 and {MAX_SEED}", "seed")

    floor = doc.get("quality_floor")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float))
                              or not 0 <= floor <= 100):
        raise BadRequest("'quality_floor' must be a number between 0 and 100 (percent)", "quality_floor")

    service = doc.get("model")
    if service is not None and (not isinstance(service, str) or not service):
        raise BadRequest("'model' must be a non-empty string naming the T2IService", "model")
    user = doc.get("user", "")
    if not isinstance(user, str) or len(user) > MAX_USER_CHARS:
        raise BadRequest(f"'user' must be a string of at most {MAX_USER_CHARS} characters", "user")
    if any(ord(c) < 32 or ord(c) == 127 for c in user):
        raise BadRequest("'user' must not contain control characters (it names the tenant's cache)", "user")
    return ImageRequest(prompt=prompt, n=n, height=height, width=width, seed=seed,
                        quality_floor=None if floor is None else float(floor), service=service, user=user)


def _surrogate_at(text: str) -> int | None:
    """Index of the first lone surrogate in `text` (a JSON \\uD800-\\uDFFF escape not in a valid pair), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def _strings(value):
    """Every string inside a JSON value (keys and values of nested objects and arrays included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)


def _check_unicode(doc: dict) -> None:
    """Reject text that is not valid Unicode: JSON allows a lone surrogate escape ("\\ud800"), UTF-8 cannot
    encode it, so it would fail later (cache keys, Triton's BYTES tensors, the JSON answer)."""
    for key, value in doc.items():
        at = _surrogate_at(key)
        if at is not None:
            raise BadRequest(f"field name {key!r} is not valid Unicode: lone surrogate "
                             f"\\u{ord(key[at]):04x} at character {at}")
        for text in _strings(value):
            at = _surrogate_at(text)
            if at is not None:
                raise BadRequest(f"'{key}' is not valid Unicode: lone surrogate \\u{ord(text[at]):04x} at character "
                                 f"{at} (a \\uD800-\\uDFFF escape must be half of a surrogate pair)", key)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
