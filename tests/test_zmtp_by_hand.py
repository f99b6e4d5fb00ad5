"""docs/PROTOCOL.md's "ZMTP without a library", held against a daemon over a plain TCP socket: what a client of its
own ZMTP code (checker h344's Rust one) sees of the handshake's order and of each refusal."""

from __future__ import annotations

import contextlib
import socket
import time

import msgpack
import pytest

from tests.daemons import Daemon
from tests.helpers import free_tcp_address

GREETING = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0") + bytes(32)
HEALTH = msgpack.packb({"id": 1, "route": "_health"})
REQUEST = b"\x01\x04HLM1" + bytes([0x01, len(HEALTH)]) + HEALTH + b"\x00\x01\xc0"


def ready(socket_type: bytes = b"DEALER", identity: bytes | None = None) -> bytes:
    body = b"\x05READY\x0bSocket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    if identity is not None:
        body += b"\x08Identity" + len(identity).to_bytes(4, "big") + identity
    return bytes([0x04, len(body)]) + body if len(body) < 256 else b"\x06" + len(body).to_bytes(8, "big") + body


@pytest.fixture(scope="module", params=["1", "2"], ids=["one process", "--workers 2"])
def port(request, tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("zmtp"), "--workers", request.param, address=free_tcp_address())
    daemon.wait_ready()
    yield int(daemon.address.rsplit(":", 1)[1])
    assert daemon.terminate() == 0


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        more = sock.recv(size - len(got))
        assert more, f"the connection closed after {len(got)} of {size} bytes"
        got += more
    return got


def command(sock: socket.socket) -> bytes:
    """The body of the next frame, which must be a short command."""
    flags, size = read(sock, 2)
    assert flags == 0x04, flags
    return read(sock, size)


def rest(sock: socket.socket) -> tuple[bytes, bool]:
    """What the daemon sends until it closes (True) or falls silent for 2 s (False)."""
    sock.settimeout(2)
    got = b""
    try:
        while more := sock.recv(4096):
            got += more
    except TimeoutError:
        return got, False
    except ConnectionResetError:
        pass
    return got, True


def test_a_request_sent_after_the_daemons_ready_is_answered_and_one_sent_before_it_is_closed_unanswered(port):
    """A client that wrote its greeting, READY and first request at once was closed every time, with no ERROR and
    nothing logged; the doc did not say to wait (h344 F1). The doc's order: READY after the daemon's greeting, the
    request after its READY (which holds Socket-Type ROUTER and an empty Identity)."""
    with connect(port) as sock:
        sock.sendall(GREETING)
        assert read(sock, 64)[:12] == b"\xff" + bytes(7) + b"\x01\x7f\x03\x01"
        sock.sendall(ready())
        assert command(sock) == b"\x05READY\x0bSocket-Type\0\0\0\x06ROUTER\x08Identity\0\0\0\0"
        sock.sendall(REQUEST)
        assert b"HLM1" in read(sock, 8)
    for batched in (REQUEST, b"\x04\x06\x04PING\0\0"):
        with connect(port) as sock:
            sock.sendall(GREETING + ready() + batched)
            got, closed = rest(sock)
            assert closed and b"HLM1" not in got and b"PONG" not in got and b"ERROR" not in got, got


@pytest.mark.parametrize(
    ("socket_type", "served"), [(b"REQ", True), (b"ROUTER", True), (b"dealer", False), (b"PUB", False)]
)
def test_a_refused_socket_type_gets_the_daemons_ready_then_a_close_without_an_error_command(port, socket_type, served):
    """How a refusal shows was not said (h344 F2): the daemon's READY comes whatever the client's type, and a
    type it does not pair with is closed when the daemon reads the client's READY; ROUTER is paired too."""
    with connect(port) as sock:
        sock.sendall(GREETING)
        read(sock, 64)
        assert command(sock).startswith(b"\x05READY")
        sock.sendall(ready(socket_type))
        time.sleep(0.2)
        with contextlib.suppress(ConnectionError):
            sock.sendall(REQUEST)
        got, closed = rest(sock)
    assert (b"HLM1" in got and not closed) if served else (got == b"" and closed), (got, closed)


@pytest.mark.parametrize(("major", "served"), [(1, False), (2, True), (4, True)])
def test_a_major_version_of_01_is_closed_and_any_above_is_taken_as_zmtp_3(port, major, served):
    """The doc said a major below 03 is closed; 02 is taken as ZMTP 3 and answered 03 01 (h344 F3)."""
    with connect(port) as sock:
        sock.sendall(GREETING[:10] + bytes([major]) + GREETING[11:])
        if not served:
            got, closed = rest(sock)
            assert closed and len(got) <= 10, got
            return
        assert read(sock, 64)[10:12] == b"\x03\x01"
        sock.sendall(ready())
        command(sock)
        sock.sendall(REQUEST)
        assert b"HLM1" in read(sock, 8)


def test_a_frame_over_max_message_bytes_is_closed_at_its_size_field(port):
    """The limit applies to a frame's size field: the connection closes before the frame's bytes are sent."""
    with connect(port) as sock:
        sock.sendall(GREETING)
        read(sock, 64)
        command(sock)
        sock.sendall(ready())
        began = time.monotonic()
        sock.sendall(b"\x02" + ((64 << 20) + 1).to_bytes(8, "big"))
        got, closed = rest(sock)
    assert closed and got == b"" and time.monotonic() - began < 1.5


def test_a_routing_id_over_255_bytes_has_its_requests_dropped(port):
    """A client of its own ZMTP code may send an ``Identity`` as large as a message (libzmq keeps its own to 255
    bytes): every reply held for it copied the id, and a 1 MiB one made the daemon hold 1.1 GB for one client that
    did not read (checker h363 F1). Its requests are dropped, as an envelope frame over 255 bytes is."""
    for size, served in ((255, True), (256, False), (1 << 20, False)):
        with connect(port) as sock:
            sock.sendall(GREETING)
            read(sock, 64)
            command(sock)
            sock.sendall(ready(identity=b"i" * size))
            sock.sendall(REQUEST)
            got, closed = rest(sock)
        assert (b"HLM1" in got) == served and not closed, (size, got[:40])
