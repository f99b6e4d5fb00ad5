"""Dynamic batching: coalesce concurrent requests of one route into one handler call.

A batcher thread waits for the first request, then collects until ``max_batch`` items
(not requests) or ``max_wait_ms`` after the first arrival, drops requests whose deadline
has passed (DEADLINE_EXCEEDED) and runs the handler off the I/O loop. If the handler
raises for a batch, each request is retried alone, so one bad input fails only itself.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from heirloom.core.components import Route
from heirloom.wire.call import Call, Complete, deadline_body, fail, settle
from heirloom.wire.protocol import DEADLINE_EXCEEDED
from heirloom.wire.stats import RouteStats


class Batcher:
    """One thread per batched route; ``put`` is called from the I/O thread."""

    def __init__(self, name: str, route: Route, stats: RouteStats, complete: Complete):
        self.name = name
        self.route = route
        self.stats = stats
        self.complete = complete
        self._queue: deque[Call] = deque()
        self._items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"heirloom-batch:{name}", daemon=True)
        self._thread.start()

    def put(self, call: Call) -> None:
        with self._cond:
            self._queue.append(call)
            self._items += call.items
            self._cond.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued (waiting at most ``timeout``), then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[Call] | None:
        max_batch, max_wait = self.route.max_batch, self.route.max_wait_ms / 1000
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            flush_at = self._queue[0].received + max_wait
            while self._items < max_batch and not self._stopping:
                remaining = flush_at - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, total = [], 0
            while self._queue and (not batch or total + self._queue[0].items <= max_batch):
                call = self._queue.popleft()
                total += call.items
                batch.append(call)
            self._items -= total
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            now = time.perf_counter()
            live: list[Call] = []
            for call in batch:
                if call.deadline is not None and now > call.deadline:
                    self.complete(call, DEADLINE_EXCEEDED, deadline_body(), None, 0.0)
                else:
                    call.started = now
                    live.append(call)
            if live:
                self.stats.record_batch(sum(call.items for call in live))
                self._compute(live)

    def _compute(self, calls: list[Call]) -> None:
        began = time.perf_counter()
        try:
            results = self.route.handler([call.body for call in calls])
            if len(results) != len(calls):
                raise RuntimeError(f"batched handler returned {len(results)} results for {len(calls)} inputs")
        except Exception as exc:  # noqa: BLE001 - isolate the failing request
            if len(calls) == 1:
                fail(calls[0], exc, self.complete, self.name)
                return
            for call in calls:
                self._compute([call])
            return
        compute = time.perf_counter() - began
        for call, result in zip(calls, results, strict=True):
            settle(call, result, self.complete, compute)
