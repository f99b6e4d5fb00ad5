"""Replies under Curve go back on the connection their request came on, or nowhere.

A ROUTER sends a reply to whichever connection holds the request's routing id when the reply
is sent, and a client may choose its routing id. So when a client disconnected with a
request in flight, another authorised client connecting with the same id would receive the
reply: a leak between keys. libzmq tells which connection a message came on (its file
descriptor, ``ZMQ_SRCFD``) and, through a socket monitor, when a connection on a descriptor
is accepted and when it closes, each reported before any message of it is read, and a close
before the descriptor can be reused. Each request's routing id is stamped with its
descriptor and the closes seen on it so far, or as gone when no connection is open on that
descriptor when it is read (it waited in the socket's queue while its client left); its
reply is sent only while that count is unchanged, and is otherwise counted undeliverable, as
a reply to a vanished client is. What stays open: a request read after its client left
*and* another connection took its descriptor is stamped with that connection's count
(ZeroMQ's in-band disconnect notice, ``ZMQ_ROUTER_NOTIFY``, is a draft API): only a client
that knows the id can take that reply, so the ids ZeroMQ gives start at a random value
(:func:`client_router`; docs/PROTOCOL.md says what is left to clients that choose their own).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from heirloom.core.settings import ServerSettings
from heirloom.wire.auth import CLIENT_DOMAIN
from heirloom.wire.protocol import MAX_FRAMES
from heirloom.wire.transport import Outbox, receiver

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SRCFD = int(zmq.SRCFD)
_ACCEPTED = int(zmq.EVENT_ACCEPTED)
_EVENT = struct.Struct("=HI")  # a monitor event's first frame: event number, value (the fd)
#: The close count of a request read when no connection was open on its descriptor.
GONE = -1
_MONITORS = itertools.count()  # each watch's own inproc address, in a context others may share
#: How long a new connection may take to finish its ZeroMQ handshake (libzmq's default: 30 s), so
#: connections that never greet, or never prove a key, hold a descriptor only that long.
HANDSHAKE_MS = 10_000


def peer_router(context: zmq.Context) -> zmq.Socket:
    """A ROUTER peers connect to: a handshake of at most HANDSHAKE_MS, and no ZMTP 1.0 peers. A ZAP domain makes
    libzmq close a peer whose first byte is not ZMTP 3's 0xFF (ZMTP 1.0, or an HTTP request sent to the wrong
    port): its handshake counted as done at once, so it held a descriptor with no time limit (checker h310 F1).
    Without a ZAP handler in the context (no Curve) every ZMTP 3 peer is let in as before."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    socket.zap_domain = CLIENT_DOMAIN.encode()
    return socket


def client_router(context: zmq.Context) -> zmq.Socket:
    """The ROUTER clients connect to, with libzmq's routing ids started at a random value.

    libzmq gives a connection that sets no id of its own the next of a counter that starts at
    libc's ``rand()``, which nothing seeds: every daemon's first client was ``00 6b 8b 45 67``,
    the next ``...68``, so a client could work out another's id (see the module's docstring)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):  # no C library to seed: ids stay a counter
        ctypes.CDLL(None).srand(int.from_bytes(os.urandom(4), "little"))
    return peer_router(context)


class Peer(bytes):
    """A routing id that knows the connection (descriptor, closes seen on it) it arrived on."""

    connection: tuple[int, int]


class ConnectionWatch:
    """Which descriptors of one socket have a connection open, and how many closed on each. Only
    its I/O thread calls it."""

    def __init__(self, socket: zmq.Socket, context: zmq.Context):
        address = f"inproc://heirloom-connections-{next(_MONITORS)}"
        socket.monitor(address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._events = context.socket(zmq.PAIR)
        # libzmq's I/O thread blocks when a monitor's queue is full: never let it fill
        self._events.setsockopt(zmq.RCVHWM, 0)
        self._events.connect(address)
        self._closed: dict[int, int] = {}
        self._open: set[int] = set()

    def catch_up(self) -> None:
        """Read every accept and close reported so far (also on each turn of the loop, so none pile up)."""
        events, closed = self._events, self._closed
        while events.get(_EVENTS) & _POLLIN:  # asking is cheaper than a zmq.Again raised
            event, fd = _EVENT.unpack_from(events.recv())
            events.recv()  # the endpoint
            if event == _ACCEPTED:
                self._open.add(fd)
            else:
                self._open.discard(fd)
                closed[fd] = closed.get(fd, 0) + 1

    def stamp(self, routing_id: bytes, frame: zmq.Frame) -> Peer:
        """``routing_id`` with the connection ``frame`` arrived on."""
        self.catch_up()
        fd = frame.get(_SRCFD)
        peer = Peer(routing_id)
        peer.connection = (fd, self._closed.get(fd, 0) if fd in self._open else GONE)
        return peer

    def still_open(self, routing_id: bytes) -> bool:
        """False when the connection a request came on has closed since."""
        fd, closes = getattr(routing_id, "connection", (-1, 0))
        if fd < 0:  # not a client's routing id (nothing stamped it)
            return True
        if closes == GONE:
            return False
        self.catch_up()
        return self._closed.get(fd, 0) == closes


class WatchedOutbox(Outbox):
    """An :class:`Outbox` that sends a reply only on the connection its request came on."""

    def __init__(self, socket: zmq.Socket, per_peer: int, total: int, watch: ConnectionWatch):
        super().__init__(socket, per_peer, total)
        self._watch = watch

    def _deliver(self, frames: Sequence[Any], size: int, instead: Callable[[int, int], None] | None) -> bool:
        if self._watch.still_open(frames[0]):  # asked again for a reply that waited (Outbox.flush)
            return super()._deliver(frames, size, instead)
        self.undeliverable += 1
        return True


def reply_outbox(socket: zmq.Socket, settings: ServerSettings, watch: ConnectionWatch | None) -> Outbox:
    """The client-facing socket's :class:`Outbox`, bounded by ``settings``; watched under Curve."""
    per_peer, total = settings.reply_backlog_mb << 20, settings.reply_backlog_total_mb << 20
    return Outbox(socket, per_peer, total) if watch is None else WatchedOutbox(socket, per_peer, total, watch)


def client_receiver(
    socket: zmq.Socket, watch: ConnectionWatch | None, *, capped: bool = True
) -> Callable[[], tuple[list[bytes], str | None]]:
    """The client-facing socket's receiver: a message's frames kept up to ``MAX_FRAMES`` (unless not
    ``capped``: a worker's socket, which gets only what its broker checked); the Curve key and the
    connection with each message under Curve (``watch``)."""
    stamp = watch.stamp if watch is not None else None
    return receiver(socket, max_frames=MAX_FRAMES if capped else None, with_user=watch is not None, stamp=stamp)
