"""Replies under Curve go back on the connection their request came on, or nowhere.

A ROUTER sends a reply to whichever connection holds the request's routing id when the reply
is sent, and a client may choose its routing id. So when a client disconnected with a
request in flight, another authorised client connecting with the same id would receive the
reply: a leak between keys. libzmq tells which connection a message came on (its file
descriptor, ``ZMQ_SRCFD``) and, through a socket monitor, when a connection closes; it reports
the close before the descriptor can be reused. Each request's routing id is stamped with its
descriptor and the closes seen on it so far; its reply is sent only while that count is
unchanged, and is otherwise counted undeliverable, as a reply to a vanished client is.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from typing import Any

import zmq

from heirloom.core.settings import ServerSettings
from heirloom.wire.transport import Outbox

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SRCFD = int(zmq.SRCFD)
_EVENT = struct.Struct("=HI")  # a monitor event's first frame: event number, value (the fd)
_MONITORS = itertools.count()  # each watch's own inproc address, in a context others may share


class Peer(bytes):
    """A routing id that knows the connection (descriptor, closes seen on it) it arrived on."""

    connection: tuple[int, int]


class ConnectionWatch:
    """Counts the closed connections of one socket, by descriptor. Only its I/O thread calls it."""

    def __init__(self, socket: zmq.Socket, context: zmq.Context):
        address = f"inproc://heirloom-connections-{next(_MONITORS)}"
        socket.monitor(address, zmq.EVENT_DISCONNECTED)
        self._events = context.socket(zmq.PAIR)
        # libzmq's I/O thread blocks when a monitor's queue is full: never let it fill
        self._events.setsockopt(zmq.RCVHWM, 0)
        self._events.connect(address)
        self._closed: dict[int, int] = {}

    def catch_up(self) -> None:
        """Read every close reported so far (also on each turn of the loop, so none pile up)."""
        events, closed = self._events, self._closed
        while events.get(_EVENTS) & _POLLIN:  # asking is cheaper than a zmq.Again raised
            fd = _EVENT.unpack_from(events.recv())[1]
            events.recv()  # the endpoint
            closed[fd] = closed.get(fd, 0) + 1

    def stamp(self, routing_id: bytes, frame: zmq.Frame) -> Peer:
        """``routing_id`` with the connection ``frame`` arrived on."""
        self.catch_up()
        fd = frame.get(_SRCFD)
        peer = Peer(routing_id)
        peer.connection = (fd, self._closed.get(fd, 0))
        return peer

    def still_open(self, routing_id: bytes) -> bool:
        """False when the connection a request came on has closed since."""
        fd, closes = getattr(routing_id, "connection", (-1, 0))
        if fd < 0:
            return True
        self.catch_up()
        return self._closed.get(fd, 0) == closes


class WatchedOutbox(Outbox):
    """An :class:`Outbox` that sends a reply only on the connection its request came on."""

    def __init__(self, socket: zmq.Socket, per_peer: int, total: int, watch: ConnectionWatch):
        super().__init__(socket, per_peer, total)
        self._watch = watch

    def send(self, frames: Sequence[Any], size: int = 0) -> None:
        if self._watch.still_open(frames[0]):
            super().send(frames, size)
        else:
            self.undeliverable += 1


def reply_outbox(socket: zmq.Socket, settings: ServerSettings, watch: ConnectionWatch | None) -> Outbox:
    """The client-facing socket's :class:`Outbox`, bounded by ``settings``; watched under Curve."""
    per_peer, total = settings.reply_backlog_mb << 20, settings.reply_backlog_total_mb << 20
    return Outbox(socket, per_peer, total) if watch is None else WatchedOutbox(socket, per_peer, total, watch)
