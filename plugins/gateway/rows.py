"""The rows of OIP infer requests: each one call of the route, sent within the daemon's room."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import heirloom

#: Rows of one infer request in flight at first (the daemon's default route queue is 1,024).
ROWS_IN_FLIGHT = 256

Reply = TypeVar("Reply")


class Rows:
    """Sends the rows of the gateway's infer requests, and counts those in flight at the daemon.

    The daemon may hold fewer rows at once than a request sends (``[resources]
    max_in_flight``, ``[server] max_queue``, with the gateway's other requests counted) and
    refuses the rest RESOURCE_EXHAUSTED: a request larger than its room was a 429 on every try,
    also on an idle daemon. A refused row is sent again once a row of the gateway is answered,
    its own request's first: rows free the room rows need. It is the request's refusal only when
    no row of the gateway was in flight (other clients fill the daemon).
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._waiting: list[asyncio.Future[None]] = []

    async def all(self, call: Callable[[int, float], Awaitable[Reply]], count: int, budget: float) -> list[Reply]:
        """``call(row, seconds_left)`` for rows ``0 .. count - 1`` within ``budget`` seconds, at
        most ROWS_IN_FLIGHT in flight, and after a refusal no more than the daemon held then;
        the replies in row order. A refusal of another kind ends the request, and the rows still
        in flight are cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        replies: list[Reply | None] = [None] * count
        waiting = deque(range(count))
        #: each row in flight, and whether other rows of the gateway were in flight when it was sent
        running: dict[asyncio.Future[Reply], tuple[int, bool]] = {}
        answered: asyncio.Queue[asyncio.Future[Reply]] = asyncio.Queue()  # in the order they finish
        window = ROWS_IN_FLIGHT
        try:
            while waiting or running:
                while waiting and len(running) < window:
                    row = waiting.popleft()
                    future = asyncio.ensure_future(call(row, deadline - loop.time()))
                    future.add_done_callback(self._finished)
                    future.add_done_callback(answered.put_nowait)
                    running[future] = (row, self.in_flight > 0)
                    self.in_flight += 1
                future = await answered.get()
                row, shared = running.pop(future)
                error = future.exception()
                if error is None:
                    replies[row] = future.result()
                    continue
                if not (_busy(error) and (shared or running or self.in_flight)):
                    raise error
                waiting.appendleft(row)
                window = max(1, len(running))  # what the daemon held: sent again once one is answered
                if not running and self.in_flight:  # the gateway's other requests hold the room
                    await self._one_answered(deadline - loop.time())
        finally:
            for future in running:
                future.cancel()
        return replies  # type: ignore[return-value]  # every row answered

    def _finished(self, future: asyncio.Future[Reply]) -> None:
        self.in_flight -= 1
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def _one_answered(self, within: float) -> None:
        """Wait until a row of the gateway is answered, ``within`` seconds at most (the row
        then finds its budget spent)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, max(within, 0.0))


def _busy(error: BaseException) -> bool:
    return isinstance(error, heirloom.RemoteError) and error.code == "RESOURCE_EXHAUSTED"
