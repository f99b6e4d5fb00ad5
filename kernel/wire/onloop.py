"""A daemon served from the host's asyncio event loop: ``heirloom.served_on_loop``.

A program that already runs an event loop (the HTTP gateway) can serve a profile's daemon
in its own process with no thread for the daemon's I/O: the same :class:`Server` as
``heirloom serve`` (limits, batching, admission, hot swaps), bound to ``inproc://`` in a
ZeroMQ context its clients share, whose socket and wake-up pipe are watched by the loop.
A request from a client on the same loop then never changes thread on its way in and
out: at one request in flight on two cores that took the gateway's p50 from 0.85 to
0.70 ms, where a daemon thread paid two wake-ups and hand-overs of the interpreter lock
per request. A lone request that finds its model idle is computed on the loop (as on
the daemon's I/O thread: ``[server] idle_inline_ms``); batches run on batcher threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import zmq

from heirloom.core.errors import HeirloomError
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.wire import manager_calls
from heirloom.wire.daemon import configured_resources, stop_when_started
from heirloom.wire.server import Server

log = logging.getLogger("heirloom.wire.daemon")
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class LoopDaemon:
    """A started daemon, waiting to be driven by an event loop: ``attach()`` on the running
    loop, ``await drain()`` before that loop ends."""

    def __init__(self, server: Server):
        self.server = server
        self.drained = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def attach(self) -> None:
        """Serve from the running event loop (once, on that loop: an ASGI app's startup)."""
        loop = self._loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        loop.add_reader(self.server.socket.FD, self._on_ready, self.server.read_socket)
        loop.add_reader(self.server.wake_fd, self._on_ready, self.server.read_wake)
        self._on_timer()

    async def drain(self) -> None:
        """Stop accepting work; return once in-flight work is answered (within the grace period)."""
        self.server.request_drain()
        self._turn()
        if self._finished is not None:
            await asyncio.shield(self._finished)

    def _on_ready(self, read: Callable[[], None]) -> None:
        if not self.drained:
            read()
            self._turn()

    def _on_timer(self) -> None:
        self._turn()
        if not self.drained:
            self._timer = self._loop.call_later(self.server.wait_ms / 1000, self._on_timer)  # type: ignore[union-attr]

    def _turn(self) -> None:
        if self.drained or self._loop is None:
            return
        if not self.server.turn():
            self._loop.remove_reader(self.server.socket.FD)
            self._loop.remove_reader(self.server.wake_fd)
            if self._timer is not None:
                self._timer.cancel()
            self.server.finish_drain()
            self.drained = True
            self._finished.set_result(None)  # type: ignore[union-attr]
        elif self.server.socket.get(_EVENTS) & _POLLIN:
            # ZMQ_FD is edge-triggered: a reply sent this turn may have taken a request's edge
            self._loop.call_soon(self._on_ready, self.server.read_socket)


@contextlib.contextmanager
def served_on_loop(
    system: System, settings: ServerSettings, address: str, context: zmq.Context, *, start_timeout: float = 120.0
) -> Iterator[LoopDaemon]:
    """Serve ``system`` at ``address`` from the host's event loop (the module's docstring).

    Starts every component and mounts the routes before yielding (a model with no trained
    version yet is not ready, as in ``heirloom serve``); a system that fails to start raises
    HeirloomError with the reason. The host then calls ``attach()`` on its running loop and
    ``await drain()`` before the loop ends. On exit the system stops and the socket (and
    ``context``) closes; a daemon never attached, or whose loop ended undrained, is drained
    here first.
    """
    limits = manager_calls.client_limits(configured_resources(system.profile))
    server = Server(system, settings, bind=[address], context=context, limits=limits)
    daemon = LoopDaemon(server)
    try:
        server.start_system()
        deadline = time.monotonic() + start_timeout
        while not server.wait_started(0.05):  # short waits: a signal may end the start
            if time.monotonic() > deadline:
                raise HeirloomError(f"the system did not start in {start_timeout:g} s")
        if not server.turn():
            raise HeirloomError(f"the system did not start: {server.start_error}")
        log.info("serving in this process at %s", address)
        yield daemon
    finally:
        if server.mounted and not daemon.drained:
            server.request_drain()
            server.run()
        elif not server.mounted:
            server.finish_drain()
        stopped_cleanly = stop_when_started(server, system)
        server.close()
        if stopped_cleanly and server.start_error is None:
            log.info("stopped")
