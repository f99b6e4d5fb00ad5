"""How much of a broker's time worker heartbeats may take: each connection's, and all of them together.

A heartbeat is a worker's whole status, read on the thread that serves clients: one of the largest a worker may
send (1,000 routes with their metrics, 147 KB) takes tens of milliseconds to check, and a peer sending such
heartbeats as fast as it could (each one legal) left clients unanswered 9.5 to 13 s for 100 of them, and the
broker unresponsive for minutes after a longer flood. So the broker times each heartbeat it reads, and a
connection whose heartbeats took more than its share of the broker's time has its next ones wait: only the latest
waiting one is kept (each is a whole status, superseding those before) and read once the share allows. A waiting
heartbeat still shows its worker alive. A usual worker's heartbeat takes well under a millisecond: it never waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

#: The share of the broker's time the heartbeats of one connection may take (averaged), and of all together.
CONNECTION_SHARE, TOTAL_SHARE = 0.05, 0.25
#: Seconds of reading a connection (or all together) may spend at once, before its share applies.
BURST = 0.1
#: Connections whose latest heartbeat may wait at once: past them, one over its share is dropped unread.
MAX_WAITING = 256
_ALL = b""  # the key of every connection's reading together (a ROUTER never gives a peer an empty identity)


class HeartbeatGate:
    """Hands each heartbeat to ``read`` (``read(identity, frame)``) while its connection's and all
    connections' shares of the broker's time allow, else keeps it, the latest per connection, for
    ``catch_up``; a kept heartbeat of a worker in ``workers`` (by identity) renews its ``last_seen``."""

    def __init__(self, read: Callable[[bytes, bytes], None], workers: Mapping[bytes, Any]):
        self._read = read
        self._workers = workers
        #: identity (or _ALL) -> (seconds it may still spend reading, when that was so); absent: BURST
        self._allowance: dict[bytes, tuple[float, float]] = {}
        #: identity -> its latest heartbeat not read yet, in the order they began to wait
        self._waiting: dict[bytes, bytes] = {}

    def offer(self, identity: bytes, frame: bytes) -> None:
        """A heartbeat received: read now, or kept until its connection's turn."""
        now = time.perf_counter()
        if identity in self._waiting or not self._may_read(identity, now):
            if identity in self._waiting or len(self._waiting) < MAX_WAITING:
                self._waiting[identity] = frame  # an older one waiting is superseded (its place in line is kept)
            worker = self._workers.get(identity)
            if worker is not None:
                worker.last_seen = time.monotonic()
            return
        self._timed(identity, frame, now)

    def catch_up(self) -> None:
        """Read the waiting heartbeats whose connection's share allows it now, longest waiting first."""
        now = time.perf_counter()
        for identity in list(self._waiting):
            if self._may_read(identity, now):
                self._timed(identity, self._waiting.pop(identity), now)
                now = time.perf_counter()
        full = [key for key in self._allowance if key not in self._waiting and self._left(key, now) >= BURST]
        for key in full:  # the same as never seen: forgotten, so the table holds only recent readers
            del self._allowance[key]

    def forget(self, identity: bytes) -> None:
        """A worker dropped: a heartbeat of it still waiting is not read."""
        self._waiting.pop(identity, None)

    def _left(self, key: bytes, now: float) -> float:
        left, at = self._allowance.get(key, (BURST, now))
        return min(BURST, left + (now - at) * (TOTAL_SHARE if key == _ALL else CONNECTION_SHARE))

    def _may_read(self, identity: bytes, now: float) -> bool:
        return self._left(identity, now) > 0 and self._left(_ALL, now) > 0

    def _timed(self, identity: bytes, frame: bytes, start: float) -> None:
        try:
            self._read(identity, frame)
        finally:
            end = time.perf_counter()
            for key in (identity, _ALL):
                self._allowance[key] = (self._left(key, end) - (end - start), end)
