"""A worker's side of its broker link (``heirloom worker``, or a worker the broker spawned):
heartbeats, the broker's control messages, and whether the broker can be reached at all.

A worker's DEALER cannot queue a message while it has no connection, so a heartbeat that
could not be sent is how a worker knows its broker is unreachable (a wrong address, a broker
not started yet or gone). The worker says so in its log rather than only "ready": requests
reach it through the broker alone. A heartbeat sent proves only that some ZeroMQ peer took it:
the worker says it is connected once the broker answered its first one (``WELCOME``), and says
what a client endpoint answers (``WRONG_ENDPOINT``: ``--connect`` named the wrong address) and when the broker
dropped it (``REFUSED``: its Curve key was removed from ``--curve-workers``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import zmq

from heirloom.core.errors import HeirloomError
from heirloom.wire.broker_workers import read_heartbeat
from heirloom.wire.builtin_routes import for_clients, worker_status
from heirloom.wire.local_workers import PARENT_ENV, local_token
from heirloom.wire.protocol import CONTROL, packb, unpackb
from heirloom.wire.strays import REFUSED, WELCOME, WRONG_ENDPOINT
from heirloom.wire.throttle import RELOAD_LOG_SECONDS, Every

if TYPE_CHECKING:
    from heirloom.wire.server import Server

log = logging.getLogger("heirloom.server")
#: Heartbeats in a row that could not be sent before the worker says it cannot reach its broker.
MISSED_BEATS = 3
#: Seconds the worker waits, when it cannot reach its broker, for the broker's host name to resolve (on a
#: thread: a DNS server that does not answer takes longer, and the worker's loop goes on after this).
RESOLVE_SECONDS = 1.0
#: Why else a broker that takes no heartbeat may not take this worker's.
CURVE_HINT = (  # the server key too: a broker restarted with a rotated one refused the worker (checker h423 F5)
    "a broker serving Curve also refuses a worker whose key is not in its --curve-workers folder, or whose "
    "--curve-server is not the broker's public key now"
)


class BrokerLink:
    """Heartbeats ``server``'s status to the broker at ``address`` and obeys its commands."""

    def __init__(self, server: Server, address: str):
        self.server = server
        self.address = address
        self._last_beat = 0.0
        self._reached = False
        self._unsent = 0
        #: Whether a broker's worker endpoint answered (WELCOME), and heartbeats sent without such an answer.
        self._welcomed = False
        self._unanswered = 0
        self._wrong = Every(60.0)
        self._wrong_endpoint = False  # the peer said it is no broker's worker endpoint, and no WELCOME since
        self._refused = Every(60.0)
        self._told_failure = False
        self._reloads = Every(RELOAD_LOG_SECONDS)
        #: When this worker's first draining heartbeat went out, and whether the broker has said DRAIN
        #: (it does so once it routes nothing more here: at its own drain, or answering that heartbeat).
        self._drain_said: float | None = None
        self._told_drain = False
        #: The broker that spawned this worker (a local one), whose exit ends it too.
        self._parent = int(os.environ.pop(PARENT_ENV, "0") or 0)

    def beat_soon(self) -> None:
        """Send the next heartbeat on the loop's next turn (the status changed)."""
        self._last_beat = 0.0

    def where(self) -> str:
        """Where requests come from, for the worker's "ready" line: not the broker at ``address`` once that
        peer said it is no broker's worker endpoint (the line read as success after that error)."""
        if self._wrong_endpoint:
            return f"; but no request reaches it: {self.address} is not a broker's worker endpoint (correct --connect)"
        return f"; requests come through the broker at {self.address}"

    def beat(self) -> None:
        """Send a heartbeat if one is due (called every turn of the I/O loop)."""
        now = time.monotonic()
        if now - self._last_beat < self.server.settings.heartbeat:
            return
        self._last_beat = now
        if self._parent and os.getppid() != self._parent and not self.server.draining:
            log.warning("the broker (pid %d) that started this worker is gone; stopping", self._parent)
            self.server.request_drain()
        if self.server.draining and self._drain_said is None:
            self._drain_said = now
        outbox = self.server.outbox
        unsent = outbox.undeliverable
        outbox.send_now([CONTROL, b"HEARTBEAT", packb(worker_status(self.server))])
        self._note(outbox.undeliverable == unsent)

    def owed(self) -> bool:
        """Whether a draining worker may still get requests to answer before it says GONE: some wait on
        its socket, or its broker has not said DRAIN since it stopped routing here (everything it routed
        comes before that DRAIN on the connection), waited for at most MISSED_BEATS heartbeats (a broker
        gone never says it). A GONE before it failed the requests still on their way (8 of 40, in a check)."""
        if self.server.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return True
        if self._told_drain or (self._parent and os.getppid() != self._parent):
            return False
        beats = MISSED_BEATS * self.server.settings.heartbeat
        return self._drain_said is None or time.monotonic() - self._drain_said < beats

    def leave(self) -> None:
        """Tell the broker this worker is gone (drained): it forgets it at once instead of
        after missed heartbeats."""
        self.server.outbox.send([CONTROL, b"GONE"])

    def check_heartbeat(self) -> None:
        """HeirloomError, before the worker says it is ready, when its broker would refuse its heartbeat (read as a
        broker reads it): such a worker was never taken, "ready" in its log, no reason in the broker's ``_ready``."""
        try:
            read_heartbeat(packb(worker_status(self.server)))
        except ValueError as exc:
            raise HeirloomError(f"the broker would refuse this worker's heartbeat: {exc}") from None

    def failed(self, error: BaseException) -> None:
        """Tell the broker why this worker's system did not start, before it exits: its
        clients learn it from ``_ready`` and ``_stats``, not only this worker's log (once)."""
        if self._told_failure:
            return
        self._told_failure = True
        said = for_clients(str(error), self.server.system)
        self.server.outbox.send([CONTROL, b"GONE", packb({"pid": os.getpid(), "error": said, **local_token()})])

    def _note(self, sent: bool) -> None:
        if sent and not self._welcomed:  # taken by some peer, which has not shown it is a broker's worker endpoint
            self._unsent, self._unanswered = 0, self._unanswered + 1
            if self._unanswered == MISSED_BEATS and not self.server.draining:  # stopping: no advice to give
                log.warning(
                    "the peer at %s takes this worker's heartbeats but has not answered as a broker's worker "
                    "endpoint after %d of them: check that --connect is the broker's --worker-bind address (a "
                    "heirloom broker answers a new worker's first heartbeat at once; a broker of an older heirloom "
                    "answers none, and this worker is served all the same)",
                    self.address,
                    MISSED_BEATS,
                )
            return
        if sent:
            if not self._reached:
                log.info("connected to the broker at %s", self.address)
            self._reached, self._unsent = True, 0
            return
        self._unsent += 1
        if self._unsent == MISSED_BEATS:
            why = unresolved(self.address)  # a name that does not resolve: said, not only the Curve guess
            log.warning(
                "cannot reach the broker at %s%s; still trying (requests reach this worker only through it; %s)",
                self.address,
                f": {why}" if why else "",
                "the name may resolve later" if why else CURVE_HINT,
            )
            self._reached = False

    def control(self, frames: list[bytes]) -> None:
        """A command from the broker: ``DRAIN`` (it is shutting down, or answers this worker's draining
        heartbeat: either way it routes nothing more here), ``RELOAD`` (``_reload``), or an answer to a
        heartbeat (``WELCOME``, ``WRONG_ENDPOINT``, ``REFUSED``)."""
        command = frames[1] if len(frames) > 1 else b""
        if command == WELCOME:
            self._welcomed, self._wrong_endpoint = True, False
            self._note(True)
        elif command == WRONG_ENDPOINT:
            said = _text(frames[2]) if len(frames) > 2 else "(no reason given)"
            wrong = "%s is not a broker's worker endpoint; no request reaches this worker there: %s (correct --connect)"
            self._wrong.log(log, logging.ERROR, wrong, self.address, said)
            self._wrong_endpoint = True
            self._unanswered = max(self._unanswered, MISSED_BEATS)  # said: no second warning that it did not answer
        elif command == REFUSED:  # dropped by the broker, which answers each heartbeat so while it lasts
            said = _text(frames[2]) if len(frames) > 2 else "(no reason given)"
            refused = "refused by the broker at %s: %s; no request reaches this worker until it takes it again"
            self._refused.log(log, logging.ERROR, refused, self.address, said)
            # its WELCOME, once it takes this worker again (a key put back), says "connected" anew
            self._welcomed = self._reached = False
            self._unanswered = max(self._unanswered, MISSED_BEATS)  # said: not "has not answered as a broker"
        elif command == b"DRAIN":
            self._told_drain = True
            self.server.request_drain()
        elif command == b"RELOAD" and not self.server.mounted:  # still loading: checked once the models have loaded
            self.server.reload_asked = True
        elif command == b"RELOAD" and self.server.system.serving is not None:
            checking = self.server.system.serving.check_now()
            said = ", ".join(checking) or "no model"
            self._reloads.log(log, logging.INFO, "_reload (from the broker): checking the store for %s", said)


def unresolved(address: str, wait: float = RESOLVE_SECONDS) -> str | None:
    """Why a ``tcp://`` ``address``'s host name cannot be the broker's: it does not resolve (or not within ``wait``
    seconds); None when it resolves or names an IP address, and for other transports."""
    host = address.removeprefix("tcp://").rsplit(";", 1)[-1].rpartition(":")[0].strip("[]")
    if not address.startswith("tcp://") or host in ("", "*"):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    said: list[OSError | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            said.append(None)
        except OSError as exc:  # socket.gaierror: no such name, or no DNS server answers
            said.append(exc)

    thread = threading.Thread(target=resolve, name="heirloom-resolve", daemon=True)
    thread.start()
    thread.join(wait)
    if not said:
        return f"{host} did not resolve within {wait:g}s"
    return None if said[0] is None else f"{host} does not resolve ({said[0].strerror or said[0]})"


def _text(frame: bytes) -> str:
    """A WRONG_ENDPOINT's reason: a msgpack string from a peer, shown cut; anything else, its repr."""
    try:
        said = unpackb(frame)
    except Exception:  # noqa: BLE001 - msgpack raises several types; each is no text to show
        said = frame
    return said[:300] if isinstance(said, str) else repr(said)[:300]
