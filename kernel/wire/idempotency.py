"""Idempotency keys: a retried write is answered from memory instead of applied twice.

A key belongs to one client (its Curve public key, else its connection) and one route:
another client's key ``"1"`` is a different key. The request body is part of the
promise, as in gRPC and Stripe: the same key with another body is INVALID_ARGUMENT, never
someone else's reply. While the first attempt runs, repeats wait for it; once it succeeds
its encoded reply is remembered, within a budget of entries and of bytes (oldest
forgotten first), so a client that lost the reply can retry safely. Only the I/O thread
touches this object.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from heirloom.wire.call import Call
from heirloom.wire.headers import buffer_specs
from heirloom.wire.protocol import INVALID_ARGUMENT, OK, RequestError, packb

#: What a remembered reply costs beyond its bytes (key, digest, bookkeeping).
ENTRY_OVERHEAD = 256


def body_digest(frames: list[bytes], header: dict[str, Any]) -> bytes:
    """A digest of what "the same request" means: its body and buffer frames, and the ``(dtype, shape)`` of each
    description in the header's ``buffers`` (the same bytes read as another dtype or shape are another request
    to a tensor route). The descriptions count as read: their keys in any order, keys the daemon ignores
    (``"order"``) left out, a shape's ints of any width. ``buffers: []`` stays another request than no
    ``buffers`` (with it, ``{"$buffer": i}`` maps are placeholders and a body nests at most 64 levels)."""
    described = None if header.get("buffers") is None else buffer_specs(header)
    digest = hashlib.blake2b(digest_size=16)
    for frame in (packb(described), *frames):
        digest.update(len(frame).to_bytes(8, "little"))
        digest.update(frame)
    return digest.digest()


class IdempotencyCache:
    """Remembered replies by ``(client, route, key)``, and the calls waiting on a first attempt.

    A reply is whatever the server remembers for a key (its encoded frames); ``size`` is
    what it costs. A reply larger than the whole byte budget is not remembered: a retry of
    it runs again.
    """

    def __init__(self, capacity: int, max_bytes: int):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._replies: OrderedDict[tuple[Any, ...], tuple[bytes, Any, int]] = OrderedDict()
        self._waiting: dict[tuple[Any, ...], tuple[bytes, list[Call]]] = {}

    def remembered(self, call: Call) -> Any | None:
        """The reply of an earlier successful attempt with ``call``'s key, if remembered."""
        assert call.idem is not None
        entry = self._replies.get(call.idem)
        if entry is None:
            return None
        self._same_body(call, entry[0])
        return entry[1]

    def wait_for_first(self, call: Call) -> bool:
        """True if an attempt with ``call``'s key is running: ``call`` then gets its reply
        from :meth:`finish`. False means ``call`` is the first attempt."""
        assert call.idem is not None
        running = self._waiting.get(call.idem)
        if running is None:
            return False
        self._same_body(call, running[0])
        running[1].append(call)
        return True

    def begin(self, call: Call) -> None:
        """``call`` is the first attempt for its key: repeats wait for it from now on."""
        assert call.idem is not None
        self._waiting[call.idem] = (call.digest, [])

    def finish(self, call: Call, status: str, reply: Any, size: int) -> list[Call]:
        """Remember the first attempt's reply (a success only); return the calls to answer with it."""
        assert call.idem is not None
        _, waiters = self._waiting.pop(call.idem, (b"", []))
        cost = size + ENTRY_OVERHEAD
        if status == OK and cost <= self.max_bytes:
            self._replies[call.idem] = (call.digest, reply, cost)
            self.bytes += cost
            while len(self._replies) > self.capacity or self.bytes > self.max_bytes:
                self.bytes -= self._replies.popitem(last=False)[1][2]
        return waiters

    def usage(self) -> dict[str, int]:
        """Remembered replies and what they cost, for ``_stats``."""
        return {"entries": len(self._replies), "bytes": self.bytes, "max_bytes": self.max_bytes}

    @staticmethod
    def _same_body(call: Call, digest: bytes) -> None:
        if call.digest != digest:
            raise RequestError(
                INVALID_ARGUMENT,
                f"idempotency_key {call.idem[-1]!r} was already used by this client on {call.idem[1]} with a "
                "different request body or buffers (their bytes, dtypes or shapes: the same data packed with a map's "
                "keys in another order is another body); use a fresh key for a new request",
                "header.idempotency_key",
            )
