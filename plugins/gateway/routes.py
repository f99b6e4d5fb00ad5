"""What the daemon serves, read from its ``_routes``: plain routes and OIP models.

A route whose ``model`` is set (it predicts one result per body) is an Open Inference
Protocol model named after the route, less a trailing ``.predict``: ``sentiment.predict``
is the model ``sentiment``. The table is read again when it is older than ``ttl``
seconds, so a restarted daemon with other routes is picked up without a gateway restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

import heirloom
from heirloom_plugins.gateway.oip import Signature

#: Seconds a table read for an unknown name stays good enough for the next unknown name.
FRESH_ENOUGH = 1.0
#: The body limit of the built-in routes and of routes the gateway has not seen.
DEFAULT_MAX_PAYLOAD = 64 * 1024


def model_name(route: str) -> str:
    return route.removesuffix(".predict")


def _models(table: RouteTable) -> dict[str, dict[str, Any]]:
    return {model_name(name): entry for name, entry in table.routes.items() if entry.get("model")}


def _signatures(table: RouteTable) -> dict[str, Signature]:
    return {name: Signature.of(entry) for name, entry in table.models.items()}


def _apis(table: RouteTable) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in table.routes:
        api, _, method = name.rpartition(".")
        if api:
            found.setdefault(api, set()).add(method)
    return found


@attrs.frozen
class RouteTable:
    """One reading of ``_routes``; what requests look up in it is computed here, once."""

    routes: dict[str, dict[str, Any]]
    #: ``OIP model name -> its route entry``.
    models: dict[str, dict[str, Any]] = attrs.field(init=False, default=attrs.Factory(_models, takes_self=True))
    #: ``OIP model name -> its tensors``.
    signatures: dict[str, Signature] = attrs.field(init=False, default=attrs.Factory(_signatures, takes_self=True))
    #: ``api name -> its route methods`` (the kernel's ``_`` routes left out).
    apis: dict[str, set[str]] = attrs.field(init=False, default=attrs.Factory(_apis, takes_self=True))

    def max_payload(self, route: str) -> int:
        entry = self.routes.get(route)
        return int(entry["max_payload"]) if entry else DEFAULT_MAX_PAYLOAD


def _retrieved(read: asyncio.Future[None]) -> None:
    """A read's failure is its waiters' to raise; when every waiter's budget ran out first,
    asyncio must not log it as never retrieved."""
    if not read.cancelled():
        read.exception()


class TableLate(heirloom.RemoteError):
    """No route table within a request's budget: the wire's DEADLINE_EXCEEDED, as a 504."""

    code = "DEADLINE_EXCEEDED"


class Routes:
    """The current table, fetched with ``fetch(client)`` (an awaitable ``_routes`` call on
    that connection) when stale; ``late(timeout)`` is the message of a request whose budget
    ran out before the table came."""

    def __init__(
        self, fetch: Callable[[Any], Awaitable[dict[str, Any]]], late: Callable[[float], str], ttl: float = 5.0
    ):
        self._fetch = fetch
        self._late = late
        self.ttl = ttl
        self._table: RouteTable | None = None
        self._read_at = 0.0
        #: ``client -> its read in flight``: one ``_routes`` call that concurrent requests await.
        self._reads: dict[Any, asyncio.Future[None]] = {}

    async def table(self, client: Any, timeout: float, fresh: bool = False) -> RouteTable:
        """The table, read when stale on ``client``: the caller's connection, whose key a
        daemon serving Curve admits. ``fresh`` (a name it lacks) reads it again unless it was
        read within FRESH_ENOUGH seconds, so requests for unknown names cannot make a
        ``_routes`` call each. Requests that find it stale while a read is in flight on their
        connection await that read (single flight: a burst after an idle spell is one call),
        each at most ``timeout`` s (its own deadline); a stale table is never served. A read
        that ran out of time before a request's own budget did is followed by another."""
        deadline = time.monotonic() + timeout
        while self._table is None or self._stale(fresh):
            read = self._reads.get(client)
            if read is None:
                read = self._reads[client] = asyncio.ensure_future(self._read(client))
                read.add_done_callback(_retrieved)
            try:
                await asyncio.wait_for(asyncio.shield(read), deadline - time.monotonic())
                break  # read now: as fresh as a table gets, even one of the kernel's routes alone
            except TimeoutError:
                raise TableLate(self._late(timeout)) from None
            except heirloom.RemoteError as exc:  # an earlier request's read, out of its time: not of ours
                if exc.code != "DEADLINE_EXCEEDED":
                    raise
                if time.monotonic() >= deadline:
                    raise TableLate(self._late(timeout)) from None
        return self._table

    def _stale(self, fresh: bool) -> bool:
        """A table of the kernel's routes alone (a daemon still starting) is read again for every name it lacks:
        an OIP model stayed a 404 for up to FRESH_ENOUGH after its daemon was ready (checker h432 F1)."""
        age = time.monotonic() - self._read_at
        return age > self.ttl or (fresh and (age > FRESH_ENOUGH or self._table is None or not self._table.apis))

    async def _read(self, client: Any) -> None:
        try:
            reply = await self._fetch(client)
            self._table = RouteTable({entry["name"]: entry for entry in reply["routes"]})
            self._read_at = time.monotonic()
        finally:
            del self._reads[client]
