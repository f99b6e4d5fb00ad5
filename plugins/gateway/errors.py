"""The wire's status codes as HTTP statuses, and the JSON body of every error reply.

Every error body has ``error`` (the Open Inference Protocol's field: a message naming
what was wrong) plus the wire's ``code``, ``field`` and ``retryable``; a refusal that
says when to retry carries ``Retry-After`` (whole seconds, rounded up).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

import heirloom

log = logging.getLogger("heirloom.gateway")
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
#: Refused by the gateway itself, before anything reaches the daemon: the client's request
#: is wrong, so their code is INVALID_ARGUMENT (the wire has no code of their own).
PAYLOAD_TOO_LARGE = 413
METHOD_NOT_ALLOWED = 405
#: A body in a content coding (gzip) the gateway does not decode.
UNSUPPORTED_MEDIA_TYPE = 415
#: A body in a transfer coding other than chunked (RFC 9112 6.1).
NOT_IMPLEMENTED = 501


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
    message = heirloom.shortened(message)  # one quoting a huge bad value must not make the reply as large
    body: dict[str, Any] = {"error": message, "code": code or _code_of(status), "retryable": retryable}
    if field is not None:
        body["field"] = heirloom.shortened(field)
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


def reworded(error: heirloom.RemoteError, message: str, field: str | None) -> heirloom.RemoteError:
    """``error`` with another message and field, as a new error of its type: a caught error is never changed,
    as it may be shared (one error failed every row of a request, which then read ``row 7: row 6: ...``)."""
    return type(error)(message, field=field, retryable=error.retryable, retry_after_ms=error.retry_after_ms)


def about_a_row(error: heirloom.RemoteError) -> bool:
    """Whether an infer row's refusal is about that row, not about the connection (closed, its Curve key
    refused) or the request's budget, which fail every row alike and name none."""
    connection = isinstance(error, heirloom.ConnectionClosed)
    return not connection and error.code not in ("UNAUTHENTICATED", "DEADLINE_EXCEEDED")


def failure_response(exc: BaseException) -> JSONResponse:
    """A 500 for a request the gateway itself failed on: JSON like every other error,
    naming the exception's type only (its message may hold what a client must not see);
    the traceback goes to the log."""
    log.error("the gateway failed on a request", exc_info=exc)
    message = f"the gateway failed on this request ({type(exc).__name__}); its log has the details"
    return error_response(500, message, code="INTERNAL")


def method_not_allowed(method: str, path: str, allow: str) -> JSONResponse:
    """405 for a method the path does not take; ``allow``: the ones it does."""
    return error_response(METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}", headers={"Allow": allow})


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404 (no such path) and 405 (wrong method) as JSON error bodies."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == METHOD_NOT_ALLOWED:
        return method_not_allowed(request.method, request.url.path, (exc.headers or {}).get("Allow", ""))
    return error_response(exc.status_code, f"no such path: {request.url.path}", code=_code_of(exc.status_code))


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    return failure_response(exc)


def _code_of(status: int) -> str:
    if status in (PAYLOAD_TOO_LARGE, METHOD_NOT_ALLOWED, UNSUPPORTED_MEDIA_TYPE, NOT_IMPLEMENTED):
        return "INVALID_ARGUMENT"
    return next((code for code, http in HTTP_STATUS.items() if http == status), "INTERNAL")
