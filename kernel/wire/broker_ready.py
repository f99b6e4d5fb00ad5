"""The broker's table of ready workers, and its choice of one for each request.

The broker is ready once its ready workers serve every api of its profile (a worker of another profile serves
none of its routes: the broker waits for one that does, and ``_ready`` names what is missing). Each route goes
only to the ready workers that serve it (a worker of another profile, or of an
older version during a rolling upgrade, is sent only its own routes); a request goes to the one
with the fewest requests in flight, or, with an idempotency key, to the worker its first attempt
went to while that one is ready, so a retry meets it. A worker the broker finds it cannot reach is
taken out of the table before the next choice (``Broker._send``): it has nothing in flight, and
would otherwise be the least busy and drew most requests until its missed heartbeats said it was gone.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from heirloom.wire.broker_workers import Worker, described_routes, served_routes

#: Route names the broker remembers as served once (UNAVAILABLE, not NOT_FOUND, while no worker serves them).
MAX_ROUTES = 10_000
#: A worker's load, for picking the least busy (a C getter: no Python call per worker).
LOAD = operator.attrgetter("in_flight")
#: An idempotency key as a worker's cache scopes it: ``(client, route, key)``.
Key = tuple[bytes, str, Any]


class ReadyTable:
    """The ready workers, the routes each serves, and what ``_routes`` lists."""

    def __init__(
        self, admin_routes: Collection[str], workers: Collection[Worker], keys_per_worker: int, apis: Collection[str]
    ):
        self.admin_routes = admin_routes
        #: the profile's api names: each needs a ready worker serving its routes before the broker is ready
        self.apis = apis
        #: every connected worker (the broker's own dict's values), and the keys each one's cache holds
        self._workers, self._keys_per_worker = workers, keys_per_worker
        self.ready: list[Worker] = []
        #: route -> the ready workers that serve it: a request never goes to one that does not
        self.serving: dict[str, list[Worker]] = {}
        #: every route a worker has served: one no ready worker serves now is UNAVAILABLE, not NOT_FOUND
        self.served_once: set[str] = set()
        #: what ``_routes`` lists: every route some ready worker serves, as the first ready one describes it
        self.routes: dict[str, dict[str, Any]] = {}
        self.keys = KeyRoutes()

    def update(self) -> None:
        """Take in the connected workers after one joined, left, turned (un)ready or changed its routes."""
        self.ready = [w for w in self._workers if w.ready]
        self.serving = {}
        for worker in self.ready:
            for name in served_routes(worker):
                self.serving.setdefault(name, []).append(worker)
        if self.ready:  # what _routes lists: every route some ready worker serves
            self.routes = described_routes(self.ready, self.admin_routes)
            if len(self.served_once) + len(self.routes) > MAX_ROUTES:  # names a rogue worker made up
                self.served_once.clear()
            self.served_once.update(self.routes)

    def missing_routes(self) -> list[str]:
        """The routes of the profile's apis no ready worker serves: the names served before, else ``API.*``.
        An api counts as served by a ready worker whose heartbeat lists it in ``apis`` (one with no routes)
        or that serves a route ``API.NAME``."""
        served = {name.rpartition(".")[0] for name in self.serving}
        served.update(api for w in self.ready for api in w.status.get("apis", ()) if isinstance(api, str))
        missing = []
        for api in (api for api in self.apis if api not in served):
            known = sorted(name for name in self.served_once if name.rpartition(".")[0] == api)
            missing.extend(known or [f"{api}.*"])
        return missing

    def choose(self, route: str, client: bytes, key: Any, tag: bytes) -> Worker | None:
        """The worker for request ``tag`` to ``route``: ``key``'s first worker while it is ready, else the
        least busy of those serving ``route``; None when none is ready."""
        ready = self.serving.get(route)
        if not ready:
            return None
        if key is not None:  # a retry goes where the first attempt went; the workers' caches hold so many keys
            return self.keys.route(ready, (client, route, key), tag, self._keys_per_worker * len(self._workers))
        return ready[0] if len(ready) == 1 else min(ready, key=LOAD)


class KeyRoutes:
    """Where each idempotency key's first attempt went, so that its retries reach the worker
    whose cache holds the reply, whatever workers joined, left or came back since (a key is
    not moved). A key whose every answer was an error is forgotten, as the worker forgets it
    (a client sending failing keyed requests flushed others' keys: their retries ran again
    elsewhere); one answered once is kept, as the worker keeps its reply (an error to a repeat
    with another body forgot it here only, and the next retry ran again on another worker)."""

    def __init__(self) -> None:
        self._went: OrderedDict[Key, Worker] = OrderedDict()
        self._kept: set[Key] = set()  # keys answered OK: their worker remembers the reply
        self._keys: dict[bytes, Key] = {}  # tag -> key, until answered

    def route(self, ready: list[Worker], key: Key, tag: bytes, limit: int) -> Worker:
        """The worker for ``key``'s request ``tag``: the first attempt's while it lives, else the
        least busy; the last ``limit`` keys are kept (the workers' caches together hold as many)."""
        went = self._went.get(key)
        worker = went if went is not None and went in ready else min(ready, key=LOAD)
        self._went[key] = worker
        self._went.move_to_end(key)
        self._keys[tag] = key
        while len(self._went) > limit:
            self._kept.discard(self._went.popitem(last=False)[0])
        return worker

    def holds(self, tag: bytes) -> bool:
        """Whether request ``tag``, not answered yet, carries an idempotency key."""
        return tag in self._keys

    def answered(self, tag: bytes, *, ok: bool) -> None:
        """Request ``tag`` was answered (``ok``: successfully, and so remembered by its worker)."""
        key = self._keys.pop(tag, None)
        if key is None:
            return
        if ok:
            self._kept.add(key)
        elif key not in self._kept:
            self._went.pop(key, None)
