"""Router domain errors and the one table that maps them to HTTP responses (KServe style)."""

from __future__ import annotations

from argus.adapters.triton_client import (WorkerError, WorkerOverloaded, WorkerRejected, WorkerTimeout,
                                          WorkerUnavailable)


class RouterError(Exception):
    """Base of errors the router turns into HTTP answers."""


class BadRequest(RouterError):
    """The request is malformed; the message names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class Unauthorized(RouterError):
    """Missing or wrong API key."""


class UnknownService(RouterError):
    """The request names a T2IService this router does not serve."""


class Overloaded(RouterError):
    """Admission refused: too many requests in flight, or no capacity left."""


class NoReplicas(RouterError):
    """No ready replica serves the chosen level (or any safer one)."""


# error type -> (HTTP status, OpenAI-style error type, Retry-After seconds or None)
ERROR_TABLE: list[tuple[type[Exception], int, str, int | None]] = [
    (BadRequest, 400, "invalid_request_error", None),
    (WorkerRejected, 400, "invalid_request_error", None),
    (Unauthorized, 401, "authentication_error", None),
    (UnknownService, 404, "not_found_error", None),
    (Overloaded, 503, "overloaded_error", 1),
    (WorkerOverloaded, 503, "overloaded_error", 1),
    (NoReplicas, 503, "unavailable_error", 2),
    (WorkerUnavailable, 503, "unavailable_error", 2),
    (WorkerTimeout, 504, "timeout_error", None),
    (WorkerError, 503, "unavailable_error", 2),
]


def to_http(exc: Exception) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) for a domain error; unknown errors are 500 without details."""
    for etype, status, kind, retry in ERROR_TABLE:
        if isinstance(exc, etype):
            body = {"error": {"message": str(exc) or kind, "type": kind,
                              "param": getattr(exc, "param", None), "code": status}}
            return status, body, ({"Retry-After": str(retry)} if retry else {})
    return 500, {"error": {"message": "internal error", "type": "internal_error", "param": None,
                           "code": 500}}, {}
