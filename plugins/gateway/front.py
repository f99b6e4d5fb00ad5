"""The gateway's hot paths, answered in front of Starlette with raw ASGI messages.

``POST /v1/routes/{route}`` and ``POST /v2/models/{name}[/versions/{v}]/infer`` carry
nearly all traffic. At one request in flight, Starlette's per-request machinery (its
middleware stack, matching the path against every route, a ``Request``, a
``JSONResponse``) cost as much as the gateway's own work, so these two paths are parsed
here and answered with ``http.response.start``/``http.response.body`` messages; every
other request, and every other method on these paths (405), goes to the Starlette app.
Refusals are the same ``error_response`` replies the Starlette routes send.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson
from starlette.responses import Response

import heirloom
from heirloom.options import host_refusal
from heirloom_plugins.gateway.errors import (
    NOT_IMPLEMENTED,
    UNSUPPORTED_MEDIA_TYPE,
    error_response,
    failure_response,
    method_not_allowed,
    remote_error_response,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A hot handler: (JSON reply, extra headers); raises Refused or RemoteError to refuse.
Answer = tuple[bytes, list[tuple[bytes, bytes]]]

ROUTES = "/v1/routes/"
MODELS = "/v2/models/"
INFER = "/infer"
#: Consoles answer GET forms by calling routes: reads with side effects (a handoff queued).
CONSOLES = "/console"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def to_json(content: Any) -> bytes:
    """A reply as compact UTF-8 JSON (orjson: an infer reply in 0.6 us against the standard
    library's 10); keys that are not strings become strings, a non-finite number ``null``, bytes
    ``{"$base64": ...}`` as ``heirloom call`` prints them (a route's bytes were a 500 TypeError)."""
    return orjson.dumps(content, default=_as_json, option=orjson.OPT_NON_STR_KEYS)


def _as_json(value: Any) -> Any:
    """What orjson cannot write itself: bytes, as base64."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON")


#: Arrays and objects a body may hold in all (the daemon's own bound on a body, docs/PROTOCOL.md).
MAX_CONTAINERS = heirloom.MAX_CONTAINERS


class NotServed(ValueError):
    """A body that is JSON the gateway does not serve: an object holding a key more than once, or more arrays and
    objects than MAX_CONTAINERS (its message says which)."""


#: How orjson words malformed JSON deep inside arrays or objects (``[`` x 200 then ``x``), at a wrong column:
#: it read as a gateway out of memory (checker v4 F2).
ALLOCATION_WORDS = "failed to allocate memory"


def from_json(raw: bytes) -> Any:
    """A request body parsed strictly: ``NaN``/``Infinity`` literals and nesting deeper than
    1,024 are refused (orjson.JSONDecodeError, a ValueError), where the standard library
    let them through or raised RecursionError. An integer past 64 bits becomes a float. Bytes
    that are not UTF-8 are named by offset (orjson's own words speak of surrogates), and JSON
    malformed deep inside arrays in the standard library's words (orjson's: ALLOCATION_WORDS). An object
    holding a key twice is NotServed: orjson keeps the last value, and a proxy in front that
    read the first would have passed another request than the one served. So is a body of more
    than MAX_CONTAINERS arrays and objects, counted before it is parsed: each costs the parser,
    the packer and the daemon's decoder an object on the event loop (a MiB of ``[[1]]`` held it
    2 s), and the daemon refuses more anyway."""
    if (count := containers(raw)) > MAX_CONTAINERS:
        raise NotServed(
            f"the body holds {count:,} arrays and objects; a body holds at most {MAX_CONTAINERS:,} (send fewer per "
            "request)"
        )
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ValueError(f"byte 0x{bad.object[bad.start]:02x} at offset {bad.start} is not UTF-8") from None
        if str(exc).startswith(ALLOCATION_WORDS) and not opens_deeper(raw):  # deeper: the caller says so
            json.loads(bytes(raw))  # the standard library's words, what and where: a ValueError at <= 254 levels
        raise
    if (key := repeated_key(bytes(raw), value)) is not None:
        raise NotServed(
            f"an object of the body holds the key {key[:80]!r} more than once: send it once (which one counts "
            "would be a guess, and a proxy in front may have read the other)"
        )
    return value


#: Bodies up to this size are searched for a repeated key by the standard library's parser
#: (microseconds); a larger one first has its members counted, and is parsed so only if the
#: count says a key repeats (orjson has no hook for it).
SEARCHED_WHOLE = 64 << 10
#: Every byte but quotes and colons: what a body's members are counted by.
NOT_MEMBERS = bytes(set(range(256)) - set(b'":'))


class _Repeated(Exception):
    pass


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return found


def repeated_key(raw: bytes, value: Any) -> str | None:
    """The first key an object of ``raw`` (valid JSON, parsed as ``value``) holds twice, if any
    (but in a body nested too deep to serve, which is refused as such)."""
    if raw.count(b":") < 2:
        return None
    if len(raw) > SEARCHED_WHOLE or _brackets(raw) > MAX_JSON_NESTING:
        try:
            if _members(raw) == _members(orjson.dumps(value)):
                return None  # as many members as the objects parsed hold: none repeated
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (then refused as too deep)
            pass
    try:
        json.loads(raw, object_pairs_hook=_refuse_repeats)
    except _Repeated as repeated:
        return str(repeated.args[0])
    except RecursionError:  # nested far past MAX_JSON_NESTING: refused as too deep
        return None
    return None


def _members(raw: bytes) -> int:
    """The members of the objects in ``raw`` (valid JSON): its colons outside strings."""
    text, outside = _outside(raw, NOT_MEMBERS)
    return int((outside & (text == ord(":"))).sum())


def containers(raw: bytes) -> int:
    """The arrays and objects ``raw`` opens outside strings, once it has brackets enough for it to matter (more than
    MAX_CONTAINERS); its bracket count otherwise (nearly every body: two of ``bytes.count``)."""
    if (brackets := _brackets(raw)) <= MAX_CONTAINERS:
        return brackets
    text, outside = _outside(raw, NOT_STRUCTURE)
    return int((outside & ((text == ord("[")) | (text == ord("{")))).sum())


def _outside(raw: bytes, dropped: bytes) -> tuple[Any, Any]:
    """``raw`` without the bytes in ``dropped`` and escaped backslashes and quotes, as a numpy array, and where it is
    outside strings (each quote left opens or closes one; a quote counts as inside). Vectorised: a body of megabytes
    must not cost the event loop a Python loop."""
    import numpy  # on large bodies only

    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = numpy.frombuffer(unescaped.translate(None, dropped), dtype=numpy.uint8)
    quotes = text == ord('"')
    return text, (numpy.cumsum(quotes, dtype=numpy.int64) % 2 == 0) & ~quotes


#: Deepest nesting of arrays and objects a body may have: orjson writes JSON at most 255
#: levels deep, and a route may answer with what it was sent (echo).
MAX_JSON_NESTING = 254
TOO_DEEP = f"the body nests arrays and objects deeper than {MAX_JSON_NESTING} levels"
#: Every byte but quotes and brackets: what the nesting of a refused body is read without.
NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))


def opens_deeper(raw: bytes) -> bool:
    """Whether ``raw`` has more than MAX_JSON_NESTING arrays and objects open at some point (strings skipped): a
    parsed body nested too deep to serve, or a refused one, which the parser's own complaint (``failed to allocate
    memory``, ``depth limit exceeded``) would not say is too deep. A body with fewer brackets cannot be."""
    if _brackets(raw) <= MAX_JSON_NESTING:
        return False
    import numpy  # on this rare path only

    text, outside = _outside(raw, NOT_STRUCTURE)
    opens = (text == ord("[")) | (text == ord("{"))
    closes = (text == ord("]")) | (text == ord("}"))
    depth = numpy.cumsum((opens.astype(numpy.int32) - closes) * outside)
    return int(depth.max(initial=0)) > MAX_JSON_NESTING


def _brackets(raw: bytes) -> int:
    return raw.count(b"[") + raw.count(b"{")


class Refused(Exception):
    """An HTTP refusal decided by the gateway before anything is forwarded."""

    def __init__(self, response: Response):
        self.response = response


class Disconnected(Exception):
    """The client went away before its body was read."""


def hot_path(path: str) -> tuple[str, str, str | None] | None:
    """``("route", route, None)`` or ``("infer", model, version or None)`` for a hot path;
    None otherwise. Parameters match Starlette's ``{param}`` (one non-empty segment)."""
    if path.startswith(ROUTES):
        route = path[len(ROUTES) :]
        return ("route", route, None) if route and "/" not in route else None
    if path.startswith(MODELS) and path.endswith(INFER):
        parts = path[len(MODELS) : -len(INFER)].split("/")
        if len(parts) == 1 and parts[0]:
            return "infer", parts[0], None
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return "infer", parts[0], parts[2]
    return None


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; the first of repeated ones, as Starlette's."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


#: Headers whose value decides what a request does, by lower-case name (their names as
#: written). One sent twice leaves which counts to a guess (the first, as Starlette reads
#: headers; a proxy in front may have read the last): a 400 naming it. Two Hosts are also
#: RFC 9112 3.2's 400 (a 403 first where the gateway checks the name, host_refusal).
ONCE = {
    b"host": "Host",
    b"heirloom-deadline-ms": "Heirloom-Deadline-Ms",
    b"idempotency-key": "Idempotency-Key",
    b"authorization": "Authorization",
    b"inference-header-content-length": "Inference-Header-Content-Length",
    b"origin": "Origin",
    b"sec-fetch-site": "Sec-Fetch-Site",
}


def repeated(scope: Scope, headers: dict[str, str]) -> Response | None:
    """The 400 of a request that sends a header of ONCE more than once, or None."""
    if len(headers) == len(scope["headers"]):  # no name twice: nearly every request
        return None
    names = [name for name, _ in scope["headers"]]
    for name, written in ONCE.items():
        if (times := names.count(name)) > 1:
            message = f"header {written} is sent {times} times: send it once"
            return error_response(400, message, field=f"header.{written}")
    return None


async def read_body(receive: Receive, limit: int, refuse: Callable[[int], Response]) -> bytes:
    """The whole body, or Refused (``refuse(size)``) as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(refuse(size))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _codings(scope: Scope, header: bytes) -> list[str]:
    """The codings ``header`` (lower-case) lists over all its lines, in order and lower-cased:
    ``Transfer-Encoding: gzip`` then ``Transfer-Encoding: chunked`` is ``["gzip", "chunked"]``."""
    lines = (value.decode("latin-1") for name, value in scope["headers"] if name == header)
    return [coding.strip().lower() for line in lines for coding in line.split(",") if coding.strip()]


def unread_coding(scope: Scope, reads_body: bool) -> Response | None:
    """The refusal of a body the gateway cannot read as sent, naming the header, or None. The
    HTTP parser decodes the chunks of ``Transfer-Encoding: gzip, chunked`` and hands over the
    gzip bytes as the body (a 400 saying it is not JSON): a transfer coding other than chunked
    alone is 501 (RFC 9112 6.1). Bodies are never decompressed: where the request's body is
    read (``reads_body``), a ``Content-Encoding`` other than identity is 415 (RFC 9110 15.5.16),
    with ``Accept-Encoding: identity``."""
    transfer = _codings(scope, b"transfer-encoding")
    if transfer and transfer != ["chunked"]:
        message = (
            f"header Transfer-Encoding {', '.join(transfer)!r}: the gateway reads a body as sent (Content-Length) or "
            "chunked, in no other transfer coding"
        )
        return error_response(NOT_IMPLEMENTED, message, field="header.Transfer-Encoding")
    content = [coding for coding in _codings(scope, b"content-encoding") if coding != "identity"] if reads_body else []
    if content:
        message = (
            f"header Content-Encoding {', '.join(content)!r}: the gateway does not decompress bodies (send the JSON "
            "uncompressed)"
        )
        headers = {"Accept-Encoding": "identity"}
        return error_response(UNSUPPORTED_MEDIA_TYPE, message, field="header.Content-Encoding", headers=headers)
    return None


#: A slash or backslash encoded in a path: the HTTP server decodes it into a separator, so
#: ``/v1/routes%2F_reload`` was served as ``/v1/routes/_reload`` past a proxy rule on the path as sent.
ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)


def encoded_separator(scope: Scope) -> Response | None:
    """The 400 of a path that encodes a separator (no route, model or page name holds one), or None."""
    raw = scope.get("raw_path") or b""
    if (found := ENCODED_SEPARATOR.search(raw)) is None:
        return None
    message = (
        f"the path {raw.decode('latin-1')[:200]!r} encodes a separator ({found[0].decode()}): no name holds a slash, "
        "and a proxy in front reads the path as sent"
    )
    return error_response(400, message, field="path")


def undecodable_path(scope: Scope) -> Response | None:
    """The 404 of a path whose percent-encoded bytes are not UTF-8, naming them as bytes (``b'\\xff'``),
    or None. No route, model or page name holds such bytes; the HTTP server decoded them to U+FFFD, so
    the error named a ``'\\ufffd'`` the client never sent."""
    raw = scope.get("raw_path") or b""
    if b"%" not in raw:
        return None
    decoded = unquote_to_bytes(raw)
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = (
            f"no such path: {decoded[:200]!r} is not UTF-8 (byte {exc.start}), which no route, model or page name is"
        )
        return error_response(404, message, field="path")
    return None


def undecodable_query(scope: Scope) -> Response | None:
    """The 400 of a query whose percent-encoded bytes are not UTF-8, naming the field and the bytes, or None: they
    were read as U+FFFD, and a console looked up a user '\ufffd' the client never sent (checker h460 F6)."""
    for pair in (scope.get("query_string") or b"").split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            decoded = unquote_to_bytes(part.replace(b"+", b" "))
            try:
                decoded.decode("utf-8")
            except UnicodeDecodeError as exc:
                field = f"query.{unquote_to_bytes(name).decode('utf-8', 'backslashreplace')[:80]}"
                message = f"{field}: {decoded[:200]!r} is not UTF-8 (byte {exc.start})"
                return error_response(400, message, code="INVALID_ARGUMENT", field=field)
    return None


def asterisk(method: str) -> Response:
    """The reply to a request for ``*``: OPTIONS's alone (RFC 9112 3.2.4), which allows nothing there (no CORS, as
    a preflight's 405); another method's is malformed (``GET *`` was a 405 allowing GET: checker v44 F10)."""
    if method == "OPTIONS":
        return method_not_allowed(method, "*", "")
    message = f"the request target * is OPTIONS's alone, not {method}'s: name a path"
    return error_response(400, message, code="INVALID_ARGUMENT", field="path")


def cross_site(scope: Scope, headers: dict[str, str]) -> tuple[str, str] | None:
    """The header, and why, a request that acts looks sent by another site's page in a browser (a forged
    request, CSRF: a form or a fetch needs no preflight with a text/plain body), or None.
    Browsers send Sec-Fetch-Site and Origin; programs (curl, tritonclient, heirloom's
    clients) send neither, and a page of the gateway's own (its consoles) is same-origin. A console's form
    (a page with a query) calls routes, so it acts; its page without one, and the index, are read as /docs is
    (a link from a wiki was refused)."""
    form = scope["path"].startswith(CONSOLES) and scope["query_string"]
    if scope["method"] in SAFE_METHODS and not form:
        return None
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return "Sec-Fetch-Site", f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != headers.get("host"):
        return "Origin", f"Origin {origin[:200]} is not this gateway"
    return None


#: On every reply: a browser reads it as the type it says (a JSON error quoting a path of ``<script>`` is no page),
#: and neither it nor a proxy keeps it (a console's patient record, a user's history: h460 F1).
EVERY_REPLY = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
#: On every page the gateway serves (not the hot JSON paths): no other site may frame it, so
#: a page cannot lay the try-it-out buttons of /docs or a console's form under a user's click.
UNFRAMED = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


def with_headers(send: Send, added: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with ``added`` added to the response's headers."""

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *added]
        await send(message)

    return sending


def refusal(exc: Refused | heirloom.RemoteError) -> Response:
    """The HTTP reply of a refusal by the gateway or by the daemon."""
    return exc.response if isinstance(exc, Refused) else remote_error_response(exc)


class Front:
    """An ASGI app: the hot paths answered by ``route`` and ``infer``, the rest by ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        route: Callable[[str, dict[str, str], Receive], Awaitable[Answer]],
        infer: Callable[[str, str | None, dict[str, str], Receive], Awaitable[Answer]],
        hosts: frozenset[str] | None = None,
    ):
        self.app = app
        self.route = route
        self.infer = infer
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope) if scope["type"] == "http" else {}
        send = with_headers(send, EVERY_REPLY) if scope["type"] == "http" else send
        if scope["type"] == "http" and (foreign := host_refusal(scope["headers"], self.hosts)) is not None:
            refused = error_response(403, f"refused: {foreign}", code="PERMISSION_DENIED", field="header.Host")
            await refused(scope, receive, send)
            return
        malformed = (
            (
                repeated(scope, headers)
                or encoded_separator(scope)
                or undecodable_path(scope)
                or undecodable_query(scope)
            )
            if scope["type"] == "http"
            else None
        )
        if malformed is not None:
            await malformed(scope, receive, send)
            return
        forged = cross_site(scope, headers) if scope["type"] == "http" else None
        if forged is not None:
            header, why = forged
            message = f"refused a request another site's page sent through a browser ({why})"
            refused = error_response(403, message, code="PERMISSION_DENIED", field=f"header.{header}")
            await refused(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("raw_path") == b"*":  # OPTIONS *: RFC 9110's, no path "/*" (h460 F5)
            await asterisk(scope["method"])(scope, receive, send)
            return
        hot = hot_path(scope["path"]) if scope["type"] == "http" else None
        # only the hot paths' POSTs read a body: a GET's Content-Encoding is about nothing (it was a 415)
        coded = unread_coding(scope, hot is not None and scope["method"] == "POST") if scope["type"] == "http" else None
        if coded is not None:
            await coded(scope, receive, send)
            return
        if hot is None:
            await self.app(scope, receive, with_headers(send, UNFRAMED) if scope["type"] == "http" else send)
            return
        if scope["method"] != "POST":
            await method_not_allowed(scope["method"], scope["path"], "POST")(scope, receive, send)
            return
        kind, name, version = hot
        try:
            if kind == "route":
                body, extra = await self.route(name, headers, receive)
            else:
                body, extra = await self.infer(name, version, headers, receive)
        except (Refused, heirloom.RemoteError) as exc:
            await refusal(exc)(scope, receive, send)
            return
        except Disconnected:
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours answers as JSON, and the gateway serves on
            await failure_response(exc)(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *extra]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
