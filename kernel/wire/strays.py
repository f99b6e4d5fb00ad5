"""Messages on the wrong endpoint: what a daemon says of them, and what it answers a worker that came to the wrong one.

A worker's DEALER connects to any ZeroMQ ROUTER, so a worker given a client endpoint (``heirloom worker --connect``
with the broker's client address instead of its ``--worker-bind`` one, or a one-process daemon's) had its heartbeats
accepted, logged ``connected to the broker``, and sat idle for good, while the daemon only counted them in
``dropped_frames``. Now a client endpoint answers a worker's control message (``HEARTBEAT``, ``GONE``) with
``["", "WRONG_ENDPOINT", msgpack str]`` saying where workers connect, and logs it once per peer; and a broker's
worker endpoint answers a new worker's first heartbeat with ``["", "WELCOME"]``: a heirloom worker says it is
connected only once it has had that answer (docs/PROTOCOL.md, Worker protocol).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from heirloom.wire.broker_workers import WORKER_COMMANDS, misread
from heirloom.wire.protocol import CONTROL, MAX_ENVELOPE_FRAME, packb
from heirloom.wire.throttle import OncePerPeer

#: A broker's answer to a new worker's first heartbeat on its worker endpoint.
WELCOME = b"WELCOME"
#: A client endpoint's answer to a worker's control message: ``["", WRONG_ENDPOINT, msgpack str]``.
WRONG_ENDPOINT = b"WRONG_ENDPOINT"
#: A broker's answer to each heartbeat from a worker whose Curve key left --curve-workers since it connected
#: (it was dropped, and routes nothing to it): ``["", REFUSED, msgpack str]``, the str saying why.
REFUSED = b"REFUSED"
KEY_REMOVED = [CONTROL, REFUSED, packb("its Curve key is not in the broker's --curve-workers folder (removed)")]
#: Lines a minute about peers on the wrong endpoint (once per peer; then a count).
STRAY_LINES_PER_MINUTE = 10


def workers_go(worker_address: str | None, broker: bool) -> str:
    """What a client endpoint tells a worker that connected to it: where workers go instead."""
    if not broker:
        return (
            "this is the client endpoint of a heirloom daemon serving in one process, which takes no workers "
            "(`serve --workers N --worker-bind ADDR` starts a broker that takes them at ADDR)"
        )
    if worker_address is None:
        return (
            "this is the client endpoint of a heirloom broker that takes only its own local workers "
            "(`serve --worker-bind ADDR` opens ADDR to workers on other hosts)"
        )
    return f"this is the client endpoint of a heirloom broker; its workers connect to {worker_address}"


class Strays:
    """Says, once per peer and at most STRAY_LINES_PER_MINUTE lines a minute, what came to the wrong endpoint:
    a worker's control message on a client endpoint (answered WRONG_ENDPOINT), and (a broker) a message on the
    worker endpoint that is neither a control message nor a reply."""

    def __init__(self, log: logging.Logger, send: Callable[[list[bytes]], Any], workers_go: str):
        self.log = log
        self._send = send
        self._workers_go = workers_go
        self._answer = [CONTROL, WRONG_ENDPOINT, packb(workers_go)]
        self.misreads = OncePerPeer(STRAY_LINES_PER_MINUTE, "lines about unreadable messages on the worker endpoint")
        self._workers = OncePerPeer(STRAY_LINES_PER_MINUTE, "lines about workers on the client endpoint")

    def roll(self) -> None:
        """Say how many lines the last minute held back (the daemon's periodic check)."""
        self.misreads.budget.roll(self.log)
        self._workers.budget.roll(self.log)

    def on_client_endpoint(self, frames: list[bytes]) -> bool:
        """Whether ``frames`` (a client endpoint's message that is no request envelope) is a worker's control
        message; if so, answered WRONG_ENDPOINT and logged once for its peer."""
        if len(frames) < 3 or frames[1] != CONTROL or frames[2] not in WORKER_COMMANDS:
            return False
        if len(frames[0]) > MAX_ENVELOPE_FRAME:  # no worker's identity: dropped, as a request with it is
            return False
        if self._workers.first(frames[0]):
            said = "a worker connected to the client endpoint (it sent a %s there), told: %s"
            self._workers.budget.log(self.log, logging.WARNING, said, frames[2].decode(), self._workers_go)
        self._send([frames[0], *self._answer])
        return True

    def misread(self, frames: list[bytes], workers: Mapping[bytes, Any], tag_bytes: int, failed: bool = False) -> None:
        """A message on the worker endpoint the broker cannot read: said once per peer (a worker of another
        language repeats it every heartbeat); ``failed``: a reply whose request the broker answered UNAVAILABLE."""
        if self.misreads.first(frames[0]):
            what = "answered UNAVAILABLE a request whose reply it cannot read" if failed else "ignored a message"
            said = "%s on the worker endpoint from %s: %s (docs/PROTOCOL.md, Worker protocol)"
            peer = peer_name(workers, frames[0])
            self.misreads.budget.log(self.log, logging.WARNING, said, what, peer, misread(frames[1:], tag_bytes))


def peer_name(workers: Mapping[bytes, Any], identity: bytes) -> str:
    """How the broker's log names a peer of its worker endpoint."""
    worker = workers.get(identity)
    return f"worker pid {worker.pid}" if worker is not None else "a peer that is no worker yet"
