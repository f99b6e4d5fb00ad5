"""Dynamic batching: coalesce concurrent requests of one route into one handler call.

A batcher thread waits for the first request, then collects until ``max_batch`` items
(not requests) or ``max_wait_ms`` after the first arrival, drops requests whose deadline
has passed (DEADLINE_EXCEEDED) and runs the handler off the I/O loop. If the handler
raises for a batch, each request is retried alone, so one bad input fails only itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from heirloom.components import Route, Versioned
from heirloom.protocol import DEADLINE_EXCEEDED, INTERNAL, OK, RequestError
from heirloom.stats import RouteStats

log = logging.getLogger("heirloom.server")

#: ``complete(call, status, body, version, compute_seconds)``, callable from any thread.
Complete = Callable[[Any, str, Any, "str | None", float], None]


def items_of(route: Route, body: Any) -> int:
    """How many items a request contributes to a batch (1 unless the route counts them)."""
    if route.items is None:
        return 1
    return max(1, route.items(body))


def deadline_body() -> dict[str, Any]:
    return {
        "code": DEADLINE_EXCEEDED,
        "message": "the deadline passed before the request was computed",
        "retryable": False,
    }


def settle(call: Any, result: Any, complete: Complete, compute: float) -> None:
    """Answer ``call`` with a handler result (a value, a Versioned or a RequestError)."""
    if isinstance(result, RequestError):
        complete(call, result.code, result.body(), None, compute)
    elif isinstance(result, Versioned):
        complete(call, OK, result.value, result.version, compute)
    else:
        complete(call, OK, result, None, compute)


def fail(call: Any, exc: BaseException, complete: Complete, where: str) -> None:
    """Answer ``call`` with the error ``exc`` raised while handling it."""
    if isinstance(exc, RequestError):
        complete(call, exc.code, exc.body(), None, 0.0)
        return
    log.error("%s failed: %s", where, exc, exc_info=exc)
    complete(
        call,
        INTERNAL,
        {"code": INTERNAL, "message": f"{where} failed: {type(exc).__name__}: {exc}", "retryable": False},
        None,
        0.0,
    )


class Batcher:
    """One thread per batched route; ``put`` is called from the I/O thread."""

    def __init__(self, name: str, route: Route, stats: RouteStats, complete: Complete):
        self.name = name
        self.route = route
        self.stats = stats
        self.complete = complete
        self._queue: deque[Any] = deque()
        self._items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"heirloom-batch:{name}", daemon=True)
        self._thread.start()

    def put(self, call: Any) -> None:
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

    def _next_batch(self) -> list[Any] | None:
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
            live = []
            for call in batch:
                if call.deadline is not None and now > call.deadline:
                    self.complete(call, DEADLINE_EXCEEDED, deadline_body(), None, 0.0)
                else:
                    call.started = now
                    live.append(call)
            if live:
                self.stats.batch_sizes.append(sum(call.items for call in live))
                self._compute(live)

    def _compute(self, calls: list[Any]) -> None:
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
