"""Per-client token buckets: the network limits of a resource manager (``ClientLimits``).

A client is its Curve key when the socket authenticates, else its connection (the ROUTER
routing id). Each request takes one request token and its size in byte tokens
(its bytes and ``FRAME_BYTES`` per frame); buckets
refill at the configured rates up to ``burst_s`` seconds' worth. Byte tokens may go into
debt by one message, so a message larger than the bucket still passes once the client has
been quiet long enough, then waits for the debt to be repaid. A refusal names the limit
and carries ``retry_after_ms``: when the bucket will allow the next request.

Runs on the I/O thread (the server's, or the broker's with ``--workers N``): no locks. The
table of buckets is bounded; the least recently seen client is forgotten first (it comes
back with a full bucket, which only forgives a client that was idle).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from heirloom.core.components import ClientLimits
from heirloom.wire.auth import CurveServer
from heirloom.wire.protocol import INVALID_ARGUMENT, MAX_BUFFERS, RESOURCE_EXHAUSTED, UNAUTHENTICATED, RequestError
from heirloom.wire.transport import Overlong

MAX_CLIENTS = 65_536
#: Byte tokens a frame costs beyond its payload: what libzmq holds per frame (a 64-byte message), so a
#: flood of empty frames is charged for what it costs the daemon, not for the nothing it carries.
FRAME_BYTES = 64


class ClientBuckets:
    def __init__(self, limits: ClientLimits, max_clients: int = MAX_CLIENTS):
        self.limits = limits
        self.max_clients = max_clients
        self.request_cap = max(1.0, limits.requests_per_s * limits.burst_s)
        self.byte_cap = limits.bytes_per_s * limits.burst_s
        #: client -> [request tokens, byte tokens, last refill]
        self._buckets: OrderedDict[Any, list[float]] = OrderedDict()
        self.refused = 0
        self.bytes_in = 0
        self.requests = 0

    def take(self, client: Any, size: int) -> None:
        """Charge one request of ``size`` bytes to ``client``, or raise RESOURCE_EXHAUSTED."""
        now = time.monotonic()
        limits = self.limits
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = [self.request_cap, self.byte_cap, now]
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed = now - bucket[2]
            bucket[0] = min(self.request_cap, bucket[0] + elapsed * limits.requests_per_s)
            bucket[1] = min(self.byte_cap, bucket[1] + elapsed * limits.bytes_per_s)
            bucket[2] = now
        self.requests += 1
        self.bytes_in += size
        if limits.requests_per_s and bucket[0] < 1.0:
            self._refuse(f"{limits.requests_per_s:,.10g} requests/s", (1.0 - bucket[0]) / limits.requests_per_s)
        if limits.bytes_per_s and bucket[1] <= 0.0:
            self._refuse(f"{limits.bytes_per_s:,.10g} bytes/s", -bucket[1] / limits.bytes_per_s)  # 2,000,000 (h435 F2)
        bucket[0] -= 1.0
        bucket[1] -= size

    def _refuse(self, rate: str, wait_s: float) -> None:
        self.refused += 1
        raise RequestError(
            RESOURCE_EXHAUSTED,
            f"this client is over its rate limit ({rate}); retry after the hinted pause",
            retry_after_ms=max(1, int(wait_s * 1000) + 1),
        )

    def usage(self) -> dict[str, Any]:
        """Totals for ``_stats``: limits, clients tracked, requests and bytes seen, refusals."""
        return {
            "requests_per_s": self.limits.requests_per_s,
            "bytes_per_s": self.limits.bytes_per_s,
            "clients": len(self._buckets),
            "requests": self.requests,
            "bytes_in": self.bytes_in,
            "refused": self.refused,
        }


#: Routes no rate limit refuses: a load balancer's probes, which share a gateway's (or a
#: proxy's) connection with its busy users and must not read a busy daemon as a failing one.
#: Refusing one costs the I/O thread what answering it does.
PROBES = frozenset({"_health", "_ready"})
#: A msgpack nil: a bare probe's body, its last frame (no buffers after it).
NIL = b"\xc0"


def vet_sender(
    curve: CurveServer | None,
    buckets: ClientBuckets | None,
    user: Any,
    envelope: list[Any],
    frames: list[Any],
    route: Any,
) -> None:
    """What the server and the broker check of every request's sender before routing it: a
    Curve key still authorised (``user`` is None without Curve), then its rate limits (not
    for a bare probe: one of the ``PROBES`` with a nil body; one with a body, refused anyway,
    is charged, or it carried bytes past the byte limit), each frame charged ``FRAME_BYTES`` more than
    its bytes; then that it carries at most ``MAX_BUFFERS`` buffer frames (a cut :class:`Overlong` more)."""
    if user is not None and not curve.is_client(user):  # type: ignore[union-attr]  # a user only with Curve
        raise RequestError(UNAUTHENTICATED, "this client's Curve key is no longer authorised")
    bare = route in PROBES and len(frames) == len(envelope) + 3 and frames[-1] == NIL  # signature, header, nil
    cut = type(frames) is Overlong
    sent = frames.sent if cut else len(frames)  # type: ignore[attr-defined]  # an Overlong's
    if buckets is not None and not bare:  # a probe with a body, or buffers after a nil one, is charged
        size = frames.sent_bytes if cut else sum(map(len, frames))  # type: ignore[attr-defined]
        buckets.take(envelope[0] if user is None else user, FRAME_BYTES * sent + size)
    if (buffers := sent - len(envelope) - 3) > MAX_BUFFERS:
        raise RequestError(
            INVALID_ARGUMENT,
            f"{buffers} buffer frames sent; a request carries at most {MAX_BUFFERS} (send fewer, larger buffers)",
            "header.buffers",
        )
