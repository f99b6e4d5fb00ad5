"""Idempotency keys: a retried write is answered from memory instead of applied twice.

A request with ``idempotency_key`` K on route R is keyed ``(R, K)``. While the first
attempt runs, repeats wait for it; once it succeeds its reply is remembered (the most
recent ``capacity`` replies), so a client that lost the reply can retry safely. Only
the I/O thread touches this object.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from heirloom.wire.call import Call
from heirloom.wire.protocol import OK

#: ``(status, body, version)`` of a finished call.
Reply = tuple[str, Any, "str | None"]


class IdempotencyCache:
    """Remembered replies by key, and the calls waiting on a key's first attempt."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._replies: OrderedDict[tuple[str, Any], Reply] = OrderedDict()
        self._waiting: dict[tuple[str, Any], list[Call]] = {}

    def remembered(self, call: Call) -> Reply | None:
        """The reply of an earlier successful attempt with ``call``'s key, if remembered."""
        assert call.idem is not None
        return self._replies.get(call.idem)

    def wait_for_first(self, call: Call) -> bool:
        """True if an attempt with ``call``'s key is running: ``call`` then gets its reply
        from :meth:`finish`. False means ``call`` is the first attempt."""
        assert call.idem is not None
        waiters = self._waiting.get(call.idem)
        if waiters is None:
            return False
        waiters.append(call)
        return True

    def begin(self, call: Call) -> None:
        """``call`` is the first attempt for its key: repeats wait for it from now on."""
        assert call.idem is not None
        self._waiting[call.idem] = []

    def finish(self, call: Call, reply: Reply) -> list[Call]:
        """Record the first attempt's reply (a success only); return the calls to answer with it."""
        assert call.idem is not None
        waiters = self._waiting.pop(call.idem, [])
        if reply[0] == OK:
            self._replies[call.idem] = reply
            while len(self._replies) > self.capacity:
                self._replies.popitem(last=False)
        return waiters
