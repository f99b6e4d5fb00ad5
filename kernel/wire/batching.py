"""Adaptive batching: coalesce concurrent requests of one route into one handler call.

A batcher thread runs the handler off the I/O loop. When the model is idle it runs what
is queued at once, so a lone request never waits for company; while the model computes,
requests queue, and the next batch is whatever arrived meanwhile, up to ``max_batch``
items (not requests). ``max_wait_ms`` only matters under load: when requests were already
waiting as the last batch finished, the batcher may linger that long (from the first
arrival) for a fuller batch, and no longer once the route's queue holds ``[server] max_queue``
requests (no more can come: a ``max_batch`` above that is never reached). Requests whose
deadline has passed are answered DEADLINE_EXCEEDED without being computed. If the handler
raises for a batch, each request is retried alone, so one bad input fails only itself.

A request that finds the whole daemon idle need not cross to this thread at all:
:meth:`Batcher.run_here` computes it on the I/O thread (the server decides when), which
spares two thread wake-ups and GIL hand-overs, about 0.2-0.4 ms on a multi-core machine.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Set
from typing import Any

from heirloom.core.components import Route
from heirloom.limits import shortened
from heirloom.wire.call import Call, Complete, deadline_body, fail, invalid_part, named, settle
from heirloom.wire.protocol import DEADLINE_EXCEEDED, RequestError
from heirloom.wire.stats import RouteStats
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.server")
BATCH_FAILED = (
    "%s: a batch of %d raised %s; computing each request alone, on its input as the handler left it (once a minute)"
)


class BatchShapeError(TypeError):
    """A batched handler's result is not a list of one result per input."""


def one_per_input(results: Any, count: int) -> list[Any]:
    """A batched handler's ``results`` as a list of ``count`` results: a list, a tuple, or any
    other sized sequence whose items are listed once (so one whose ``len`` and iteration
    disagree cannot answer some requests twice or leave one unanswered); a numpy array's
    rows as plain values. BatchShapeError for a map, text, bytes, a set (no order), a scalar
    or the wrong count."""
    unordered = isinstance(results, Mapping | Set | str | bytes | bytearray | memoryview)
    if not unordered and hasattr(results, "tolist") and hasattr(results, "ndim"):  # numpy: int64s msgpack can't send
        results = results.tolist()
    # one more than wanted at most: an iteration that never ends is a wrong count, not a wedged thread
    listed = None if unordered or not hasattr(results, "__len__") else list(itertools.islice(results, count + 1))
    if listed is None or len(listed) != count:
        if listed is None:
            got = f"a {type(results).__name__}"
        else:
            got = f"more than {count} results" if len(listed) > count else f"{len(listed)} results"
        raise BatchShapeError(f"the batched handler returned {got} for {count} inputs (a list of one result per input)")
    return listed


class Batcher:
    """One thread per batched route; ``put`` is called from the I/O thread."""

    def __init__(self, name: str, route: Route, stats: RouteStats, complete: Complete, max_queue: int):
        self.name = name
        self.max_queue = max_queue
        self.route = route
        self.stats = stats
        self.complete = complete
        self._queue: deque[Call] = deque()
        self._items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False  # requests were waiting when the last batch finished
        self._computing = False  # a batch is being computed, on this thread or by run_here
        self._batch_failed = Every(60.0)  # a batch that raised, said at most once a minute
        #: Seconds the last batch took to compute and its payload bytes: scaled to a request's
        #: size, they bound how long run_here may hold up its caller (unknown until the first
        #: batch, which runs on this thread).
        self.last_compute = float("inf")
        self.last_size = 1
        self._thread = threading.Thread(target=self._loop, name=f"heirloom-batch:{name}", daemon=True)
        self._thread.start()

    def run_here(self, call: Call, complete: Complete, longest: float) -> bool:
        """Compute ``call`` alone on the calling thread and hand its result to ``complete``;
        False (nothing done) when this route has work queued or computing, or its last batch,
        scaled up to ``call``'s size when larger, took longer than ``longest`` seconds (the
        calling thread serves nothing else meanwhile: a request far larger than the last
        ones goes to this thread)."""
        with self._cond:
            if self._queue or self._computing or self.last_compute * max(1.0, call.size / self.last_size) > longest:
                return False
            self._computing = True
        try:
            live = self._start([call], complete)
            if live:
                self._compute(live, complete)
        finally:
            with self._cond:
                self._computing = False
        return True

    def put(self, call: Call) -> None:
        with self._cond:
            self._queue.append(call)
            self._items += call.items
            self._cond.notify()

    def abandon(self) -> None:
        """Drop every queued request (the grace period is over: they were answered) and let
        the thread end after the batch it may be computing."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._items = 0
            self._cond.notify()

    def stop(self, timeout: float | None = None) -> bool:
        """End the thread after what is queued; True once it has ended (within ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next_batch(self) -> list[Call] | None:
        max_batch = self.route.max_batch
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            if self._busy and self.route.max_wait_ms > 0:
                flush_at = self._queue[0].received + self.route.max_wait_ms / 1000
                while self._items < max_batch and len(self._queue) < self.max_queue and not self._stopping:
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
            self._computing = True
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = self._start(batch, self.complete)
            if live:
                self._compute(live, self.complete)
            with self._cond:
                self._computing = False

    def _start(self, calls: list[Call], complete: Complete) -> list[Call]:
        """The calls still within their deadline and with a valid body, marked started and
        counted as one batch; the others are answered DEADLINE_EXCEEDED or INVALID_ARGUMENT
        without being computed. A body the I/O thread left unchecked is validated here."""
        now = time.perf_counter()
        live: list[Call] = []
        for call in calls:
            call.started = now  # its queue_ms, computed or not
            if call.deadline is not None and now > call.deadline:
                complete(call, DEADLINE_EXCEEDED, deadline_body(), None, 0.0)
            elif not call.unchecked or self._validate(call, complete):
                live.append(call)
        if live:
            self.stats.record_batch(sum(call.items for call in live))
        return live

    def _validate(self, call: Call, complete: Complete) -> bool:
        """Structure ``call``'s body into its route's input; False (answered) when invalid."""
        try:
            call.body = call.endpoint.validate(call.body)
        except RequestError as exc:
            fail(call, exc, complete, self.name)
            return False
        except Exception as exc:  # noqa: BLE001 - as the I/O thread answers a body it cannot structure
            fail(call, invalid_part("body", exc), complete, self.name)
            return False
        call.unchecked = False
        return True

    def _compute(self, calls: list[Call], complete: Complete) -> None:
        began = time.perf_counter()
        try:
            results = one_per_input(self.route.handler([call.body for call in calls]), len(calls))
        except BaseException as exc:  # noqa: BLE001 - isolate the failing request (a plugin's SystemExit too)
            if isinstance(exc, BatchShapeError) and len(calls) > 1:  # a plugin's bug: said, not hidden by the retry
                log.error("%s: %s; computing each request alone", named(calls[0].endpoint), exc)  # its plugin too
            elif len(calls) > 1 and not isinstance(exc, RequestError):  # one the retries may hide (h433 F6)
                said = f"{type(exc).__name__}: {shortened(str(exc))}"
                self._batch_failed.log(log, logging.WARNING, BATCH_FAILED, named(calls[0].endpoint), len(calls), said)
            if len(calls) == 1:
                fail(calls[0], exc, complete, self.name)
                return
            for call in calls:
                self._compute([call], complete)
            return
        compute = self.last_compute = time.perf_counter() - began
        self.last_size = max(1, sum(call.size for call in calls))
        self._busy = bool(self._queue)  # judged before the replies go out and invite new requests
        for call, result in zip(calls, results, strict=True):
            settle(call, result, complete, compute)
