"""``heirloom.AsyncClient``: the client for asyncio programs (an HTTP gateway, a bot).

:class:`heirloom.Client` owns its socket in a thread of its own, so an asyncio caller pays
a hand-over to that thread and back on every call (at one call in flight, most of a
gateway's own cost). This client's DEALER socket lives on the caller's event loop
(``zmq.asyncio``): a call sends from the loop and one reader task resolves replies, with
no thread in between. Same wire, same replies and errors as ``Client``; no retries (the
caller decides). Use it from one event loop; close it on that loop.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from heirloom.core.errors import HeirloomError
from heirloom.wire.auth import CurveClient
from heirloom.wire.client import (
    DEFAULT_ADDRESS,
    DeadlineExceeded,
    RemoteError,
    Reply,
    Unauthenticated,
    Unavailable,
    parse_reply,
    refused_key_message,
)
from heirloom.wire.protocol import request_frames

HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_SUCCEEDED


class AsyncClient:
    """A connection to a heirloom daemon for one asyncio event loop: ``await client.call(route, body)``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 10.0, curve: CurveClient | None = None):
        self.address = address
        self.timeout = timeout
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._monitor = None
        if curve is not None:
            curve.apply(self._socket)
            self._monitor = self._socket.get_monitor_socket(HANDSHAKE_EVENTS)
        self._socket.connect(address)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._auth_failure: str | None = None
        self._closed = False

    async def request(
        self, route: str, body: Any = None, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send one request and wait for its :class:`Reply`; a non-OK status raises its RemoteError."""
        if self._closed:
            raise HeirloomError("the client is closed")
        if self._auth_failure is not None:
            raise Unauthenticated(self._auth_failure)
        if not self._tasks:
            self._start()
        budget = self.timeout if timeout is None else timeout
        request_id = next(self._ids)
        frames = request_frames(request_id, route, body, deadline_ms=budget * 1000, idempotency_key=idempotency_key)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(budget):
                await self._socket.send_multipart(frames, copy=False)  # waits while not yet connected
                return await future
        except TimeoutError:
            raise DeadlineExceeded(
                f"no reply from {self.address} within the deadline (is the daemon running and reachable?)"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def call(self, route: str, body: Any = None, **kwargs: Any) -> Any:
        """Call ``route`` and return the reply body (options as :meth:`request`)."""
        return (await self.request(route, body, **kwargs)).body

    def _start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._read()))
        if self._monitor is not None:
            self._tasks.append(asyncio.ensure_future(self._watch_handshakes()))

    async def _read(self) -> None:
        while True:
            parsed = parse_reply(await self._socket.recv_multipart(), self._pending.__contains__)
            if parsed is None:
                continue
            request_id, outcome = parsed
            future = self._pending.pop(request_id)
            if future.done():  # its caller gave up in the same turn of the loop
                continue
            if isinstance(outcome, RemoteError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _watch_handshakes(self) -> None:
        assert self._monitor is not None
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._auth_failure = None
                continue
            self._auth_failure = refused_key_message(self.address)
            self._fail_pending(Unauthenticated(self._auth_failure))

    def _fail_pending(self, error: RemoteError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def close(self) -> None:
        """Fail outstanding calls with UNAVAILABLE and release the socket."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        self._fail_pending(Unavailable("the client was closed"))
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
        self._socket.close(linger=0)
        self._context.term()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
