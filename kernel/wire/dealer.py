"""The clients' DEALER socket to a daemon, and what its monitor says about the connection.

The socket sets ``ZMQ_IMMEDIATE``: libzmq then queues a request only on a connection whose
handshake is done, and drops what it still held for a connection when that closes. Without it
a request queued behind a closing connection went out on the next one, to whatever daemon
listened there by then (a daemon SIGSTOPped, sent 300 requests of 1 MiB, killed, started again:
297 reached the new one), so a client could not tell a request lost from one still on its way.
With it, when the connection closes, a request sent on it was either never read, or read by a
daemon whose reply, if any, can come back on no other connection (a new connection is a new
peer to the daemon; under Curve it drops a reply whose connection closed, docs/PROTOCOL.md) but
for a client that chose its routing id, talking to a daemon without Curve. A request made while
no connection is up waits in the client until one is, and is sent then.

The clients send only between a connection's HANDSHAKE_SUCCEEDED and its DISCONNECTED, and read
the monitor before each send: a request sent on a connection that closed is then outstanding when
its close is read, and one sent on the next connection is not (libzmq reconnects 100 ms after a
close at the soonest, so a close not yet reported leaves no other connection to send on).
"""

from __future__ import annotations

import contextlib
import itertools

import zmq
from zmq.utils.monitor import parse_monitor_message

from heirloom.wire.auth import CurveClient

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
HANDSHAKE_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
#: What the clients act on besides a connection's start and close, under Curve: a refused handshake.
REFUSALS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_MONITORS = itertools.count(1)


def dealer(
    context: zmq.Context, curve: CurveClient | None, routing_id: bytes | None = None
) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER for one daemon, not yet connected, and the socket its monitor reports a connection's start
    and close on (and REFUSALS, under Curve)."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IMMEDIATE, 1)
    if routing_id is not None:
        socket.setsockopt(zmq.ROUTING_ID, routing_id)
    if curve is not None:
        curve.apply(socket)
    address = f"inproc://heirloom-client-monitor-{next(_MONITORS)}"
    socket.monitor(address, HANDSHAKE_SUCCEEDED | DISCONNECTED | (REFUSALS if curve is not None else 0))
    monitor = context.socket(zmq.PAIR)
    monitor.setsockopt(zmq.RCVHWM, 0)  # libzmq's I/O thread blocks on a full monitor queue: never let it fill
    monitor.connect(address)
    return socket, monitor


def connection_events(monitor: zmq.Socket) -> list[int]:
    """The events reported since the last call, oldest first."""
    seen = []
    while monitor.get(_EVENTS) & _POLLIN:
        seen.append(parse_monitor_message(monitor.recv_multipart())["event"])
    return seen


def linked_at_start(address: str) -> bool:
    """Whether a client may send before any HANDSHAKE_SUCCEEDED: an inproc:// peer has no handshake to report."""
    return address.startswith("inproc://")


def replies_follow(curve: CurveClient | None, routing_id: bytes | None) -> bool:
    """Whether a reply to a request sent on a connection that closed may still come, on the next one:
    a daemon without Curve routes it by routing id, which a client that chose its own keeps."""
    return curve is None and routing_id is not None


def redial(socket: zmq.Socket, address: str) -> None:
    """Connect ``socket`` to ``address`` again: libzmq leaves a socket refused at the Curve
    handshake with no peer, for good, so a key authorised since was served only to a new client."""
    with contextlib.suppress(zmq.ZMQError):  # the refused connection may be gone already
        socket.disconnect(address)
    socket.connect(address)
