"""The deadlines of the requests a broker forwarded to its workers.

A worker answers ``DEADLINE_EXCEEDED`` itself when a request's budget runs out in its queue,
but a worker that is stopped (SIGSTOP, a paused VM) or hung answers nothing: its clients
waited until three heartbeats were missed (2.7 s for a 500 ms budget). The broker answers
each such request ``DEADLINE_EXCEEDED`` at its deadline instead, so a lost process never
leaves a client waiting past it (docs/SCALE.md).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from typing import Any

import attrs

from heirloom.wire.protocol import packb

#: The shortest grace, in seconds, a worker has to answer past a deadline: a budget of 1e-9 ms was answered by
#: the broker before its worker could say more (a key's remembered reply, or that it never ran; checker h427 F2).
SHORTEST_GRACE = 0.1

#: Heap entries of answered requests kept before the heap is rebuilt without them (as many
#: again as are in flight, and this many more): a client sending many quick requests with
#: hour-long budgets must not grow the broker.
SLACK = 1024


def forwarded_header(header: dict[str, Any], budget: float, received: float) -> bytes:
    """The header a worker is sent: ``deadline_ms`` is what is left of the client's ``budget``
    (from ``received``, ``perf_counter``), so the worker's clock does not start it afresh."""
    return packb({**header, "deadline_ms": budget - (time.perf_counter() - received) * 1000})


@attrs.define
class KeyedRun:
    """The requests in flight that share one idempotency key: how many, and when the first is due."""

    count: int
    first_due: float | None


class Deadlines:
    """The forwarded requests that carry a deadline, soonest first: one push per request and
    a look at the head per loop turn, never a scan of every request in flight.

    A request whose deadline passed is *expired*: its client was answered, but the request
    keeps its admission slot and its worker's ``in_flight`` until that worker answers (the
    reply dropped) or is lost, so a hung worker is not handed more work through freed slots.
    """

    def __init__(self, forwarded: Mapping[bytes, Any], longest_grace: float):
        #: The broker's requests in flight, by tag (an answered request's entry is stale).
        self._forwarded = forwarded
        self._longest_grace = longest_grace
        self._heap: list[tuple[float, bytes]] = []
        self._expired: set[bytes] = set()
        #: tag -> idempotency key of each keyed request in flight, and each key's requests in flight
        self._keyed: dict[bytes, Any] = {}
        self._running: dict[Any, KeyedRun] = {}

    def add(self, received: float, budget_ms: float | None, tag: bytes, key: Any = None) -> None:
        """Request ``tag`` (just forwarded), ``received`` at ``perf_counter`` time with ``budget_ms``,
        is due an answer by its deadline plus its grace: as long again, at least SHORTEST_GRACE and at
        most ``longest_grace`` s.
        A repeat of idempotency ``key`` (client, route, key) while it is in flight is due when the
        first is or by its own budget, the later (its worker answers it with the first's reply:
        docs/PROTOCOL.md, Idempotency keys), and a first without a deadline gives it none: a repeat
        sent after the broker timed its first out was answered at once (checker v5 F8)."""
        due = None
        if budget_ms is not None:
            budget = budget_ms / 1000
            due = received + budget + min(max(budget, SHORTEST_GRACE), self._longest_grace)
        if key is not None:
            self._keyed[tag] = key
            if (running := self._running.get(key)) is not None:
                running.count += 1
                due = None if due is None or running.first_due is None else max(due, running.first_due)
            else:
                self._running[key] = KeyedRun(1, due)
        if due is None:
            return
        heapq.heappush(self._heap, (due, tag))
        if len(self._heap) > 2 * len(self._forwarded) + SLACK:
            self._heap = [entry for entry in self._heap if entry[1] in self._forwarded]
            heapq.heapify(self._heap)

    def due(self, now: float) -> list[bytes]:
        """The requests still in flight whose deadline is past ``now``; counted expired from now on."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            tag = heapq.heappop(heap)[1]
            if tag in self._forwarded and tag not in self._expired:
                self._expired.add(tag)
                due.append(tag)
        return due

    def wait_ms(self, now: float, longest: int) -> int:
        """Milliseconds until the next deadline (rounded up), at most ``longest``."""
        if not self._heap:
            return longest
        return max(0, min(longest, int((self._heap[0][0] - now) * 1000) + 1))

    def answered(self, tag: bytes) -> bool:
        """Whether request ``tag``'s client was answered at its deadline already (its worker's
        reply, or its loss, is then told nobody); forgets it either way."""
        if self._keyed and (key := self._keyed.pop(tag, None)) is not None:
            running = self._running[key]
            running.count -= 1
            if not running.count:
                del self._running[key]
        if tag in self._expired:
            self._expired.remove(tag)
            return True
        return False
