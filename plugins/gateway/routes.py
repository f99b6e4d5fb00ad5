"""What the daemon serves, read from its ``_routes``: plain routes and OIP models.

A route whose ``model`` is set (it predicts one result per body) is an Open Inference
Protocol model named after the route, less a trailing ``.predict``: ``sentiment.predict``
is the model ``sentiment``. The table is read again when it is older than ``ttl``
seconds, so a restarted daemon with other routes is picked up without a gateway restart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

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


@attrs.frozen
class RouteTable:
    """One reading of ``_routes``; what requests look up in it is computed here, once."""

    routes: dict[str, dict[str, Any]]
    #: ``OIP model name -> its route entry``.
    models: dict[str, dict[str, Any]] = attrs.field(init=False, default=attrs.Factory(_models, takes_self=True))
    #: ``OIP model name -> its tensors``.
    signatures: dict[str, Signature] = attrs.field(init=False, default=attrs.Factory(_signatures, takes_self=True))

    def apis(self) -> dict[str, set[str]]:
        """``api name -> its route methods`` (the kernel's ``_`` routes left out)."""
        found: dict[str, set[str]] = {}
        for name in self.routes:
            api, _, method = name.rpartition(".")
            if api:
                found.setdefault(api, set()).add(method)
        return found

    def max_payload(self, route: str) -> int:
        entry = self.routes.get(route)
        return int(entry["max_payload"]) if entry else DEFAULT_MAX_PAYLOAD


class Routes:
    """The current table, fetched with ``fetch(client, timeout)`` (an awaitable ``_routes``
    call on that connection) when stale."""

    def __init__(self, fetch: Callable[[Any, float], Awaitable[dict[str, Any]]], ttl: float = 5.0):
        self._fetch = fetch
        self.ttl = ttl
        self._table: RouteTable | None = None
        self._read_at = 0.0

    async def table(self, client: Any, fresh: bool = False, timeout: float = 5.0) -> RouteTable:
        """The table, read when stale on ``client``: the caller's connection, whose key a
        daemon serving Curve admits. ``fresh`` (a name it lacks) reads it again unless it was
        read within FRESH_ENOUGH seconds, so requests for unknown names cannot make a
        ``_routes`` call each. A read waits at most ``timeout`` s (the request's deadline)."""
        age = time.monotonic() - self._read_at
        if self._table is None or age > self.ttl or (fresh and age > FRESH_ENOUGH):
            reply = await self._fetch(client, timeout)
            self._table = RouteTable({entry["name"]: entry for entry in reply["routes"]})
            self._read_at = time.monotonic()
        return self._table
