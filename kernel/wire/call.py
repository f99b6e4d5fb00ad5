"""One accepted request on its way through the daemon, and how it is answered.

Both the server (inline routes, handler threads) and the batcher complete calls through
the functions here, so neither needs the other: a handler's result or exception becomes
``complete(call, status, body, version, compute_seconds)``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heirloom.core.components import Versioned
from heirloom.core.errors import ResourceExhaustedError
from heirloom.limits import shortened
from heirloom.wire.protocol import (
    DEADLINE_EXCEEDED,
    INTERNAL,
    INVALID_ARGUMENT,
    OK,
    RESOURCE_EXHAUSTED,
    RequestError,
    detach_buffers,
    error_frames,
    packb,
    unpackb,
    without_paths,
)
from heirloom.wire.sendable import unpackable_at
from heirloom.wire.throttle import Every

if TYPE_CHECKING:
    from heirloom.wire.routing import Endpoint
    from heirloom.wire.stats import RouteStats

log = logging.getLogger("heirloom.server")
FAILURE_LOGS = 1024  # distinct failures whose tracebacks are throttled; forgotten all at once past it
_failures: dict[tuple[str, str, str], Every] = {}
_late: dict[str, Every] = {}  # by route: a request computed past its deadline
_slow_inline: dict[str, Every] = {}  # by route: an inline handler that held the I/O thread
#: Seconds an inline handler may hold the I/O thread (every client and probe waits) before it is logged.
SLOW_INLINE_S = 0.25
SLOW_INLINE = (
    "%s: its inline handler held the daemon's I/O thread %.2f s, every request and probe waiting meanwhile: "
    "make it cheap, or mark the route not inline"
)


class Call:
    """One accepted request: where to answer, what it asked, and its deadline."""

    __slots__ = (
        "body",
        "deadline",
        "digest",
        "done",
        "endpoint",
        "envelope",
        "id",
        "idem",
        "items",
        "received",
        "size",
        "started",
        "unchecked",
    )

    def __init__(self, envelope: list[bytes], request_id: Any, endpoint: Endpoint, received: float):
        self.envelope = envelope
        self.id = request_id
        self.endpoint = endpoint
        self.received = received
        self.started = received
        self.deadline: float | None = None
        #: ``(client, route, idempotency key)`` and the body's digest, for keyed requests.
        self.idem: tuple[Any, str, Any] | None = None
        self.digest = b""
        self.body: Any = None
        self.items = 1
        #: Payload bytes (body and buffers): with the last batch's, how long computing it may take.
        self.size = 0
        #: The body is still to be validated against the route's input (on its batcher thread).
        self.unchecked = False
        self.done = False

    def inline_done(self, began: float) -> float:
        """``perf_counter()`` as its inline handler returns; one that held the I/O thread past SLOW_INLINE_S is
        logged, naming its route (once a minute at most): every request and probe waited on it, unsaid (h433 F7);
        so is one answered past its deadline (the small replies' path answers without ``settle``: v34 F5)."""
        now = time.perf_counter()
        if now - began > SLOW_INLINE_S:
            every = _slow_inline.setdefault(self.endpoint.name, Every(60.0))
            every.log(log, logging.WARNING, SLOW_INLINE, named(self.endpoint), now - began)
        _say_if_late(self)
        return now


#: ``complete(call, status, body, version, compute_seconds)``, callable from any thread.
Complete = Callable[[Call, str, Any, "str | None", float], None]


#: A reply ready to send to any caller: ``(status, version, packed body, buffer specs,
#: buffer frames, payload bytes)``; the per-call header is added when it is sent.
Encoded = tuple[str, "str | None", bytes, "list[dict[str, Any]] | None", list[Any], int]


def encode(status: str, body: Any, version: str | None, endpoint: Endpoint, largest: int, total: int) -> Encoded:
    """Pack a reply body once (raw buffers as their own frames); INTERNAL, logged with the
    route, its plugin and where in the reply, if it cannot be (a plugin's bug the client cannot mend), if
    ``version`` (a ``Versioned``'s) is no text (the header that carries it is packed later), or
    if a frame is over ``largest`` bytes (``max_message_bytes``): a broker disconnected the worker
    sending it, and the request held its in-flight place for good."""
    route = named(endpoint)
    if version is not None and not (isinstance(version, str) and version.isprintable() and len(version) <= 1000):
        return _internal(route, f"the reply's model version must be printable text, got {shortened(repr(version))}")
    try:
        packed, specs, buffers = packb(body), None, []
    except BaseException:  # noqa: BLE001 - TypeError, ValueError (a lone surrogate): or a buffer, tried next
        try:
            plain, specs, buffers = detach_buffers(body)
            packed = packb(plain)
        except BaseException as exc:  # noqa: BLE001 - a plugin's object may raise anything as it is packed
            return _internal(route, f"reply not encodable at {_located(body)}: {type(exc).__name__}: {exc}")
    try:  # a tuple key packs, as an array, that no client decodes: counted OK, the client got INTERNAL
        unpackb(packed)
    except BaseException as exc:  # noqa: BLE001 - the unpacker's words (unhashable 'list') name no part of the reply
        at = _located(body)
        return _internal(
            route, f"reply not encodable at {at}" + (f": {type(exc).__name__}: {exc}" if at == "reply" else "")
        )
    frame = max([len(packed), *map(len, buffers)])
    header = len(packb(specs)) + HEADER_FIELDS if specs else 0  # a spec per buffer: 60,000 made a 1.3 MB header
    if frame > largest or header > largest:
        said = f"a frame of {frame:,} bytes" if frame > largest else f"its header ({len(buffers):,} buffer specs)"
        limit = f"over [server] max_message_bytes ({largest:,}); ask for less per request, or raise the limit"
        return _internal(route, f"reply too large: {said} is {limit} (docs/PROTOCOL.md, 'Size limits')")
    if (size := len(packed) + sum(len(b) for b in buffers)) > total:  # the outbox would drop it, unanswered
        held = f"over [server] reply_backlog_total_mb ({total:,}), what the daemon holds of replies not yet read"
        return _internal(
            route, f"reply too large: {size:,} bytes in all, {held}; ask for less per request, or raise it"
        )
    return status, version, packed, specs or None, buffers, size


def dropped_reply(size: int, held: int) -> RequestError:
    """What a client (or a worker's broker) gets for a reply the outbox dropped, rather than nothing: a broker
    held the request's in-flight place until a reply came, for good (checker 272)."""
    return RequestError(
        RESOURCE_EXHAUSTED,
        f"the reply ({size:,} bytes) was dropped: the daemon holds {held:,} bytes of replies not yet read "
        "([server] reply_backlog_mb for one client, reply_backlog_total_mb for all); read replies, or ask for less",
        retry_after_ms=1000,
    )


def answered_instead(
    send: Callable[[list[bytes]], None], envelope: list[bytes], request_id: Any, stats: RouteStats, status: str
) -> Callable[[int, int], None]:
    """A broker outbox's stand-in for the reply to ``envelope`` it drops (a worker's reply too large for what
    other clients left unread): ``dropped_reply`` in its place, not silence until the client's deadline, and
    counted in ``stats`` as that, not as the ``status`` the worker answered."""

    def instead(size: int, held: int) -> None:
        stats.dropped(status)
        send(error_frames(envelope, request_id, dropped_reply(size, held)))

    return instead


#: What a reply header holds besides its buffer specs, at most: the request's id (a request header is
#: 64 KiB at most), the status, the model version (1,000 characters), times.
HEADER_FIELDS = 66 << 10


def _located(body: Any) -> str:
    """:func:`unpackable_at`, or ``reply`` when walking the reply raises too (a dict whose items() fails)."""
    try:
        return unpackable_at(body, advice=True)
    except BaseException:  # noqa: BLE001 - the walk reads the plugin's objects: any of their methods may raise
        return "reply"


def named(endpoint: Endpoint) -> str:
    """The route and, of a plugin's api, its type and plugin (and distribution): whose bug a log line is about."""
    return f"{endpoint.name} ({endpoint.owner})" if endpoint.owner else endpoint.name


def whose_bug(endpoint: Endpoint, exc: BaseException) -> str | None:
    """Whose bug a handler's exception is, for the log: the route's api type and plugin, led by the component
    type (or plugin) whose code raised when that is another plugin's (the model under a text plugin's api)."""
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):  # the innermost plugin frame decides
        module = frame.f_globals.get("__name__", "")
        for prefix, whose, plugin in endpoint.code:
            if module == prefix or module.startswith(f"{prefix}."):
                mine = endpoint.owner is not None and endpoint.owner.endswith(f", plugin {plugin}")
                return endpoint.owner if mine else f"raised in {whose}; the route's {endpoint.owner}"
    return endpoint.owner


def _internal(route: str, message: str) -> Encoded:
    """The INTERNAL reply to a result the route's plugin made unsendable, logged with the route
    and its plugin (the log whole, the client without server paths: the exception may quote a file)."""
    log.error("%s: %s", route, shortened(message))
    packed = packb({"code": INTERNAL, "message": shortened(without_paths(message)), "retryable": False})
    return INTERNAL, None, packed, None, [], len(packed)


def deadline_body() -> dict[str, Any]:
    return {
        "code": DEADLINE_EXCEEDED,
        "message": "the deadline passed before the request was computed",
        "retryable": False,
    }


def invalid_part(part: str, exc: BaseException) -> RequestError:
    """INVALID_ARGUMENT for a header or body (``part``) that raised ``exc`` while being read."""
    return RequestError(INVALID_ARGUMENT, f"invalid {part}: {type(exc).__name__}: {exc}", part)


def _say_if_late(call: Call) -> None:
    """Log a request its handler finished past its deadline (a route at most once a minute): the
    client has likely stopped waiting, and only the daemon knows the route, not the network, was slow. Once per call:
    the deadline, spent, is cleared (an inline call is looked at as its handler returns, then as it is settled)."""
    now, route = time.perf_counter(), named(call.endpoint)
    if call.deadline is not None and now > call.deadline:
        late = "%s: answered %.2f s after its request arrived, past its deadline of %s (its client may have gone)"
        every = _late.setdefault(route, Every(60.0))
        budget = call.deadline - call.received  # 3 ms read "0.00 s", a budget the wire refuses at once (h434 F2)
        shown = f"{budget:.2f} s" if budget >= 0.1 else f"{budget:.2g} s" if budget >= 1e-6 else "under a microsecond"
        every.log(log, logging.WARNING, late, route, now - call.received, shown)
    call.deadline = None


def settle(call: Call, result: Any, complete: Complete, compute: float) -> None:
    """Answer ``call`` with a handler result (a value, a Versioned or a RequestError)."""
    _say_if_late(call)
    if isinstance(result, RequestError):
        complete(call, result.code, result.led_by_field().body(), None, compute)
    elif isinstance(result, Versioned):
        complete(call, OK, result.value, result.version, compute)
    else:
        complete(call, OK, result, None, compute)


def fail(call: Call, exc: BaseException, complete: Complete, where: str) -> None:
    """Answer ``call`` with the error ``exc`` raised while handling it."""
    _say_if_late(call)
    if isinstance(exc, RequestError):
        complete(call, exc.code, exc.led_by_field().body(), None, 0.0)
        return
    if isinstance(exc, ResourceExhaustedError):  # a quota or budget: the client's to know, not a bug
        log.warning("%s refused: %s", where, exc)
        complete(call, RESOURCE_EXHAUSTED, RequestError(RESOURCE_EXHAUSTED, str(exc)).body(), None, 0.0)
        return
    complete(call, INTERNAL, plugin_failure(call.endpoint, where, exc).body(), None, 0.0)


def plugin_failure(endpoint: Endpoint, where: str, exc: BaseException, bug: str = "") -> RequestError:
    """INTERNAL for ``exc``, raised by the route's own code at ``where`` (its handler; ``ROUTE: items()``), logged
    with its traceback and whose code it is; the client's message keeps no server path. ``bug``: said after it."""
    _log_failure(f"{where} failed ({owner})" if (owner := whose_bug(endpoint, exc)) else f"{where} failed", exc)
    return RequestError(INTERNAL, without_paths(f"{where} failed: {type(exc).__name__}: {exc}{bug}"))


def _log_failure(what: str, exc: BaseException) -> None:
    """Log ``exc``'s traceback after ``what`` (the route, and the plugin whose api it is: whose bug it is, for the
    operator), the same failure of a route (its type, raised at the same line) once a minute: a broken model fails
    every request alike, and a batch of them was as many tracebacks; keyed by the message too, one quoting each
    request's data logged every one."""
    raised = exc.__traceback__
    while raised is not None and raised.tb_next is not None:
        raised = raised.tb_next
    site = f"{raised.tb_frame.f_code.co_filename}:{raised.tb_lineno}" if raised is not None else ""
    key = (what, type(exc).__qualname__, site)
    if (every := _failures.get(key)) is None:
        if len(_failures) >= FAILURE_LOGS:
            _failures.clear()
        every = _failures[key] = Every(60.0)
    every.log(log, logging.ERROR, "%s: %s", what, exc, exc_info=exc)
