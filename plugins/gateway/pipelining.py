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
A request offering a protocol upgrade the gateway does not speak (``Upgrade: h2c``, which
Java's HttpClient sends by default) is an HTTP/1.1 request like any other (RFC 9110 7.8), but
httptools skips its body and stops parsing there (uvicorn#2722, httptools#124): the route got
no body and the body's bytes were read as the next request. Here such a body is read by
``Content-Length``, or decoded from its chunks (:class:`ChunkedBody`), and the bytes after it
parsed on. Bytes httptools refuses get a JSON 400, as every other error of the gateway, after
the replies to the requests before them; then the connection closes.

Header fields have a limit of their own, HEAD_LIMIT: httptools joins a header's value anew
on each piece it is fed (``value += piece``), so a 24 MB header cost the gateway's event loop
a minute (quadratic), every other client waiting, and unfinished ones held as much memory as
they sent. The bytes fed since the parser last said it got on (a request began, its headers
ended, a piece of its body or a chunk's size line arrived) are counted, and once they pass
HEAD_LIMIT, which no request head (request line and headers), chunk line or trailer of the
bytes since reaches, the request is a 431 and the connection closes, nothing more parsed.

It reads uvicorn's own attributes (``pipeline``, ``flow``, ``cycle``, ``app``, ``headers``,
``on_response_complete``, ``_start_asgi_task``), so constraints.txt pins the uvicorn release
it was built on; tests/test_gateway.py checks it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httptools
from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

import heirloom

#: Bytes parsed at a time: the requests past a queued one wait unparsed from the next piece on.
PIECE = 4096
#: Bytes a request head (request line and headers), a chunk's size line or a trailer may take
#: (docs/HTTP.md): counted from the piece after the one it begins in, so a head within it is
#: always read and one of HEAD_LIMIT + PIECE bytes never.
HEAD_LIMIT = 64 << 10
#: Bytes fed after the piece a head begins in (at least 1 of it) that stop it unended: the two bounds above, exact
#: (fed on to HEAD_LIMIT and pieces of 4 KiB, heads of up to 73,727 bytes were read).
HEADED = HEAD_LIMIT - 1
#: The HTTP versions served: llhttp also reads a request line without a version, HTTP/0.9, which was
#: served (a POST of an admin route too) where the docs promise a 400 for bytes that are not HTTP/1.1.
SERVED_VERSIONS = ("1.0", "1.1")
#: Seconds between the log lines that count malformed requests: a flood of them is one a minute.
REFUSALS_EVERY = 60.0

log = logging.getLogger("heirloom.gateway")


class Refusals:
    """Malformed requests, counted and logged at most once every REFUSALS_EVERY seconds with
    none of their bytes: as the daemon's refusals, they must not fill the disk, and a client's
    bytes (a token sent to the wrong port) are never written to the log (docs/OPERATIONS.md)."""

    count = 0
    logged_at = -REFUSALS_EVERY

    @classmethod
    def add(cls) -> None:
        cls.count += 1
        if time.monotonic() - cls.logged_at >= REFUSALS_EVERY:
            cls.flush()

    @classmethod
    def flush(cls) -> None:
        """Log the count since the last line, if any: on a refusal a minute after it, and as the
        gateway stops (the refusals of its last minute were never said)."""
        if cls.count:
            log.warning("refused %d malformed HTTP/1.1 request(s) with 400 or 431 since the last such line", cls.count)
            cls.count, cls.logged_at = 0, time.monotonic()


class HeldFlow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while read bytes wait unparsed
    (uvicorn resumes it when a request's body is asked for and when a response completes)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.unparsed = memoryview(b"")

    def resume_reading(self) -> None:
        if not self.unparsed:
            super().resume_reading()


def _json_error(message: str, field: str | None) -> bytes:
    said = {"error": message, "code": "INVALID_ARGUMENT", "retryable": False} | ({"field": field} if field else {})
    return json.dumps(said, separators=(",", ":")).encode()  # compact, as every other error body


class ChunkedBody:
    """RFC 9112 7.1's chunked coding, decoded as its bytes arrive: the body httptools skips of
    a request offering an upgrade (Java's HttpClient offers h2c on every request, and sends a
    streamed body chunked). Strict: CRLF line ends, hex sizes, lines of at most LINE_LIMIT."""

    LINE_LIMIT = 4096
    TRAILER_LIMIT = 16384

    def __init__(self) -> None:
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.line = b""
        self.left = 0
        self.trailer = 0

    def feed(self, data: memoryview) -> tuple[bytes, int, bool]:
        """``(decoded bytes, bytes of data consumed, whether the body ended)``; ValueError
        naming what is malformed."""
        out, used = [], 0
        while used < len(data) and self.state != "done":
            if self.state == "data":
                taken = bytes(data[used : used + self.left])
                out.append(taken)
                used += len(taken)
                self.left -= len(taken)
                self.state = "data" if self.left else "crlf"
                continue
            end = bytes(data[used : used + self.LINE_LIMIT + 2]).find(b"\n")
            piece = bytes(data[used : used + end + 1 if end >= 0 else len(data)])
            used += len(piece)
            self.line += piece
            if len(self.line) > self.LINE_LIMIT:
                raise ValueError(f"a chunk line is over {self.LINE_LIMIT} bytes")
            if end >= 0:
                line, self.line = self.line, b""
                self._line(line)
        return b"".join(out), used, self.state == "done"

    def _line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise ValueError("a chunk line must end with CRLF")
        text = line[:-2]
        if self.state == "crlf":
            if text:
                raise ValueError("chunk data longer than its size")
            self.state = "size"
        elif self.state == "size":
            size = text.split(b";", 1)[0]
            if not size or len(size) > 15 or size.strip(b"0123456789abcdefABCDEF"):
                raise ValueError(f"bad chunk size {size[:20]!r}")
            self.left = int(size, 16)
            self.state = "data" if self.left else "trailer"
        else:  # trailer fields, read and dropped, until the empty line
            self.trailer += len(line)
            if self.trailer > self.TRAILER_LIMIT:
                raise ValueError(f"the trailer is over {self.TRAILER_LIMIT} bytes")
            self.state = "trailer" if text else "done"


#: A request line (RFC 9112 3): a method, a target, a version. Bytes llhttp refuses that are no such
#: line (``GARBAGE``) are malformed (400), not a request for a method the gateway does not know (501).
REQUEST_LINE = re.compile(rb"[\r\n]*([!#$%&'*+.^_`|~0-9A-Za-z-]+) [^ \r\n]+ HTTP/[0-9]\.[0-9]\r?\n")


#: HTTP/0.9's request line (RFC 1945 4.1), a method and a target without a version, and the refusal of one.
VERSIONLESS = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+\r?\n")
HTTP_0_9 = "HTTP/0.9 (a request line without a version): the gateway speaks HTTP/1.1"
#: llhttp's words for HTTP/2's preface, what curl --http2-prior-knowledge and gRPC clients send (checker h460 F4).
PREFACE = "Pause on PRI/Upgrade"


def in_our_words(cause: Exception) -> str:
    """Why a request is malformed, as a client can read it: HTTP/2's preface and CONNECT's ``host:port`` target
    were said in the parser's words (``invalid url b'host:443'``: a Python bytes value, checker h460 F5)."""
    said = str(cause)
    if said == PREFACE:
        return "HTTP/2's connection preface (PRI * HTTP/2.0): the gateway speaks HTTP/1.1 (and HTTP/1.0)"
    if said.startswith("invalid url b") and (target := re.fullmatch(r"invalid url b(['\"])(.*)\1", said, re.S)):
        return f"the target {target[2]} is no path (a CONNECT's host:port asks for a tunnel: the gateway is no proxy)"
    return said


def unknown_method(piece: memoryview) -> str | None:
    """The method of the request line in ``piece`` (fed from a point between requests) that llhttp
    knows not, or None (bytes that are no request line). httptools does not say where it stopped,
    so fresh parsers replay prefixes of the piece (two binary searches, some two dozen parses of
    at most 4 KiB, on this rare path): the shortest prefix refused ends in the method, whose
    request begins where the request before it ended."""
    data = bytes(piece)
    refused, before = _replay(data)
    if not refused:  # a request the replay stopped at (an upgrade)
        return None
    ended = _shortest(len(data), lambda size: _replay(data[:size])[0])  # the byte refused, + 1
    begun = _shortest(ended, lambda size: _replay(data[:size])[1] == before)
    line = REQUEST_LINE.match(data, begun)  # after the CRLFs llhttp skips between requests
    return line[1][:40].decode("latin-1") if line else None


class _Requests:
    """A parser's callbacks that count the requests it read whole."""

    def __init__(self) -> None:
        self.read = 0

    def on_message_complete(self) -> None:
        self.read += 1


def _replay(data: bytes) -> tuple[bool, int]:
    """Whether a fresh parser refuses a method in ``data``, and how many requests it read whole before."""
    requests = _Requests()
    try:
        httptools.HttpRequestParser(requests).feed_data(data)
    except httptools.HttpParserInvalidMethodError:
        return True, requests.read
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        pass
    return False, requests.read


def _shortest(longest: int, holds: Callable[[int], bool]) -> int:
    """The least size in 0..``longest`` for which ``holds`` (monotone, true of ``longest``)."""
    low, high = -1, longest
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if holds(middle) else (middle, high)
    return high


def _closing_early(cycle: RequestResponseCycle) -> Callable[[ASGISendEvent], Awaitable[None]]:
    """``cycle.send``, except that a reply begun before the request's body has arrived whole (a refusal on
    its head: 413 on its Content-Length, 415, 405, 404, 401...) says ``Connection: close`` and the
    connection closes once it is written (RFC 9110 9.6, 15.5.14). uvicorn kept it open and read the rest of
    the body to throw it away, without bound or --timeout: 17 GB in 15 s after a 413 for a 100 GB
    Content-Length, on the event loop every other client shares (their p50 0.6 -> 37 ms). A body already
    received whole (its rest is 0 bytes) keeps the connection alive."""
    send = cycle.send

    async def closing_send(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and cycle.more_body:
            cycle.keep_alive = False  # uvicorn then writes "connection: close" and closes after the reply
        await send(message)

    return closing_send


def target_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form request target (``http://localhost:8000/v2``, what a client sends a
    proxy), which RFC 9112 3.2.2 makes the request's host in place of its ``Host`` header (the loopback Host
    check was passed by ``Host: localhost`` beside ``http://evil.example/...``); None for ``/path`` and ``*``."""
    return None if target[:1] in (b"/", b"*") else urlsplit(target).netloc


class OneQueuedRequest(HttpToolsProtocol):
    """The protocol the gateway serves HTTP/1.1 with: at most one request of a connection
    parsed and waiting behind the one being answered (a piece's worth at worst)."""

    flow: HeldFlow

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = HeldFlow(transport)
        #: The body still to come of a request that offered an upgrade (read here): its bytes by
        #: Content-Length, or its chunks.
        self.upgrade_body = 0
        self.chunks: ChunkedBody | None = None
        #: A refusal ends the connection once the replies before it are out; nothing more is parsed.
        self.refusal: bytes | None = None
        #: The request being answered (uvicorn's ``cycle`` is the last one parsed: one queued behind it).
        self.answering: RequestResponseCycle | None = None
        #: Bytes fed since the parser last got on (HEAD_LIMIT), and whether it did in this feed.
        self.unframed = 0
        self.got_on = False
        #: Whether the parser is between requests, and was as the piece being fed began (naming an unknown method).
        self.between = True
        self.fed_between = True
        #: Requests begun in the piece being fed; the request line so far of one begun at a piece's start
        #: whose line has not ended (None otherwise), read for HTTP/0.9's line without a version.
        self.begun = 0
        self.line: bytearray | None = None
        self.head_open = False

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self.answering = cycle
        cycle.send = _closing_early(cycle)  # type: ignore[method-assign]
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn tells only its ``cycle`` that the client is gone: with a request queued behind
        the one being answered, that is the queued one, and the reply of the one being answered
        was written to the closed transport (a RuntimeError traceback in the log per client that
        pipelined and hung up). Every request of the connection is told, as a lone one is."""
        super().connection_lost(exc)
        queued = [cycle for cycle, _ in self.pipeline]
        for cycle in (self.answering, *queued):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def data_received(self, data: bytes) -> None:
        # reading pauses while bytes wait, so they are nearly always none: no copy then
        waiting = self.flow.unparsed
        self.flow.unparsed = memoryview(bytes(waiting) + data if waiting else data)
        self._parse()

    # the parser getting on: what was fed before was no head, chunk line or trailer left unfinished
    def on_message_begin(self) -> None:
        self.got_on, self.between, self.head_open = True, False, True
        self.begun += 1
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.got_on, self.head_open, self.line = True, False, None
        version = self.parser.get_http_version()
        if version == "0.9":  # a 400 as other malformed bytes
            raise ValueError(HTTP_0_9)
        if version not in SERVED_VERSIONS:  # HTTP/2.0 was told it had no version
            raise ValueError(f"HTTP/{version} in the request line: the gateway speaks HTTP/1.1 (and HTTP/1.0)")
        if (authority := target_authority(self.url)) is not None:  # the Host the gateway checks, in scope's list
            if not (parts := urlsplit(self.url)).path:  # "http://host" is "http://host/" (RFC 3986 6.2.3): it was a
                self.url = urlunsplit(parts._replace(path=b"/"))  # 400 "User callback error" (checker h397 F2)
            self.headers[:] = [
                *((name, value) for name, value in self.headers if name != b"host"),
                (b"host", authority),
            ]
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.got_on = True
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self.got_on = True

    def on_message_complete(self) -> None:
        self.got_on = True
        if self.parser.should_upgrade():  # httptools skipped the body of a request offering an upgrade
            headers = dict(self.headers)
            if b"transfer-encoding" in headers:  # llhttp admits one only ending in chunked
                self.chunks = ChunkedBody()
                return
            self.upgrade_body = int(headers.get(b"content-length", 0))
            if self.upgrade_body:
                return
        self._completed()

    def _completed(self) -> None:
        """uvicorn's end of a request: its body is whole (after the upgrade's body read here, if any)."""
        self.between = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the queued request, if any
        if not self.transport.is_closing():
            self._parse()
            self._refuse_when_due()
            if not self.pipeline:
                self.flow.resume_reading()

    def _parse(self) -> None:
        """Parse what was read until a request waits behind the one in progress."""
        flow = self.flow
        while flow.unparsed and not self.pipeline and self.refusal is None and self._open():
            if self.upgrade_body:
                body, flow.unparsed = flow.unparsed[: self.upgrade_body], flow.unparsed[self.upgrade_body :]
                self.upgrade_body -= len(body)
                self.on_body(bytes(body))
                if not self.upgrade_body:
                    self._completed()
                continue
            if self.chunks is not None:
                self._read_chunks()
                continue
            size = min(PIECE, HEADED - self.unframed)  # never past the bound: a piece ending past it was read whole
            piece, flow.unparsed = flow.unparsed[:size], flow.unparsed[size:]
            self._feed(piece)
        if flow.unparsed and self._open():
            flow.pause_reading()

    def _read_chunks(self) -> None:
        assert self.chunks is not None
        try:
            body, used, done = self.chunks.feed(self.flow.unparsed)
        except ValueError as exc:
            self._refuse(f"malformed chunked body: {exc}")
            return
        self.flow.unparsed = self.flow.unparsed[used:]
        if body:
            self.on_body(body)
        if done:
            self.chunks = None
            self._completed()

    def _feed(self, piece: memoryview) -> None:
        """uvicorn's ``data_received``, but the bytes after a request that offered an upgrade
        stay to be read (its body, the next request), and malformed HTTP is a JSON error."""
        self._unset_keepalive_if_required()
        self.got_on, self.fed_between, self.begun = False, self.between, 0
        try:
            self.parser.feed_data(piece)  # type: ignore[arg-type]  # httptools parses a memoryview in place
        except httptools.HttpParserError as exc:
            unknown = isinstance(exc, httptools.HttpParserInvalidMethodError) and self.fed_between
            if unknown and (method := unknown_method(piece)):  # RFC 9110 15.6.2: 501 for a method not recognised
                self._refuse(f"method {method!r} is not one HTTP/1.1 defines", b"501 Not Implemented", "method")
                return
            # an error raised in uvicorn's callbacks (a URL it cannot parse: CONNECT's, one over
            # 64 KiB) reaches here as "User callback error": its own words say what was wrong
            cause = exc.__context__ if isinstance(exc.__context__, ValueError | httptools.HttpParserError) else exc
            self._refuse(f"malformed HTTP/1.1 request: {in_our_words(cause)}")
        except httptools.HttpParserUpgrade as upgrade:  # a protocol the gateway does not speak: HTTP/1.1 it is
            self.flow.unparsed = memoryview(bytes(piece[upgrade.args[0] :]) + bytes(self.flow.unparsed))
        else:
            if self._versionless(piece):
                self._refuse(f"malformed HTTP/1.1 request: {HTTP_0_9}")
                return
            self.unframed = 0 if self.got_on else self.unframed + len(piece)
            if self.unframed >= HEADED:
                self._refuse(
                    f"the request's header fields (request line and headers, or a chunked body's chunk line or "
                    f"trailer) are over {HEAD_LIMIT} bytes",
                    status=b"431 Request Header Fields Too Large",
                    field="header",
                )

    def _versionless(self, piece: memoryview) -> bool:
        """Whether the request whose head is open is HTTP/0.9's, a request line without a version
        (``GET /v2`` CRLF): llhttp reads headers after it, so a client that sent the line alone and
        waited for the reply (RFC 1945 4.1) waited for ever. Read for a request begun at the start of
        a piece (a connection's first, one sent after the replies before it were read); one begun
        inside a piece, after an earlier request, is refused when its head ends."""
        if not self.head_open:
            return False
        data = piece.tobytes()
        if self.fed_between and self.begun == 1:  # began in this piece, after the CRLFs llhttp skips
            line, data = bytearray(), data.lstrip(b"\r\n")
        elif self.begun or self.line is None:
            self.line = None
            return False
        else:
            line = self.line
        end = data.find(b"\n")
        line += data[: end + 1 if end >= 0 else len(data)]
        self.line = line if end < 0 else None
        return end >= 0 and VERSIONLESS.fullmatch(line) is not None

    def _refuse(self, message: str, status: bytes = b"400 Bad Request", field: str | None = None) -> None:
        """A 400 (or ``status``) with the gateway's JSON error body, after the replies to the
        requests before it; then the connection closes (where the next request begins is unknown)."""
        message = heirloom.shortened(message)  # a 60 KB URL is not echoed whole
        Refusals.add()
        body = _json_error(message, field)
        head = b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n"
        head += b"cache-control: no-store\r\nconnection: close\r\n"
        self.refusal = head + b"content-length: %d\r\n\r\n" % len(body) + body
        self._refuse_when_due()

    def _refuse_when_due(self) -> None:
        """Send the refusal once no earlier request awaits its reply (at once when the request
        refused is the one being answered: its body is what broke)."""
        cycle = self.cycle
        if self.refusal and not self.pipeline and (cycle is None or cycle.response_complete or cycle.more_body):
            self.transport.write(self.refusal)
            self.transport.close()

    def _open(self) -> bool:
        return not self.transport.is_closing()
