"""``heirloom.AsyncClient``: the client for asyncio programs (an HTTP gateway, a bot).

:class:`heirloom.Client` owns its socket in a thread of its own, so an asyncio caller pays
a hand-over to that thread and back on every call. This client's DEALER socket is read
and written on the caller's event loop, with no thread in between: a call sends without
blocking, and the loop's reader callback on the socket's file descriptor resolves the
replies. It uses no ``zmq.asyncio`` future per receive and no ``asyncio.timeout`` per call
(one timer handle instead): at one call in flight that bookkeeping cost more than the
libzmq calls. Same wire, same replies and errors as ``Client``; no retries (the caller
decides). Use it from one event loop (a call on another raises HeirloomError); close it on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from heirloom.core.errors import HeirloomError
from heirloom.wire.auth import CurveClient
from heirloom.wire.client import (
    CLIENT_IS_CLOSED,
    DEFAULT_ADDRESS,
    ConnectionClosed,
    NoReply,
    RemoteError,
    Reply,
    Unauthenticated,
    client_closed,
    closed_before_reply,
    frames_of,
    parse_reply,
    seconds,
)
from heirloom.wire.dealer import DISCONNECTED, HANDSHAKE_SUCCEEDED, connection_events, dealer, linked_at_start, redial
from heirloom.wire.transport import bracketed, drain, receiver, sender
from heirloom.wire.unanswered import (
    LARGE_FRAME,
    largest_frame,
    no_reply,
    refused_key_message,
    silence_hint,
    unreached,
)

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
#: Replies handled per turn of the reader callback before other callbacks get theirs.
DRAIN_LIMIT = 256


class AsyncClient:
    """A connection to a heirloom daemon for one asyncio event loop: ``await client.call(route, body)``."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 10.0,
        curve: CurveClient | None = None,
        context: zmq.Context | None = None,
    ):
        """``context``: a ZeroMQ context to share (``inproc://`` reaches only sockets of the same
        context); the client then leaves it open on close. Otherwise it makes and ends its own."""
        self.address = address
        self.timeout = seconds(timeout)
        self._silence = silence_hint(curve)
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self._socket, self._monitor = dealer(self._context, curve)
        bracketed(self._socket, address)
        self._socket.connect(address)
        self._send = sender(self._socket, nonblocking=True)
        self._recv = receiver(self._socket)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        #: Requests not sent yet: no connection is up, or libzmq's queue to the daemon is at its high-water
        #: mark; sent once one is up and the socket writable, unless their deadline passed meanwhile.
        self._unsent: deque[tuple[int, Sequence[Any]]] = deque()
        #: The largest frame of each request in flight with one over a daemon's default limit, for its error.
        self._oversized: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._auth_failure: str | None = None
        self._linked = linked_at_start(address)  # a connection is up to send on (heirloom.wire.dealer)
        self._closed = False

    async def request(
        self, route: str, body: Any = None, *, timeout: float | None = None, idempotency_key: str | int | None = None
    ) -> Reply:
        """Send one request and wait for its :class:`Reply`; a non-OK status raises its RemoteError."""
        if self._closed:
            raise ConnectionClosed(CLIENT_IS_CLOSED)
        loop = asyncio.get_running_loop()
        if self._loop is not loop and self._loop is not None:  # its socket's reader is on that loop
            where = "still running, in another thread" if self._loop.is_running() else "an earlier asyncio.run"
            raise HeirloomError(
                f"this AsyncClient was first used on another event loop ({where}), and it works "
                "on that one only: make one AsyncClient per event loop"
            )
        if self._auth_failure is not None:  # a call after a refusal: try the handshake again
            self._auth_failure = None
            redial(self._socket, self.address)
        if self._loop is None:
            self._attach()
        if self._monitor.get(_EVENTS) & _POLLIN:  # a close is seen before another request is sent (dealer.py)
            self._on_monitor()
        if self._auth_failure is not None:  # refused again already (a loaded machine): no handshake is to come,
            raise Unauthenticated(self._auth_failure)  # so the request would wait its whole deadline unsent
        budget = self.timeout if timeout is None else seconds(timeout)
        request_id = next(self._ids)
        frames = frames_of(route, body, request_id, budget, idempotency_key)
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[request_id] = future
        largest = largest_frame(frames)
        if largest > LARGE_FRAME:  # named if its connection closes
            self._oversized[request_id] = largest
        timer = loop.call_later(budget, self._expire, request_id, route, budget, largest)
        try:
            self._submit(request_id, frames)
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
            self._oversized.pop(request_id, None)

    async def call(self, route: str, body: Any = None, **kwargs: Any) -> Any:
        """Call ``route`` and return the reply body (options as :meth:`request`)."""
        return (await self.request(route, body, **kwargs)).body

    # -- the socket on the loop ----------------------------------------------------------
    def _attach(self) -> asyncio.AbstractEventLoop:
        """Watch the socket and its monitor from the running loop, on first use."""
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self._socket.FD, self._on_socket)
        loop.add_reader(self._monitor.FD, self._on_monitor)
        loop.call_soon(self._on_monitor)  # events from before the reader (edge-triggered)
        return loop

    def _submit(self, request_id: int, frames: Sequence[Any]) -> None:
        if not self._unsent and self._linked:
            try:
                self._send(frames)
            except zmq.Again:  # the queue to the daemon is full: wait until it is writable
                self._unsent.append((request_id, frames))
        else:
            self._unsent.append((request_id, frames))
        # ZMQ_FD is edge-triggered and a send may consume the edge of a reply already here
        if self._socket.get(_EVENTS) & _POLLIN:
            self._loop.call_soon(self._on_socket)  # type: ignore[union-attr]

    def _on_socket(self) -> None:
        if self._closed:
            return
        drain(self._socket, self._recv, self._resolve, DRAIN_LIMIT)
        events = self._socket.get(_EVENTS)
        if events & _POLLOUT and self._unsent:
            self._flush()
            events = self._socket.get(_EVENTS)
        if events & _POLLIN:  # more than DRAIN_LIMIT were waiting
            self._loop.call_soon(self._on_socket)  # type: ignore[union-attr]

    def _flush(self) -> None:
        while self._unsent:
            if self._monitor.get(_EVENTS) & _POLLIN:
                self._on_monitor()
                continue
            if not self._linked:
                return
            request_id, frames = self._unsent[0]
            if request_id in self._pending:
                try:
                    self._send(frames)
                except zmq.Again:
                    return
            self._unsent.popleft()

    def _resolve(self, frames: list[bytes], user: str | None) -> None:
        parsed = parse_reply(frames, self._pending.__contains__)
        if parsed is None:
            return
        request_id, outcome = parsed
        future = self._pending.pop(request_id)
        if future.done():  # its caller gave up in the same turn of the loop
            return
        if isinstance(outcome, RemoteError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _expire(self, request_id: int, route: str, budget: float, largest: int) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():  # never linked: the daemon unreached, as Client says (h448 F2)
            said = no_reply(self.address, route, budget, self._silence, largest) if self._linked else None
            future.set_exception(NoReply(said or unreached(self.address, budget, self._silence)))

    def _on_monitor(self) -> None:
        if self._closed:  # a call_soon from _attach may come after close
            return
        for event in connection_events(self._monitor):
            self._linked = event == HANDSHAKE_SUCCEEDED
            if self._linked:
                self._auth_failure = None
                self._socket.get(_EVENTS)  # libzmq takes in the new connection (and drops the last) now
                self._loop.call_soon(self._on_socket)  # type: ignore[union-attr]  # to send what waited for it
            elif event != DISCONNECTED:  # a refused handshake: nothing queued will be sent
                self._auth_failure = refused_key_message(self.address, event)
                self._fail_pending(functools.partial(Unauthenticated, self._auth_failure))
            else:  # what was sent on it has no reply to come
                self._lost()

    def _lost(self) -> None:
        while self._socket.get(_EVENTS) & _POLLIN:  # the replies that came before it closed
            drain(self._socket, self._recv, self._resolve, DRAIN_LIMIT)
        unsent = {request_id for request_id, _ in self._unsent}
        lost = [key for key in self._pending if key not in unsent]
        sent = max((self._oversized.get(request_id, 0) for request_id in lost), default=0)
        for request_id in lost:
            future = self._pending.pop(request_id)
            if not future.done():
                future.set_exception(closed_before_reply(self.address, self._oversized.get(request_id, 0), sent))

    def _fail_pending(self, error: Callable[[], RemoteError]) -> None:
        """Fail every call outstanding, each with an error of its own (one shared error, with ``row N: `` added to
        it by each of a gateway's rows, said ``row 7: row 6: ... row 0: `` before the reason)."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error())
        self._pending.clear()
        self._unsent.clear()

    def close(self) -> None:
        """Fail outstanding calls with UNAVAILABLE and release the socket."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, RuntimeError):  # the descriptors are gone or the loop stopped
                self._loop.remove_reader(self._socket.FD)
                self._loop.remove_reader(self._monitor.FD)
        self._fail_pending(client_closed)
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        if self._owns_context:
            self._context.term()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
