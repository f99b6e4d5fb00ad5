"""Worker placement: the seam through which a resource manager runs ``serve``'s workers.

The broker owns the client socket and the ZeroMQ worker endpoint either way. By default it spawns ``heirloom worker``
processes on its own machine; a resource manager that places workers elsewhere (a cluster scheduler) returns a
:class:`WorkerPool` from :meth:`Resources.place_workers` and the broker asks it for nothing but a count, a scale and
where each worker runs. The pool only places and restarts processes: requests still travel over ZeroMQ, and a worker
that vanishes is noticed by its lapsed heartbeats."""

from __future__ import annotations

import abc
from typing import Any


class WorkerPool(abc.ABC):
    """Workers a resource manager placed; each runs ``python -m heirloom <argv>``."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Workers the pool keeps running now (the broker is ready when as many are)."""

    @abc.abstractmethod
    def scale(self, count: int) -> int:
        """Keep ``count`` workers (clamped to the pool's bounds; ValueError, whose message ``_scale`` quotes, refuses
        it); returns the count kept. Called from the broker's I/O loop: return at once, place in the background."""

    @abc.abstractmethod
    def placements(self) -> dict[int, dict[str, Any]]:
        """Where each running worker is, by its process id (as its heartbeats report it):
        e.g. ``{"node_id": ..., "state": "ALIVE"}``. Cheap: the broker asks it for ``_ready``."""

    @abc.abstractmethod
    def observe(self, in_flight: int, ready: int) -> None:
        """Told the broker's queue depth (requests in flight) and ready workers every check
        interval: an autoscaling pool calls :meth:`scale` from here; others ignore it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every worker (the broker has asked them to drain already)."""

    def trouble(self) -> str | None:
        """Why workers the pool keeps are not running, as it last found (a node too small, a cluster
        that does not answer), for ``_ready``'s ``start_failure``; None when it knows of nothing."""
        return None
