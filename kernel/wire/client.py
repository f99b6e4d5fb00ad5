"""``heirloom.Client``: calls over the wire, many in flight, deadlines, typed errors.

One background thread owns the DEALER socket (ZeroMQ sockets are not thread-safe);
callers hand it requests through a queue and get futures back, so any number of threads
(or asyncio tasks, via :meth:`Client.acall`) may call concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
import queue
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

import attrs
import zmq

from heirloom.core.errors import HeirloomError
from heirloom.wire.auth import CurveClient
from heirloom.wire.dealer import (
    DISCONNECTED,
    HANDSHAKE_SUCCEEDED,
    connection_events,
    dealer,
    linked_at_start,
    redial,
    replies_follow,
)
from heirloom.wire.headers import attach_buffers
from heirloom.wire.protocol import (
    CODES,
    HEADER_LIMIT,
    INTERNAL,
    OK,
    SIGNATURE,
    request_frames,
    unpackb,
)
from heirloom.wire.sendable import unsendable
from heirloom.wire.transport import attach, receiver, sender
from heirloom.wire.unanswered import (
    closed_words,
    largest_frame,
    no_reply,
    refused_key_message,
    silence_hint,
    unreached,
)

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
IDEMPOTENT_ROUTES = frozenset({"_health", "_ready", "_routes", "_stats"})
#: How long past its deadline a caller waits for the I/O thread's own NoReply before raising one itself.
MARGIN = 1.0
CLIENT_IS_CLOSED = "the client is closed"


class RemoteError(HeirloomError):
    """The daemon (or the transport) answered with a non-OK status."""

    code = INTERNAL

    def __init__(
        self, message: str, *, field: str | None = None, retryable: bool = False, retry_after_ms: int | None = None
    ):
        super().__init__(f"{self.code}: {message}")
        self.message = message
        self.field = field
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms


def _error_class(code: str) -> type[RemoteError]:
    name = "".join(part.capitalize() for part in code.split("_"))
    return type(name, (RemoteError,), {"code": code, "__doc__": f"The daemon answered {code}."})


#: One exception class per status code: ``heirloom.wire.client.ERRORS["NOT_FOUND"]`` is ``NotFound``.
ERRORS: dict[str, type[RemoteError]] = {code: _error_class(code) for code in CODES if code != OK}
InvalidArgument = ERRORS["INVALID_ARGUMENT"]
NotFound = ERRORS["NOT_FOUND"]
ResourceExhausted = ERRORS["RESOURCE_EXHAUSTED"]
Unavailable = ERRORS["UNAVAILABLE"]
DeadlineExceeded = ERRORS["DEADLINE_EXCEEDED"]
Unauthenticated = ERRORS["UNAUTHENTICATED"]
PermissionDenied = ERRORS["PERMISSION_DENIED"]
Internal = ERRORS["INTERNAL"]


class ConnectionClosed(Unavailable):
    """UNAVAILABLE said by the client: the connection (or the client) closed before the reply, so the request
    may have run; or a call on a closed client, sent nowhere.
    ``Client.request`` retries it only when idempotent: a daemon restarted, and a daemon reached over a new
    connection without Curve (a new client to it), answer a repeated idempotency key from no memory."""


class NoReply(DeadlineExceeded):
    """The client's own wait ran out with no reply: raised here, not answered by the daemon, so it cannot
    tell a slow route from a daemon that is stuck or gone (``heirloom call`` asks ``_health`` which)."""


def error_from_reply(status: str, body: Any) -> RemoteError:
    body = body if isinstance(body, dict) else {}
    cls = ERRORS.get(status, Internal)
    return cls(
        str(body.get("message", status)),
        field=body.get("field"),
        retryable=bool(body.get("retryable")),
        retry_after_ms=body.get("retry_after_ms"),
    )


def seconds(value: Any, what: str = "timeout") -> float:
    """``value``, a timeout: ValueError unless it is a finite number of seconds above 0 (-1 was
    sent as a 1 ms deadline by one client, and failed at once in the other)."""
    if type(value) not in (int, float) or not 0 < value < math.inf:
        raise ValueError(f"{what} must be a number of seconds above 0, got {value!r}")
    return float(min(value, threading.TIMEOUT_MAX))  # the longest a thread can wait: a longer one overflowed


def frames_of(route: str, body: Any, request_id: int, budget: float, idempotency_key: Any) -> list[Any]:
    """A request's frames; InvalidArgument at once for a header over HEADER_LIMIT (a route
    name or idempotency key that long), which the daemon refuses unread, so with no id to
    answer: the call would wait for its deadline."""
    seconds(budget)
    if isinstance(idempotency_key, int) and not -(2**63) <= idempotency_key < 2**64:  # said as the body's (h367 F3)
        said = f"idempotency_key {idempotency_key} does not fit msgpack's 64 bits (-2^63 to 2^64-1)"
        raise InvalidArgument(said, field="header.idempotency_key")
    try:
        frames = request_frames(request_id, route, body, deadline_ms=budget * 1000, idempotency_key=idempotency_key)
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError) as exc:  # Type: no msgpack type; Value: depth
        raise InvalidArgument(f"body cannot be sent: {unsendable(body, 'body') or exc}", field="body") from None
    if len(frames[1]) > HEADER_LIMIT:
        raise InvalidArgument(f"header is over {HEADER_LIMIT} bytes (a route name or idempotency key)", field="header")
    return frames


@attrs.frozen
class Reply:
    """A successful reply: the body and what the daemon said about producing it."""

    body: Any
    version: str | None
    queue_ms: float
    compute_ms: float


def parse_reply(frames: list[Any], expected: Callable[[Any], bool]) -> tuple[Any, Reply | RemoteError] | None:
    """A reply's request id and outcome, or None for what answers no call ``expected``
    (not a reply, an undecodable header, a late reply to a call that timed out). A reply
    whose body cannot be decoded fails only its own call."""
    if len(frames) < 3 or frames[0] != SIGNATURE:
        return None
    try:
        header = unpackb(frames[1])
        request_id = header.get("id")
    except Exception:  # noqa: BLE001 - garbage answers nobody
        return None
    if not expected(request_id):
        return None
    try:
        body = unpackb(frames[2])
        if len(frames) > 3:
            body = attach_buffers(body, header, frames[3:])
    except Exception as exc:  # noqa: BLE001 - a garbled reply fails only its call
        return request_id, Internal(f"undecodable reply: {exc}")
    status = header.get("status")
    if status != OK:
        return request_id, error_from_reply(str(status), body)
    return request_id, Reply(body, header.get("version"), header.get("queue_ms", 0.0), header.get("compute_ms", 0.0))


@attrs.define
class _Pending:
    future: Future
    deadline: float
    route: str
    budget: float
    largest: int


def closed_before_reply(address: str, largest: int, sent: int = 0) -> RemoteError:
    """The error of a request outstanding when its connection closed, which no reply can reach now
    (heirloom.wire.dealer): retryable, unless a frame over a daemon's default limit, which makes a
    daemon close the connection, says a retry would fare no better; a large frame on the connection
    (``largest`` its own, ``sent`` any outstanding request's) is named (``unanswered.closed_words``)."""
    message, retryable = closed_words(address, largest, sent)
    return ConnectionClosed(message, retryable=retryable)


def client_closed() -> ConnectionClosed:
    """The error of a call outstanding when its client is closed: retryable (UNAVAILABLE is, docs/PROTOCOL.md),
    on another client; one error per call, as a caller may add to the message of its own."""
    said = "the client was closed before the reply came; the request may have run: retry it if it is idempotent"
    return ConnectionClosed(said, retryable=True)


class Client:
    """A connection to a heirloom daemon. Thread-safe; close it (or use ``with``): one dropped is freed once gone."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        curve: CurveClient | None = None,
        routing_id: bytes | None = None,
    ):
        """``routing_id``: this client's identity at the daemon (ZMQ_ROUTING_ID) instead of
        one per connection, so that an idempotency key sent again from another process is
        the same client's key (docs/PROTOCOL.md); unique among clients connected at once."""
        if type(retries) is not int or retries < 0:
            raise ValueError(f"retries must be a whole number, 0 or more, got {retries!r}")
        if routing_id is not None and not isinstance(routing_id, bytes):
            raise TypeError(f"routing_id must be bytes (ZeroMQ's identity), got {type(routing_id).__name__}")
        if routing_id is not None and not (0 < len(routing_id) < 256 and routing_id[0]):  # ZeroMQ's own rule
            raise ValueError(f"routing_id must be 1 to 255 bytes, the first not zero, got {routing_id[:20]!r}")
        self.address = address
        self.timeout = seconds(timeout)
        self.retries = retries
        self._silence = silence_hint(curve)
        self._curve, self._routing_id = curve, routing_id
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._wake_lock = threading.Lock()
        self._open()
        _LIVE.add(self)

    def _open(self) -> None:
        """A ZeroMQ context, sockets and I/O thread of this process's own (in a forked child: new ones,
        the parent's left untouched, as pyzmq contexts must not be used across fork)."""
        self._pid = os.getpid()
        self._context = zmq.Context()
        self._outbox: queue.SimpleQueue[tuple[int, list[Any], _Pending]] = queue.SimpleQueue()
        self._wake_address = f"inproc://heirloom-client-{id(self)}"
        self._wake_pull = self._context.socket(zmq.PULL)
        self._wake_pull.bind(self._wake_address)
        self._wake_push = self._context.socket(zmq.PUSH)
        self._wake_push.connect(self._wake_address)
        try:  # an unusable key file leaked the sockets and the context (checker v42 F8)
            self._socket, self._monitor = dealer(self._context, self._curve, self._routing_id)
            attach(self._socket, self.address, bind=False)  # ZeroMQ's refusal as a message naming the address
        except HeirloomError:
            self._context.destroy(linger=0)  # no thread started yet: the sockets go with the context
            raise
        self._send_frames, self._recv = sender(self._socket, nonblocking=True), receiver(self._socket)
        self._backlog: deque[tuple[int, list[Any], _Pending]] = deque()
        self._deadlines: list[tuple[float, int]] = []
        self._auth_failure: str | None = None
        self._linked = linked_at_start(self.address)  # a connection is up to send on (heirloom.wire.dealer)
        sockets, queues = [self._socket, self._wake_pull, self._monitor], (self._outbox, self._backlog)
        io = (weakref.ref(self), self._context, sockets, queues)
        self._thread = threading.Thread(target=_io_thread, args=io, name="heirloom-client", daemon=True)
        self._thread.start()

    # -- calling -------------------------------------------------------------------------
    def submit(
        self, route: str, body: Any = None, *, timeout: float | None = None, idempotency_key: str | int | None = None
    ) -> Future[Reply]:
        """Send one request now; the future resolves to a :class:`Reply` or a RemoteError."""
        budget = self.timeout if timeout is None else seconds(timeout)
        return self._submit(route, body, budget, idempotency_key, asked=budget)

    def _submit(self, route: str, body: Any, budget: float, idempotency_key: Any, asked: float) -> Future[Reply]:
        """``asked``: the caller's timeout, which a no-reply error names (a retry's budget is what is left of it)."""
        request_id = next(self._ids)
        frames = frames_of(route, body, request_id, budget, idempotency_key)
        pending = _Pending(Future(), time.monotonic() + budget, route, asked, largest_frame(frames))
        with self._wake_lock:  # close() sets _closed under it: a request queued here is failed by the I/O thread
            if self._closed.is_set():
                raise ConnectionClosed(CLIENT_IS_CLOSED)
            if self._pid != os.getpid():
                self._forked()
            self._outbox.put((request_id, frames, pending))
            self._wake()
        return pending.future

    def request(
        self,
        route: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | int | None = None,
        idempotent: bool | None = None,
    ) -> Reply:
        """Call and wait, retrying a retryable UNAVAILABLE/RESOURCE_EXHAUSTED only when that is safe.

        A retry is safe for idempotent calls (built-in routes, ``idempotent=True``) and for
        calls with an ``idempotency_key`` (the daemon answers a repeated key from memory), but
        after ConnectionClosed only for idempotent calls (the request may have run on a daemon
        that, restarted, remembers no key).
        """
        budget = self.timeout if timeout is None else seconds(timeout)
        deadline = time.monotonic() + budget
        idempotent = idempotent if idempotent is not None else route in IDEMPOTENT_ROUTES
        for attempt in itertools.count():
            remaining = budget if attempt == 0 else max(deadline - time.monotonic(), 0.001)
            future = self._submit(route, body, remaining, idempotency_key, asked=budget)
            try:  # bounded: a call never outwaits its deadline, even with the I/O thread gone or stuck
                return future.result(min(remaining + MARGIN, threading.TIMEOUT_MAX))  # 1e10 s overflowed (h367 F2)
            except TimeoutError:
                raise NoReply(no_reply(self.address, route, budget, self._silence)) from None
            except RemoteError as error:
                safe = idempotent or (idempotency_key is not None and not isinstance(error, ConnectionClosed))
                if self._closed.is_set() or not (safe and error.retryable and attempt < self.retries):
                    raise
                pause = (error.retry_after_ms or 50 * 2**attempt) / 1000 * random.uniform(1.0, 1.5)
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def call(self, route: str, body: Any = None, **kwargs: Any) -> Any:
        """Call ``route`` and return the reply body (see :meth:`request` for options)."""
        return self.request(route, body, **kwargs).body

    async def acall(
        self, route: str, body: Any = None, *, timeout: float | None = None, idempotency_key: str | int | None = None
    ) -> Any:
        """The asyncio form of :meth:`call` (no retries): ``await client.acall(route, body)``."""
        reply = await asyncio.wrap_future(self.submit(route, body, timeout=timeout, idempotency_key=idempotency_key))
        return reply.body

    def _wake(self) -> None:
        """Wake the I/O thread; a full wake queue holds wake-ups enough (a blocking send waited for ever on an I/O
        thread that had died: h367 F1)."""
        with contextlib.suppress(zmq.Again):
            self._wake_push.send(b"", zmq.NOBLOCK)

    # -- the I/O thread ------------------------------------------------------------------
    def _turn(self, poller: zmq.Poller, pending: dict[int, _Pending]) -> None:
        """One wait of the I/O thread (:func:`_io_thread`) and what it brought."""
        soonest = self._deadlines[0][0] if self._deadlines else time.monotonic() + 0.1
        wait_ms = 10 if self._backlog else min(100, int((soonest - time.monotonic()) * 1000) + 1)
        events = dict(poller.poll(max(1, wait_ms)))
        if self._monitor in events:
            self._watch(pending)
        if self._wake_pull in events or self._backlog:
            self._send_outbox(pending)
        if self._socket in events:
            self._receive(pending)
        self._expire(pending)

    def _send_outbox(self, pending: dict[int, _Pending]) -> None:
        while self._wake_pull.get(zmq.EVENTS) & zmq.POLLIN:  # each submit's wake-up: the outbox holds its request
            self._wake_pull.recv()
        while not self._outbox.empty():
            self._backlog.append(self._outbox.get_nowait())
        while self._backlog:
            if self._monitor.get(zmq.EVENTS) & zmq.POLLIN:  # a close is seen before another request is sent
                self._watch(pending)
                continue
            request_id, frames, entry = self._backlog[0]
            if entry.future.done():  # expired while waiting for a connection
                self._backlog.popleft()
                continue
            if self._auth_failure is not None:  # a call after a refusal: try the handshake again
                self._auth_failure = None
                redial(self._socket, self.address)
            if not self._linked:
                return  # no connection yet: keep the backlog until one is up
            try:
                self._send_frames(frames)
            except zmq.Again:
                return  # libzmq's queue is full: keep the backlog, try again on the next turn
            self._backlog.popleft()
            pending[request_id] = entry
            heapq.heappush(self._deadlines, (entry.deadline, request_id))
            if len(self._deadlines) > 2 * len(pending) + 1024:  # answered calls linger: rebuild
                self._deadlines = [(e.deadline, rid) for rid, e in pending.items()]
                heapq.heapify(self._deadlines)

    def _receive(self, pending: dict[int, _Pending]) -> None:
        while True:
            try:
                frames, _ = self._recv()
            except zmq.Again:
                return
            parsed = parse_reply(frames, pending.__contains__)
            if parsed is None:
                continue
            request_id, outcome = parsed
            _settle(pending.pop(request_id).future, outcome)

    def _watch(self, pending: dict[int, _Pending]) -> None:
        for event in connection_events(self._monitor):
            self._linked = event == HANDSHAKE_SUCCEEDED
            if self._linked:
                self._auth_failure = None
                self._socket.get(zmq.EVENTS)  # libzmq takes in the new connection (and drops the last) now
            elif event != DISCONNECTED:  # a refused handshake: nothing queued will be sent
                self._auth_failure = refused_key_message(self.address, event)
                for entry in [*pending.values(), *(item[2] for item in self._backlog)]:
                    _settle(entry.future, Unauthenticated(self._auth_failure))
                pending.clear()
                self._backlog.clear()
            elif not replies_follow(self._curve, self._routing_id):  # what was sent on it has no reply to come
                self._receive(pending)  # those that came before it closed
                sent = max((entry.largest for entry in pending.values()), default=0)
                for entry in pending.values():
                    _settle(entry.future, closed_before_reply(self.address, entry.largest, sent))
                pending.clear()

    def _expire(self, pending: dict[int, _Pending]) -> None:
        now = time.monotonic()
        for _, _, entry in self._backlog:
            if entry.deadline <= now and not entry.future.done():
                _settle(entry.future, NoReply(unreached(self.address, entry.budget, self._silence)))
        # a heap of (deadline, id): only the expired are looked at, not every call in flight
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = heapq.heappop(self._deadlines)
            entry = pending.pop(request_id, None)
            if entry is None:
                continue  # answered already
            _settle(
                entry.future, NoReply(no_reply(self.address, entry.route, entry.budget, self._silence, entry.largest))
            )

    # -- closing -------------------------------------------------------------------------
    def _forked(self) -> None:
        """First use in a forked child (gunicorn --preload): the parent's I/O thread does not exist here."""
        if self._routing_id is not None:
            raise HeirloomError(
                "a heirloom.Client with a routing_id, made before fork, cannot be used in the child "
                "(the daemon would see two clients with one identity): make one in the child with its own"
            )
        self._open()

    def close(self) -> None:
        """Fail outstanding calls with UNAVAILABLE and release the sockets; a call after it raises
        ConnectionClosed("the client is closed")."""
        with self._wake_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            if self._pid != os.getpid():
                return  # made before fork and not used since: the context is the parent's to end
            self._wake()  # the I/O thread sees it now, not at its next poll timeout (100 ms)
        self._thread.join()
        self._socket.disable_monitor()
        self._context.destroy(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _io_thread(client: weakref.ref[Client], context: zmq.Context, sockets: list, queues: tuple[Any, deque]) -> None:
    """A client's I/O thread: its turns, holding the client only during each, so a client dropped unclosed is
    collected and its thread ends, releasing its sockets (a notebook cell that made one, re-run 92 times, ran out of
    file descriptors: h417 F3); a closed one's ``close`` releases. Then each call still waiting fails as closed."""
    outbox, backlog = queues
    pending: dict[int, _Pending] = {}
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    while (held := client()) is not None and not held._closed.is_set():
        held._turn(poller, pending)
        del held
    while not outbox.empty():
        backlog.append(outbox.get_nowait())
    for entry in [*pending.values(), *(item[2] for item in backlog)]:
        _settle(entry.future, client_closed())
    if held is None:
        sockets[0].disable_monitor()
        context.destroy(linger=0)


def _settle(future: Future[Reply], outcome: Reply | RemoteError) -> None:
    """``outcome`` set on ``future``, a call's, unless its caller cancelled it (``Future.cancel``, an ``acall`` in
    ``asyncio.wait_for``): a cancel between the I/O thread's ``done()`` and its ``set_result`` raised
    InvalidStateError there, and with the thread dead every later call timed out and no future resolved (h367 F1)."""
    with contextlib.suppress(InvalidStateError):
        future.set_exception(outcome) if isinstance(outcome, BaseException) else future.set_result(outcome)


#: Live clients, whose wake locks a forked child replaces: one held by another thread at fork is never released.
_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork() -> None:
    for client in list(_LIVE):
        client._wake_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
