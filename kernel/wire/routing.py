"""Routes as the daemon runs them: the route table, request decoding, and admission.

A request passes here between the I/O loop reading its frames and a handler running
it: its route is looked up (NOT_FOUND with "did you mean"), its body checked against
the route's limits and input class and decoded into a :class:`Call`, and then admitted
(bounded queue per route, the resource manager's gate) or refused RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import numbers
import re
import time
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs

from heirloom.converter import type_name
from heirloom.core.components import ROUTE_LIMITS, Api, Resources, Route
from heirloom.core.errors import HeirloomError
from heirloom.core.schema import did_you_mean
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.wire import manager_calls
from heirloom.wire.batching import Batcher
from heirloom.wire.bodies import unpack_body
from heirloom.wire.call import Call, Complete, named, plugin_failure
from heirloom.wire.headers import attach_buffers
from heirloom.wire.inputs import BODY_TYPES, MAX_SCHEMA_DEPTH, InputValidator, json_schema, unsupported_field, wire_type
from heirloom.wire.protocol import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    RequestError,
    cut,
    decoding_error,
)
from heirloom.wire.stats import RouteStats

log = logging.getLogger("heirloom.server")


#: Why a request is UNAVAILABLE while the daemon starts (no routes installed yet).
STARTING = "the daemon is starting; no routes yet"


def draining_error() -> RequestError:
    """A request to a draining daemon (or broker): retryable, on another instance, soon."""
    return RequestError(UNAVAILABLE, "the daemon is draining; retry on another instance", retry_after_ms=100)


class Endpoint:
    """A route as the daemon runs it: validation, limits, stats, and where it executes."""

    __slots__ = (
        "admin",
        "batcher",
        "builtin",
        "code",
        "inline",
        "name",
        "owner",
        "pending",
        "route",
        "stats",
        "validate",
    )

    def __init__(self, name: str, route: Route, builtin: bool = False):
        self.name = name
        self.route = route
        self.builtin = builtin
        self.inline = route.inline
        self.admin = route.admin
        self.validate = (
            None
            if route.input is None
            else no_body(name)
            if route.input is NO_INPUT
            else InputValidator(route.input, lambda: named(self))
        )
        self.stats = RouteStats()
        self.pending = 0
        self.batcher: Batcher | None = None
        #: ``api type 'x', plugin NAME (DIST VERSION)``: whose bug a failure of the handler is, for the log.
        self.owner: str | None = None
        #: ``(module, whose, plugin label)`` of the system's plugins' code, for ``call.whose_bug``.
        self.code: list[tuple[str, str, str]] = []

    def describe(self) -> dict[str, Any]:
        route = self.route
        return {
            "name": self.name,
            "description": route.description,
            "batched": route.batched,
            "max_batch": route.max_batch if route.batched else 1,
            "max_wait_ms": float(route.max_wait_ms) if route.batched else 0.0,
            "max_payload": route.max_payload,
            "inline": route.inline or self.builtin,
            "admin": self.admin,
            "input": NO_BODY if self.builtin else json_schema(route.input),
            "output": json_schema(route.output),
            "model": route.model,
        }


#: The input of a built-in route: nil, nothing else (check_no_body refuses any other body).
NO_BODY = {"type": "null"}
#: A plugin route's ``input`` when it takes no body: nil, nothing else.
NO_INPUT = type(None)


def no_body(name: str) -> Callable[[Any], None]:
    """The validator of a route declared with ``input=type(None)``: any body but nil is refused."""

    def validate(body: Any) -> None:
        if body is not None:
            said = f"body: {name} takes no body (send nil), got {wire_type(body)}"  # led by its field, as batched
            raise RequestError(INVALID_ARGUMENT, said, "body")

    return validate


#: A route's own name (after ``api.``): it is a part of a URL path at an HTTP gateway.
ROUTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


def api_routes(where: str, api: Any) -> list[Route]:
    """``api.routes()``, checked: a list of ``Route`` with distinct, well-formed names; a
    HeirloomError naming the component (``where``) otherwise, not a bare TypeError at start."""
    try:
        routes = api.routes()
    except Exception as exc:
        log.debug("%s: routes() failed", where, exc_info=exc)  # a plugin bug's traceback, as a start() failure's
        raise HeirloomError(f"{where}: routes() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(routes, list | tuple) or not all(isinstance(route, Route) for route in routes):
        raise HeirloomError(f"{where}: routes() must return a list of heirloom.Route, got {routes!r:.200}")
    names = [route.name for route in routes]
    for name, route in zip(names, routes, strict=True):
        if not isinstance(name, str) or not ROUTE_NAME.fullmatch(name):
            raise HeirloomError(f"{where}: route name {name!r} must be 1-100 ASCII letters, digits, '_' or '-'")
        if names.count(name) > 1:
            raise HeirloomError(f"{where}: {names.count(name)} routes are named {name!r}")
        if problem := _declaration_problem(route):
            raise HeirloomError(f"{where}: route {name!r}: {problem}")
    return list(routes)


#: ``heirloom.Api``'s own methods, which the kernel calls: a route handler by one of these names replaces one.
API_HOOKS = frozenset({"check", "evaluate", "feedback_log", "ready", "routes", "start", "stop"})


def _declaration_problem(route: Route) -> str | None:
    """What is wrong with a route's declaration, said at start: a non-attrs ``input`` stopped
    ``serve`` naming no route, and ``max_payload = -1`` refused every body as the client's fault."""
    handler = route.handler
    if not callable(handler) or (route.items is not None and not callable(route.items)):
        return "handler and items must be callables"
    if isinstance(getattr(handler, "__self__", None), Api) and getattr(handler, "__name__", "") in API_HOOKS:
        hook = handler.__name__
        return (
            f"its handler {hook}() overrides heirloom.Api.{hook}, which the kernel calls: give the method another name"
        )
    if route.input not in (None, NO_INPUT) and not _attrs_class(route.input):  # an instance passes attrs.has too
        return f"input must be an attrs class, type(None) (no body) or None (any body), not {route.input!r:.200}"
    if route.output is not None and not _reply_type(route.output):  # an instance broke every _routes
        return f"output must be an attrs class, list[A] of one, or a union A | B of those, not {route.output!r:.200}"
    if route.input not in (None, NO_INPUT) and (unsupported := unsupported_field(route.input)):
        field, kind = unsupported  # cattrs' "Unsupported type: ... Register a structure hook" named no route
        said = f"input field {field} is a {type_name(kind)}, which no request body can carry"
        return f"{said} (a body's fields may be {BODY_TYPES})"
    for side, kind in (("input", route.input), ("output", route.output)):  # a broker refused the worker's heartbeat
        if (levels := _depth(json_schema(kind))) > MAX_SCHEMA_DEPTH:
            return f"{side} schema nests {levels} levels, at most {MAX_SCHEMA_DEPTH} (PLUGINS.md, Routes)"
    for limit in ("max_batch", "max_payload"):
        if type(value := getattr(route, limit)) is not int or not 1 <= value <= ROUTE_LIMITS[limit]:
            return f"{limit} must be an int from 1 to {ROUTE_LIMITS[limit]:,}, not {value!r}"
    wait, longest = route.max_wait_ms, ROUTE_LIMITS["max_wait_ms"]
    if type(wait) not in (int, float) or not 0 <= wait <= longest:  # NaN is neither
        return f"max_wait_ms must be a number from 0 to {longest:,}, not {wait!r}"
    return None


def _depth(schema: Any) -> int:
    """How many levels a route's schema nests, arrays and maps (``[[1]]``: two), counted without recursion."""
    deepest, stack = 0, [(schema, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list | tuple):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _attrs_class(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def _reply_type(tp: Any) -> bool:
    """Whether ``tp`` is a route's ``output`` as documented: an attrs class, ``list[A]``, or a union of
    those (``None`` among them: a reply that may be nil), which ``_routes`` and the gateway describe."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return all(arg is NO_INPUT or _reply_type(arg) for arg in args)
    return _attrs_class(tp) or (origin is list and len(args) == 1 and _attrs_class(args[0]))


def plugin_code(system: System) -> list[tuple[str, str, str]]:
    """``(module, whose, plugin label)``: the module of each component class no other type shares (``model type
    'x', plugin P``), then each plugin's own module and those under it (``plugin P``), for ``call.whose_bug``."""
    types: dict[str, set[tuple[str, str]]] = {}
    plugins: dict[str, tuple[str, str]] = {}
    for spec in system.specs:
        if (info := system.plugins.provider(spec.kind, spec.use)) is not None:
            types.setdefault(spec.cls.__module__, set()).add(
                (f"{spec.kind} type {spec.use!r}, plugin {info.label}", info.label)
            )
            plugins[info.module.partition(":")[0]] = (f"plugin {info.label}", info.label)
    unique = [(module, *next(iter(owners))) for module, owners in types.items() if len(owners) == 1]
    return unique + [(module, whose, label) for module, (whose, label) in plugins.items()]


class Router:
    """The route table: ``api.method`` names (and the kernel's ``_`` routes) to endpoints."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}

    def add(self, name: str, route: Route, builtin: bool = False) -> Endpoint:
        endpoint = self.endpoints[name] = Endpoint(name, route, builtin)
        return endpoint

    def install(self, system: System, complete: Complete, settings: ServerSettings) -> list[str]:
        """Add every route of the system's apis; batched ones get a batcher thread (waiting for no
        more requests than ``max_queue`` holds); those named in ``admin_routes`` become admin routes."""
        added = []
        uses = {spec.name: spec.use for spec in system.specs if spec.kind == "api"}
        whose = {spec.name: system.whose(spec) for spec in system.specs if spec.kind == "api"}  # names its plugin
        code = plugin_code(system)
        for api_name, api in system.apis().items():
            for route in api_routes(whose.get(api_name, f"apis.{api_name}"), api):
                endpoint = self.add(f"{api_name}.{route.name}", route)
                if (plugin := system.plugins.provider("api", use := uses.get(api_name, ""))) is not None:
                    endpoint.owner, endpoint.code = f"api type {use!r}, plugin {plugin.label}", code
                if not (route.description or "").strip():  # served all the same; check_api refuses it
                    log.warning("route %s has no description: _routes and OpenAPI say nothing of it", endpoint.name)
                if route.batched:
                    endpoint.batcher = Batcher(endpoint.name, route, endpoint.stats, complete, settings.max_queue)
                    endpoint.stats.batched = True
                added.append(endpoint.name)
        warn_frame_limit(self.endpoints.values(), settings.max_message_bytes)
        for name in settings.admin_routes:
            if name not in added:
                raise HeirloomError(f"[server] admin_routes: no api route {name!r}{did_you_mean(name, added)}")
            self.endpoints[name].admin = True
        return added

    def lookup(self, name: str, installed: bool, draining: bool = False) -> Endpoint:
        """The endpoint for ``name``; UNAVAILABLE while routes are not installed (a SIGTERM while starting:
        draining, so a client moves on at once rather than waiting for a start that ends in an exit), else
        NOT_FOUND."""
        endpoint = self.endpoints.get(name)
        if endpoint is not None:
            return endpoint
        if not installed:
            raise draining_error() if draining else RequestError(UNAVAILABLE, STARTING, retry_after_ms=500)
        hint = did_you_mean(name, self.endpoints)  # the built-in routes too: _helth is _health
        raise RequestError(NOT_FOUND, f"no route {cut(name)!r}{hint} (call _routes for the list)", "header.route")

    def describe(self) -> list[dict[str, Any]]:
        return [endpoint.describe() for endpoint in self.endpoints.values()]

    def abandon_batchers(self) -> None:
        """Drop what every batcher has queued (those requests were answered otherwise)."""
        for endpoint in self.endpoints.values():
            if endpoint.batcher is not None:
                endpoint.batcher.abandon()

    def stop_batchers(self, timeout: float) -> None:
        """End every batcher thread, waiting at most ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for endpoint in self.endpoints.values():
            if endpoint.batcher is not None:
                endpoint.batcher.stop(timeout=max(0.0, deadline - time.monotonic()))


def warn_frame_limit(endpoints: Any, max_message_bytes: int) -> None:
    """Say at start which routes take a body frame ``[server] max_message_bytes`` drops: ZeroMQ closes the
    client's connection on it, unanswered (the client hears "closed the connection"), where the route would
    answer; ``_routes`` advertises the route's own ``max_payload`` (h349 F1: ``profile check`` said ok)."""
    over = [f"{e.name} ({e.route.max_payload:,})" for e in endpoints if e.route.max_payload > max_message_bytes]
    if over:
        log.warning(
            "[server] max_message_bytes = %s is below the max_payload of route(s) %s: a body frame between the two "
            "closes the client's connection unanswered, not refused naming the limit; raise "
            "[server] max_message_bytes to at least the largest (docs/PROTOCOL.md, Size limits)",
            f"{max_message_bytes:,}",
            ", ".join(over),
        )


def decode_call(
    envelope: list[bytes],
    request_id: Any,
    endpoint: Endpoint,
    header: dict,
    rest: list[bytes],
    received: float,
    budget: float | None,
    forwarded: bool = False,
) -> Call:
    """A :class:`Call` with its deadline and validated body, or RequestError naming the field.

    ``rest`` is the body frame and any buffer frames: together they must fit the route's
    ``max_payload``. ``budget``: the header's ``deadline_ms`` (see ``header_options``); zero or less is
    DEADLINE_EXCEEDED at once from a client, as a broker answers it, but, ``forwarded`` by a broker (what was
    left of a client's budget), only once the idempotency key is checked (server.py: a repeat of a key in
    flight waits for its first, h427 F1).
    """
    route = endpoint.route
    size = len(rest[0]) if len(rest) == 1 else sum(len(frame) for frame in rest)
    if size > route.max_payload:
        raise too_large(endpoint.name, size, len(rest), route.max_payload)
    call = Call(envelope, request_id, endpoint, received)
    call.size = size
    if budget is not None:
        if budget <= 0 and not forwarded:
            raise passed_on_arrival()
        call.deadline = received + budget / 1000
    try:
        body = unpack_body(rest[0])
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
        raise RequestError(INVALID_ARGUMENT, decoding_error("body", exc), "body") from None
    if len(rest) > 1 or header.get("buffers") is not None:
        body = attach_buffers(body, header, rest[1:])
    if endpoint.validate is not None and endpoint.batcher is not None and route.items is None:
        call.unchecked = True  # structured on the batcher's thread: a large body never holds the I/O thread
    elif endpoint.validate is not None:
        body = endpoint.validate(body)
    call.body = body
    call.items = 1 if route.items is None else _items(endpoint, body)
    return call


def _items(endpoint: Endpoint, body: Any) -> int:
    """The items ``route.items`` counts in a valid body (at least one): what it raises, or a count that is
    no int >= 0 (a list, NaN, -5), is the plugin's bug, not the client's, as a handler's exception is."""
    try:
        count = endpoint.route.items(body)
        if not isinstance(count, numbers.Integral) or count < 0:  # a numpy int counts too
            raise TypeError(f"it returned {count!r:.80}, not a count of items (an int >= 0)")
    except Exception as exc:  # noqa: BLE001 - the client's body was valid: the failure is the route's own
        raise plugin_failure(endpoint, f"{endpoint.name}: items()", exc, " (a plugin bug)") from None
    return max(1, int(count))


def too_large(route: str, size: int, frames: int, limit: int) -> RequestError:
    """The refusal of a body (and ``frames - 1`` buffers) of ``size`` bytes, over ``route``'s
    ``max_payload`` of ``limit`` (a worker's, and its broker's before admission)."""
    what = "body" if frames == 1 else f"body and {frames - 1} buffer(s)"
    return RequestError(INVALID_ARGUMENT, f"{what}: {size} bytes; {route} accepts at most {limit}", "body")


def passed_on_arrival() -> RequestError:
    """The refusal of a request whose ``deadline_ms`` is zero or less."""
    return RequestError(DEADLINE_EXCEEDED, "the deadline had passed when the request arrived")


class Admission:
    """Bounded queues per route plus the resource manager's gate; counts what is in flight.

    ``resources`` is set once the system has started (no route needs admission before).
    """

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.resources: Resources | None = None
        self.in_flight = 0
        self.open: set[Call] = set()

    def admit(self, call: Call) -> None:
        """Take a slot for ``call`` or raise RESOURCE_EXHAUSTED with a retry hint."""
        endpoint = call.endpoint
        if endpoint.pending >= self.max_queue:
            raise RequestError(
                RESOURCE_EXHAUSTED,
                f"{endpoint.name} has {endpoint.pending} requests queued (the limit); retry after the hinted pause",
                retry_after_ms=_retry_hint(endpoint.stats),
            )
        if (why := manager_calls.admit(self.resources)) is not None:
            raise refused(why, endpoint.stats)
        endpoint.pending += 1
        self.in_flight += 1
        self.open.add(call)

    def release(self, call: Call) -> None:
        """Give back the slot of a finished call (no-op for calls never admitted)."""
        if call in self.open:
            self.open.remove(call)
            call.endpoint.pending -= 1
            self.in_flight -= 1
            manager_calls.release(self.resources)


def refused(why: str, stats: RouteStats) -> RequestError:
    """RESOURCE_EXHAUSTED for a request the resource manager would not admit, saying which limit (``why``), in one
    wording for a daemon and a broker (inline calls take their slot directly from the manager: they run, and give it
    back, at once)."""
    return RequestError(
        RESOURCE_EXHAUSTED,
        f"the resource manager refused the request: {why}; retry after the hinted pause",
        retry_after_ms=_retry_hint(stats),
    )


def _retry_hint(stats: RouteStats) -> int:
    """A pause worth the route's recent latency, queue wait included (PROTOCOL.md "Admission"): cheap, since it
    is computed on every refusal."""
    return max(10, int(stats.typical * 1000))
