"""uvicorn's httptools protocol with a bound on what a pipelining client makes the gateway hold.

HTTP/1.1 lets a client send requests without waiting for the replies (pipelining). uvicorn
parses every request in the bytes it reads, queues each one behind the request being
answered, and reads on whenever a request's body is asked for: a client that sent requests
and never read the replies made the gateway hold a parsed request (some 2.5 KB) for every
100 bytes it sent, as fast as it sent them (four connections: 60 MB -> 1.1 GB).

Here the bytes read are handed to the parser PIECE bytes at a time, and only until a request
is queued behind the one in progress; the rest waits unparsed, and reading stays paused until
the request in progress is answered. A connection so holds at most one read of raw bytes
(256 KiB), the request being answered and those of one piece; a client that sends on meets
TCP's flow control (its sends block), as one that sends a request at a time never notices.
It reads uvicorn's own attributes (``pipeline``, ``flow``, ``on_response_complete``), so
constraints.txt pins the uvicorn release it was built on; tests/test_gateway.py checks it.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Bytes parsed at a time: the requests past a queued one wait unparsed from the next piece on.
PIECE = 4096


class HeldFlow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while read bytes wait unparsed
    (uvicorn resumes it when a request's body is asked for and when a response completes)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.unparsed = memoryview(b"")

    def resume_reading(self) -> None:
        if not self.unparsed:
            super().resume_reading()


class OneQueuedRequest(HttpToolsProtocol):
    """The protocol the gateway serves HTTP/1.1 with: at most one request of a connection
    parsed and waiting behind the one being answered (a piece's worth at worst)."""

    flow: HeldFlow

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = HeldFlow(transport)

    def data_received(self, data: bytes) -> None:
        # reading pauses while bytes wait, so they are nearly always none: no copy then
        waiting = self.flow.unparsed
        self.flow.unparsed = memoryview(bytes(waiting) + data if waiting else data)
        self._parse()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the queued request, if any
        if not self.transport.is_closing():
            self._parse()
            if not self.pipeline:
                self.flow.resume_reading()

    def _parse(self) -> None:
        """Parse what was read until a request waits behind the one in progress."""
        flow = self.flow
        while flow.unparsed and not self.pipeline and self._ours():
            piece, flow.unparsed = flow.unparsed[:PIECE], flow.unparsed[PIECE:]
            super().data_received(piece)  # type: ignore[arg-type]  # httptools parses a memoryview in place
        if flow.unparsed and self._ours():
            flow.pause_reading()

    def _ours(self) -> bool:
        """Whether the connection is still this protocol's: open, not handed to a WebSocket protocol."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self
