"""The gateway's ASGI application: OIP v2, every route as JSON, OpenAPI, consoles.

One ``heirloom.AsyncClient`` per identity (one in all without tokens) carries every
request: its socket lives on the gateway's event loop, handlers ``await`` their replies,
so any number of HTTP requests are in flight on one ZeroMQ connection, the event loop
never blocks on the daemon, and no thread hand-over is paid per request. The two hot
paths (a route's JSON, an OIP infer) are served in front of Starlette (``front.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import zmq
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import heirloom
from heirloom_plugins.gateway import consoles as console_pages
from heirloom_plugins.gateway import oip
from heirloom_plugins.gateway.auth import bearer, match
from heirloom_plugins.gateway.binary import decode as decode_binary
from heirloom_plugins.gateway.docs import docs_page
from heirloom_plugins.gateway.errors import (
    PAYLOAD_TOO_LARGE,
    about_a_row,
    error_response,
    http_error,
    remote_error_response,
    reworded,
    unhandled_error,
)
from heirloom_plugins.gateway.front import (
    TOO_DEEP,
    Answer,
    Front,
    NotServed,
    Receive,
    Refused,
    from_json,
    opens_deeper,
    read_body,
    refusal,
    to_json,
)
from heirloom_plugins.gateway.openapi import openapi
from heirloom_plugins.gateway.routes import Routes, RouteTable
from heirloom_plugins.gateway.rows import Rows

log = logging.getLogger("heirloom.gateway")
#: Seconds between two warnings of requests refused for an unknown bearer token.
UNKNOWN_TOKEN_LOG_S = 60.0
DEADLINE_HEADER = "heirloom-deadline-ms"
#: A Heirloom-Deadline-Ms value: decimal digits, a fraction if any (float() also reads
#: "1_000", "1e3" and "nan", which no HTTP client means as a number of milliseconds).
MILLISECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
#: The request's idempotency key (the wire's ``idempotency_key``: a retry meets the first attempt).
IDEMPOTENCY_HEADER = "idempotency-key"
#: Where the daemon's refusal of a key points (the wire's field), told over HTTP as the header sent.
WIRE_IDEMPOTENCY_FIELD = "header.idempotency_key"
VERSION_HEADER = b"heirloom-model-version"
#: The protocol extensions served, under Triton's names: binary tensors on infer requests (binary.py).
EXTENSIONS = ["binary_tensor_data"]
#: Seconds a ``_stats`` reply (served versions) is reused: it is not free to compute.
STATS_TTL = 1.0
Headers = Mapping[str, str]  # by lower-case name: Starlette's Headers, or front.headers_of


def idempotency_key(headers: Headers) -> str | None:
    """The ``Idempotency-Key`` header read as UTF-8, so that a key is the same string it is over
    ZeroMQ (HTTP servers hand header bytes over as latin-1: 200 "é" read as 400 characters);
    its length checked here, as the wire's refusal speaks of the wire's field and of integers."""
    raw = headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    try:
        key = raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"header Idempotency-Key is not UTF-8 (byte {exc.start}: {raw[exc.start].encode('latin-1')!r})"
        raise Refused(error_response(400, message, field="header.Idempotency-Key")) from None
    if not 0 < len(key) <= heirloom.IDEMPOTENCY_KEY_LIMIT:
        message = f"header Idempotency-Key must be 1 to {heirloom.IDEMPOTENCY_KEY_LIMIT} characters, got {len(key)}"
        raise Refused(error_response(400, message, field="header.Idempotency-Key"))
    return key


#: An OIP model looked up while the daemon has no apis yet and is not ready: a 503, as its routes answer then.
STARTING_MODELS = "the daemon is starting; no models yet"


def serves(ready: dict[str, Any]) -> bool:
    """Whether a ``_ready`` reply says requests can be answered now: ``serving`` (a broker
    with one worker lost and being replaced still serves on the others), else ``ready``."""
    return bool(ready.get("serving", ready.get("ready")))


class Gateway:
    """The state behind the routes: connections to the daemon, its route table, consoles."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 30.0,
        curve_server_key: Path | None = None,
        tokens: dict[str, Path] | None = None,
        consoles: dict[str, heirloom.Console] | None = None,
        context: zmq.Context | None = None,
    ):
        """``context``: the ZeroMQ context to open connections in (shared with an in-process
        daemon reached over ``inproc://``); by default each connection has its own."""
        self.address = address
        self.context = context
        self.timeout = timeout
        self.curve_server_key = curve_server_key
        self.tokens = tokens or {}
        self.consoles = consoles or {}
        self._clients: dict[str | None, heirloom.AsyncClient] = {}
        self._stats: dict[str, Any] = {}
        self._stats_at = -STATS_TTL
        self.rows = Rows()
        #: One read serves every request waiting on it, so it may take the longest budget, --timeout.
        self.routes = Routes(lambda client: self.body(client, "_routes", None, timeout), self.late_table)
        #: Whose connection reads ``_routes`` for a page that needs no token (/openapi.json,
        #: /docs): with a Curve daemon, the first token's key; a connection without one gets no reply.
        self.anonymous = next(iter(self.tokens)) if self.tokens and curve_server_key is not None else None
        #: Requests refused for an unknown token since the last warning, and when that was: guesses are said.
        self._unknown_tokens, self._unknown_said_at = 0, -UNKNOWN_TOKEN_LOG_S

    # -- connections ---------------------------------------------------------------------
    def client(self, token: str | None) -> heirloom.AsyncClient:
        """The connection of one identity, opened on first use (on the event loop)."""
        if token not in self._clients:
            curve = None
            if token is not None and self.curve_server_key is not None:
                curve = heirloom.CurveClient(self.tokens[token], self.curve_server_key)
            self._clients[token] = heirloom.AsyncClient(
                self.address, timeout=self.timeout, curve=curve, context=self.context
            )
        return self._clients[token]

    def caller(self, headers: Headers) -> heirloom.AsyncClient:
        """The connection of the request's identity; Refused (401) without a known token."""
        if not self.tokens:
            return self.client(None)
        token = bearer(headers.get("authorization"))
        known = match(self.tokens, token) if token else None
        if known is None:
            if token is not None:
                self._unknown_token()
            message = "this gateway needs 'Authorization: Bearer TOKEN'" if token is None else "unknown bearer token"
            raise Refused(error_response(401, message, code="UNAUTHENTICATED", headers={"WWW-Authenticate": "Bearer"}))
        return self.client(known)

    def _unknown_token(self) -> None:
        """Count a request with an unknown token; warn at most once a minute with the count (checker 272: 4,000
        guesses a second were refused and never said; a proxy in front rate-limits them, the gateway does not)."""
        self._unknown_tokens += 1
        if (now := time.monotonic()) - self._unknown_said_at >= UNKNOWN_TOKEN_LOG_S:
            log.warning(
                "refused %d request(s) with an unknown bearer token in the last %.0f s (someone guessing tokens? "
                "rate-limit the gateway in its proxy)",
                self._unknown_tokens,
                min(now - self._unknown_said_at, UNKNOWN_TOKEN_LOG_S),
            )
            self._unknown_tokens, self._unknown_said_at = 0, now

    def use_tokens(self, tokens: dict[str, Path]) -> None:
        """Serve ``tokens`` from now on (the file read again on SIGHUP): a token removed, or mapped to
        another key file, has its connection closed (its calls in flight fail, 503), so that no request
        travels on with a key the file no longer gives it."""
        stale = [token for token in self._clients if token is not None and tokens.get(token) != self.tokens[token]]
        for token in stale:
            self._clients.pop(token).close()
        self.tokens = tokens
        if self.anonymous is not None:
            self.anonymous = self.anonymous if self.anonymous in tokens else next(iter(tokens))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- calling -------------------------------------------------------------------------
    async def request(
        self,
        client: heirloom.AsyncClient,
        route: str,
        body: Any,
        timeout: float,
        idempotency_key: str | None = None,
        budget: float | None = None,
    ) -> heirloom.Reply:
        """One call of ``route``. When the client itself stops waiting, its message names the
        daemon's address and asks whether the daemon runs: an HTTP client is told instead that
        the request's budget ran out (the daemon's own DEADLINE_EXCEEDED replies pass as sent).
        No message an HTTP client reads names the daemon's address (a refused Curve key's did).
        ``budget``: the request's, when ``timeout`` is what is left of it (a row sent again)."""
        try:
            return await client.request(route, body, timeout=timeout, idempotency_key=idempotency_key)
        except heirloom.RemoteError as exc:
            message = exc.message
            if exc.code == "DEADLINE_EXCEEDED" and self.address in message:
                said = timeout if budget is None else budget
                message = self.late_table(said) if route == "_routes" else self.late(route, said)
            message = message.replace(f" at {self.address}", "").replace(self.address, "the daemon")
            raise reworded(exc, message, exc.field) from None

    def late(self, what: str, timeout: float) -> str:
        """What a request is told when its budget ran out waiting for ``what``."""
        return (  # a slow daemon may still run it: a feedback answered 504 was recorded 4 s later (h460 F2)
            f"no reply to {what} within the request's budget of {timeout * 1000:g} ms "
            f"(Heirloom-Deadline-Ms, at most the gateway's --timeout of {self.timeout:g} s); the request may "
            "still run: send a write again only with the same Idempotency-Key"
        )

    def late_table(self, timeout: float) -> str:
        return self.late("the daemon's route table", timeout)  # read before any route

    async def body(self, client: heirloom.AsyncClient, route: str, body: Any, timeout: float) -> Any:
        return (await self.request(client, route, body, timeout)).body

    async def row(
        self, client: heirloom.AsyncClient, route: str, row: int, body: Any, left: float, budget: float
    ) -> heirloom.Reply:
        """Row ``row`` of an infer request as one call, within the ``left`` seconds of the
        request's ``budget``; a refusal about the row says which row it was."""
        if left <= 0:  # spent waiting for room at the daemon
            raise heirloom.DeadlineExceeded(self.late(route, budget))
        try:
            return await self.request(client, route, body, left, budget=budget)
        except heirloom.RemoteError as exc:
            if not about_a_row(exc):
                raise
            raise reworded(exc, f"row {row}: {exc.message}", exc.field) from None

    def deadline(self, headers: Headers) -> float:
        """Seconds to wait: the ``Heirloom-Deadline-Ms`` header, at most the gateway's timeout."""
        raw = headers.get(DEADLINE_HEADER)
        if raw is None:
            return self.timeout
        milliseconds = float(raw) if MILLISECONDS.fullmatch(raw.strip()) else 0.0  # past 1e308 digits: inf, cut below
        if not milliseconds > 0:  # HTTP hands bytes over as latin-1: non-ASCII is shown as bytes, not letters
            got = repr(raw) if raw.isascii() else f"{raw.encode('latin-1')!r:.80}, not ASCII"
            message = (
                f"header Heirloom-Deadline-Ms must be a number of milliseconds > 0 in digits (250, 2.5), got {got}"
            )
            raise Refused(error_response(400, message, field="header.Heirloom-Deadline-Ms"))
        return min(milliseconds / 1000, self.timeout)

    async def json_body(self, headers: Headers, receive: Receive, limit: int, where: str, tensors: bool = False) -> Any:
        """The request's JSON, refused (413) past ``limit`` bytes: on its Content-Length before
        it is read, else as soon as it is longer; 408 when it takes longer than ``timeout`` to
        arrive; with ``tensors`` (an infer request), Triton's binary tensor extension is accepted."""
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise Refused(_too_large(int(declared), limit, where))
        try:  # a client trickling its body holds a connection and a buffer: at most --timeout
            async with asyncio.timeout(self.timeout):
                raw = await read_body(receive, limit, lambda _: _too_large(None, limit, where))
        except TimeoutError:
            message = f"the request body did not arrive within {self.timeout:g} s (--timeout)"
            closing = {"Connection": "close"}  # RFC 9110 15.5.9: the connection ends, the rest of the body unread
            refused = error_response(408, message, code="DEADLINE_EXCEEDED", field="body", headers=closing)
            raise Refused(refused) from None
        binary = headers.get("inference-header-content-length")
        if binary is not None:
            if not tensors:
                message = f"{where} takes JSON; binary tensors (Inference-Header-Content-Length) are for infer"
                raise Refused(error_response(400, message, field="header.Inference-Header-Content-Length"))
            try:
                return decode_binary(raw, binary.strip())
            except oip.InferError as exc:
                raise Refused(error_response(400, str(exc), field=exc.field)) from None
        if not raw.strip():
            return None
        try:
            value = from_json(raw)
        except NotServed as exc:
            raise Refused(error_response(400, str(exc), field="body")) from None
        except ValueError as exc:
            message = TOO_DEEP if opens_deeper(raw) else f"the body is not JSON: {exc}"
            raise Refused(error_response(400, message, field="body")) from None
        if opens_deeper(raw):
            raise Refused(error_response(400, TOO_DEEP, field="body"))
        return value

    # -- plain routes --------------------------------------------------------------------
    async def route(self, name: str, headers: Headers, receive: Receive) -> Answer:
        """``POST /v1/routes/{name}`` (a hot path, served by :class:`Front`)."""
        client = self.caller(headers)
        timeout = self.deadline(headers)
        table = await self.routes.table(client, timeout=timeout)
        if name not in table.routes:
            table = await self.routes.table(client, fresh=True, timeout=timeout)
        body = await self.json_body(headers, receive, table.max_payload(name), name)
        try:
            reply = await self.request(client, name, body, timeout, idempotency_key=idempotency_key(headers))
        except heirloom.RemoteError as exc:
            if exc.field == "header.route":  # the wire's place of the name, which HTTP carries in the path
                raise reworded(exc, exc.message, "path.route") from None
            if exc.field == WIRE_IDEMPOTENCY_FIELD:  # one spelling per header: the one the client sent
                message = exc.message.replace("idempotency_key", "Idempotency-Key", 1)
                raise reworded(exc, message, "header.Idempotency-Key") from None
            raise
        return to_json(reply.body), [(VERSION_HEADER, reply.version.encode())] if reply.version else []

    async def route_table(self, request: Request) -> Response:
        table = await self.routes.table(self.caller(request.headers), timeout=self.deadline(request.headers))
        return JSONResponse({"routes": list(table.routes.values())})

    # -- Open Inference Protocol v2 ------------------------------------------------------
    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "heirloom", "version": heirloom.__version__, "extensions": EXTENSIONS})

    async def live(self, request: Request) -> Response:
        health = await self.body(self.caller(request.headers), "_health", None, self.deadline(request.headers))
        return JSONResponse({"live": bool(health.get("live"))})

    async def ready(self, request: Request) -> Response:
        ready = await self.readiness(self.caller(request.headers), request.headers)
        serving = bool(ready is not None and serves(ready))
        return JSONResponse({"ready": serving}, status_code=200 if serving else 503)

    async def readiness(self, client: heirloom.AsyncClient, headers: Headers) -> dict[str, Any] | None:
        """``_ready``'s reply, or None when the daemon does not answer in time: a readiness
        probe reads not ready (503), not a gateway timeout (504)."""
        try:
            return await self.body(client, "_ready", None, self.deadline(headers))
        except heirloom.RemoteError as exc:
            if exc.code in ("DEADLINE_EXCEEDED", "UNAVAILABLE"):
                return None
            raise

    async def _model(self, name: str, wanted: str | None, headers: Headers) -> tuple[Model, heirloom.AsyncClient]:
        """The OIP model named in the path (404 otherwise); a version in the path must be
        the served version's number (``7`` for ``project/model@7``)."""
        client = self.caller(headers)
        timeout = self.deadline(headers)
        table = await self.routes.table(client, timeout=timeout)
        if name not in table.models:
            table = await self.routes.table(client, fresh=True, timeout=timeout)
        entry = table.models.get(name)
        if entry is None and not table.apis and not serves(await self.readiness(client, headers) or {}):
            # a daemon starting behind --connect lists the kernel's routes only: its models are not gone (h432 F1)
            raise heirloom.Unavailable(STARTING_MODELS, retryable=True, retry_after_ms=500)
        if entry is None:
            known = ", ".join(sorted(table.models)) or "none"
            raise Refused(error_response(404, f"no model {name!r} (models: {known})", field="path.name"))
        model = Model(name, entry, table.signatures[name])
        if wanted is not None:
            served = oip.short_version(await self.served_version(client, entry, headers))
            if wanted != served:
                message = f"model {name!r} version {wanted!r} is not served (serving {served or 'no version'})"
                raise Refused(error_response(404, message, field="path.version"))
        return model, client

    async def served_version(self, client: heirloom.AsyncClient, entry: dict[str, Any], headers: Headers) -> str | None:
        """The model's served version from ``_stats``, read at most once a second."""
        now = time.monotonic()
        if now - self._stats_at > STATS_TTL:
            self._stats = await self.body(client, "_stats", None, self.deadline(headers))
            self._stats_at = now
        return (self._stats.get("models", {}).get(entry["model"]) or {}).get("version")

    async def _path_model(self, request: Request) -> tuple[Model, heirloom.AsyncClient]:
        params = request.path_params
        return await self._model(params["name"], params.get("version"), request.headers)

    async def model_metadata(self, request: Request) -> Response:
        model, client = await self._path_model(request)
        version = await self.served_version(client, model.entry, request.headers)
        return JSONResponse(oip.metadata(model.name, model.entry, model.signature, version))

    async def model_ready(self, request: Request) -> Response:
        try:
            model, client = await self._path_model(request)
        except heirloom.RemoteError as exc:  # no route table: the daemon does not answer, a probe reads 503
            if exc.code not in ("DEADLINE_EXCEEDED", "UNAVAILABLE"):
                raise
            return JSONResponse({"name": request.path_params["name"], "ready": False}, status_code=503)
        ready = await self.readiness(client, request.headers)
        component = f"models.{model.entry['model']}"
        is_ready = ready is not None and serves(ready) and ready.get("components", {}).get(component, True)
        return JSONResponse({"name": model.name, "ready": bool(is_ready)}, status_code=200 if is_ready else 503)

    async def infer(self, name: str, version: str | None, headers: Headers, receive: Receive) -> Answer:
        """``POST /v2/models/{name}[/versions/{version}]/infer`` (a hot path, served by :class:`Front`)."""
        model, client = await self._model(name, version, headers)
        timeout = self.deadline(headers)
        payload = await self.json_body(headers, receive, int(model.entry["max_payload"]) * 4, name, tensors=True)
        try:
            bodies = oip.rows(payload, model.signature)
            route = model.entry["name"]
            if len(bodies) == 1:  # no task per row when there is one
                replies = [await self.row(client, route, 0, bodies[0], timeout, timeout)]
            else:  # a large tensor must not fill the route's queue by itself, nor fail for the daemon's room
                replies = await self.rows.all(
                    lambda i, left: self.row(client, route, i, bodies[i], left, timeout), len(bodies), timeout
                )
            result = oip.response(name, model.signature, [r.body for r in replies], replies[0].version, payload)
        except oip.InferError as exc:
            raise Refused(error_response(400, str(exc), field=exc.field)) from None
        return to_json(result), []

    # -- documents and pages -------------------------------------------------------------
    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(openapi(await self.public_table(request), bool(self.tokens)))

    async def docs(self, request: Request) -> Response:
        """The page, its ``{version}`` fields filled with each model's served version (a form
        that sent ``{version}`` as it is was a 404); a daemon that will not say leaves them empty."""
        table = await self.public_table(request)
        client, served = self.client(self.anonymous), {}
        try:
            for name, entry in table.models.items():
                served[name] = oip.short_version(await self.served_version(client, entry, request.headers))
        except heirloom.RemoteError as exc:
            log.info("/docs: the served versions are unknown (_stats: %s)", exc.code)
        return HTMLResponse(docs_page(openapi(table, bool(self.tokens), served)))

    async def public_table(self, request: Request) -> RouteTable:
        """The table for the pages that need no token, read within the request's budget; with a
        Curve daemon on the first token's connection whose key it admits (a first key it refused
        made /openapi.json and /docs 401 for everyone)."""
        timeout = self.deadline(request.headers)
        names = list(self.tokens) if self.anonymous is not None else [None]
        start = names.index(self.anonymous)  # each request counts its own tries: others move the start meanwhile
        order = names[start:] + names[:start]
        for name in order[:-1]:
            try:
                table = await self.routes.table(self.client(name), timeout)
            except heirloom.RemoteError as refused:
                if refused.code != "UNAUTHENTICATED":
                    raise
                place = names.index(name) + 1
                log.warning("the daemon refuses the Curve key of token %d of [tokens]: trying the next", place)
                continue
            self.anonymous = name  # where the next request starts
            return table
        table = await self.routes.table(self.client(order[-1]), timeout)  # its refusal is the reply
        self.anonymous = order[-1]
        return table

    async def console_index(self, request: Request) -> Response:
        table = await self.routes.table(self.caller(request.headers), self.deadline(request.headers))
        return HTMLResponse(console_pages.index(console_pages.mounted(self.consoles, table)))

    async def console(self, request: Request) -> Response:
        client = self.caller(request.headers)
        sent = Counter(name for name, _ in request.query_params.multi_items())
        if twice := next((name for name, times in sent.items() if times > 1), None):  # as a key or header twice
            message = f"query parameter {twice[:80]!r} is sent {sent[twice]} times: send it once (which one counts "
            message += "would be a guess, and a proxy in front may have read the other)"
            return error_response(400, message, field=f"query.{twice[:80]}")
        api = request.path_params["api"]
        timeout = self.deadline(request.headers)
        table = await self.routes.table(client, timeout)
        found = console_pages.mounted(self.consoles, table).get(api)
        if found is None:
            return HTMLResponse(console_pages.missing(api), status_code=404)

        loop = asyncio.get_running_loop()

        def call_route(route: str, body: Any) -> Any:  # from the render thread, through the loop
            return asyncio.run_coroutine_threadsafe(self.body(client, route, body, timeout), loop).result()

        page = heirloom.ConsoleRequest(
            api=api,
            query=dict(request.query_params),
            call=lambda method, body: call_route(f"{api}.{method}", body),
            call_route=call_route,
            routes=table.routes,
        )
        try:
            html = await run_in_threadpool(found.render, page)
        except heirloom.RemoteError as error:
            status = remote_error_response(error).status_code
            return HTMLResponse(console_pages.failed(found, api, error), status_code=status)
        return HTMLResponse(console_pages.layout(found, api, html))


@attrs.frozen
class Model:
    """An OIP model of the current route table: its name, route entry and tensors."""

    name: str
    entry: dict[str, Any]
    signature: oip.Signature


def _too_large(size: int | None, limit: int, where: str) -> Response:
    """413 for a body of ``size`` bytes (its Content-Length), or None: a body cut once it
    passed ``limit``, whose whole size is not known."""
    if size is None:
        message = f"the body is over {limit} bytes, the most {where} accepts"
    else:
        message = f"the body is {size} bytes; {where} accepts at most {limit}"
    return error_response(PAYLOAD_TOO_LARGE, message, field="body")


def _guarded(handler: Any) -> Any:
    """Turn Refused and the daemon's refusals into their HTTP replies."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except (Refused, heirloom.RemoteError) as exc:
            return refusal(exc)

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(
    gateway: Gateway, daemon: heirloom.LoopDaemon | None = None, hosts: frozenset[str] | None = None
) -> Front:
    """The gateway's ASGI app: the hot paths in :class:`Front`, the rest in Starlette.
    ``daemon`` (one the gateway runs in its process) is served from the app's event loop
    from start-up, and drained at shutdown, once the HTTP requests in flight are answered.
    ``hosts``: the Host header names it answers (None: any)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if daemon is not None:
            daemon.attach()
        gc.freeze()  # what start-up made lives on: the full collections a body of many arrays sets off skip it
        try:
            yield
        finally:
            if daemon is not None:
                await daemon.drain()
            gateway.close()

    g = gateway
    table = [
        ("/v2", g.server_metadata, "GET"),
        ("/v2/health/live", g.live, "GET"),
        ("/v2/health/ready", g.ready, "GET"),
        ("/v2/models/{name}", g.model_metadata, "GET"),
        ("/v2/models/{name}/ready", g.model_ready, "GET"),
        ("/v2/models/{name}/versions/{version}", g.model_metadata, "GET"),
        ("/v2/models/{name}/versions/{version}/ready", g.model_ready, "GET"),
        ("/v1/routes", g.route_table, "GET"),
        ("/openapi.json", g.openapi_json, "GET"),
        ("/docs", g.docs, "GET"),
        ("/console", g.console_index, "GET"),
        ("/console/{api}", g.console, "GET"),
    ]
    routes = [Route(path, _guarded(handler), methods=[method]) for path, handler, method in table]
    routes.append(Route("/", lambda request: RedirectResponse("/console"), methods=["GET"]))
    handlers = {HTTPException: http_error, Exception: unhandled_error}
    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    starlette.router.redirect_slashes = False  # POST /v1/routes/ is an unknown path (404), not a 307 elsewhere
    return Front(starlette, route=g.route, infer=g.infer, hosts=hosts)
