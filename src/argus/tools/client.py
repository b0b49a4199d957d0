"""A small client for the Argus HTTP API (what `argus generate` and `argus load` use)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx


class ApiError(RuntimeError):
    """The API answered with an error; carries the status and the server's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass
class GeneratedImage:
    """A PNG and Argus's report of how it was made."""

    png: bytes
    report: dict


def generate(url: str, prompt: str, *, size: str = "64x64", n: int = 1, seed: int | None = None,
             quality_floor: float | None = None, api_key: str | None = None,
             timeout_s: float = 300.0) -> list[GeneratedImage]:
    """POST one request to `/v1/images/generations`; raise ApiError on a non-200 answer."""
    body: dict = {"prompt": prompt, "size": size, "n": n, "response_format": "b64_json"}
    if seed is not None:
        body["seed"] = seed
    if quality_floor is not None:
        body["quality_floor"] = quality_floor
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.post(f"{url.rstrip('/')}/v1/images/generations", json=body, headers=headers, timeout=timeout_s)
    if r.status_code != 200:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:500]
        raise ApiError(r.status_code, msg)
    doc = r.json()
    return [GeneratedImage(base64.b64decode(d["b64_json"]), rep) for d, rep in zip(doc["data"], doc["argus"])]
