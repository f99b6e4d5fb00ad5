"""Multipart send and receive with less per-frame overhead than pyzmq's helpers.

pyzmq's ``send_multipart``/``recv_multipart`` go through Python-level wrappers and enum
flag arithmetic for every frame, which costs more than the libzmq call itself for the
small frames of an RPC (measured: 9.3 µs against 1.8 µs for a four-frame reply). These
bind the Cython methods once and use plain int flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def sender(socket: zmq.Socket, *, nonblocking: bool = False) -> Callable[[Sequence[Any]], None]:
    """``send(frames)`` for ``socket``.

    ROUTER sockets never block (unroutable messages are dropped). A DEALER blocks while it
    has no connected peer, so with ``nonblocking`` the send raises ``zmq.Again`` instead;
    libzmq queues a multipart message atomically, so only the first frame can fail.
    """
    send = _BackendSocket.send.__get__(socket)
    first = _SNDMORE | (_NOBLOCK if nonblocking else 0)

    def send_frames(frames: Sequence[Any]) -> None:
        last = len(frames) - 1
        if last == 0:
            send(frames[0], first & _NOBLOCK)
            return
        send(frames[0], first)
        for index in range(1, last):
            send(frames[index], _SNDMORE)
        send(frames[last], 0)

    return send_frames


def receiver(socket: zmq.Socket, *, with_user: bool = False) -> Callable[[], tuple[list[bytes], str | None]]:
    """``recv()`` for ``socket``: one whole message without blocking (raises ``zmq.Again``)
    and the ZAP User-Id it came with (the client's Curve key) when ``with_user``."""
    if with_user:

        def recv_with_user() -> tuple[list[bytes], str | None]:
            frames = socket.recv_multipart(_NOBLOCK, copy=False)
            return [frame.bytes for frame in frames], frames[-1].get("User-Id")

        return recv_with_user
    recv = _BackendSocket.recv.__get__(socket)

    def recv_frames() -> tuple[list[bytes], str | None]:
        # Frame.more is a plain attribute; getsockopt(RCVMORE) costs an enum conversion
        frame = recv(_NOBLOCK, False)
        frames = [frame.bytes]
        while frame.more:
            frame = recv(_NOBLOCK, False)
            frames.append(frame.bytes)
        return frames, None

    return recv_frames


def drain(
    socket: zmq.Socket, recv: Callable[[], tuple[list[bytes], str | None]], handle: Callable[..., None], limit: int
) -> None:
    """Handle every message ready on ``socket`` (up to ``limit``, so replies get their turn).

    Ending a drain on ``zmq.Again`` costs about 5 us (an exception built in Cython); asking
    ZMQ_EVENTS costs about 2 us. So after the first message (often the only one when
    traffic is light) the socket is asked; only a burst is drained until ``Again``.
    """
    try:
        frames, user = recv()
    except zmq.Again:
        return
    handle(frames, user)
    if not socket.get(_EVENTS) & _POLLIN:
        return
    for _ in range(limit - 1):
        try:
            frames, user = recv()
        except zmq.Again:
            return
        handle(frames, user)
