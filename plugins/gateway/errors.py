"""The wire's status codes as HTTP statuses, and the JSON body of every error reply.

Every error body has ``error`` (the Open Inference Protocol's field: a message naming
what was wrong) plus the wire's ``code``, ``field`` and ``retryable``; a refusal that
says when to retry carries ``Retry-After`` (whole seconds, rounded up).
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

import heirloom

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
#: Refused by the gateway itself, before anything reaches the daemon.
PAYLOAD_TOO_LARGE = 413


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    retryable: bool = False,
    retry_after_ms: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code or _code_of(status), "retryable": retryable}
    if field is not None:
        body["field"] = field
    headers = dict(headers or {})
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_ms / 1000)))
    return JSONResponse(body, status_code=status, headers=headers)


def remote_error_response(error: heirloom.RemoteError) -> JSONResponse:
    """The daemon's (or the client's) refusal as the matching HTTP reply."""
    retry_after = error.retry_after_ms
    if retry_after is None and error.code == "RESOURCE_EXHAUSTED":
        retry_after = 1000  # 429 always says when to come back
    headers = {"WWW-Authenticate": "Bearer"} if error.code == "UNAUTHENTICATED" else None
    return error_response(
        HTTP_STATUS.get(error.code, 500),
        error.message,
        code=error.code,
        field=error.field,
        retryable=error.retryable,
        retry_after_ms=retry_after,
        headers=headers,
    )


def _code_of(status: int) -> str:
    if status == PAYLOAD_TOO_LARGE:
        return "INVALID_ARGUMENT"
    return next((code for code, http in HTTP_STATUS.items() if http == status), "INTERNAL")
