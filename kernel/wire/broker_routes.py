"""The broker's own routes (``_health``, ``_ready``, ``_routes``, ``_stats``, ``_reload``,
``_scale``): what a client learns of a ``--workers`` daemon, gathered from the workers'
heartbeats and the broker's own counters; what the broker answers while its workers stop, and
what it says when a local worker's process ends."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import zmq
from zmq.backend import zmq_poll

from heirloom.core.schema import did_you_mean
from heirloom.wire.auth import check_admin
from heirloom.wire.bodies import field_of, printable
from heirloom.wire.broker_workers import MAX_HEARTBEAT_ROUTES, SCALE_ROUTE, Worker, describe_workers
from heirloom.wire.builtin_routes import KERNEL_ROUTES, kernel_route
from heirloom.wire.local_workers import START_FAILED
from heirloom.wire.metrics import broker_route_stats
from heirloom.wire.protocol import (
    CONTROL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    SIGNATURE,
    UNAVAILABLE,
    RequestError,
    cut,
    packb,
    quoted,
    unpackb,
)
from heirloom.wire.routing import Endpoint
from heirloom.wire.server import DRAIN_BATCH
from heirloom.wire.stats import RouteStats
from heirloom.wire.transport import drain, sweep

if TYPE_CHECKING:
    from heirloom.wire.broker import Broker

log = logging.getLogger("heirloom.wire.broker")
#: Seconds between the DRAINs told a remote worker that has not yet said it stopped.
REMIND_SECONDS = 0.5
#: Seconds the broker reads, once a local worker exited 0 with requests in flight, for the replies and GONE it sent.
GONE_WAIT = 1.0
SCALE_DESCRIPTION = 'Admin: keep {"workers": N} workers, where the resource manager places them.'


class BrokerRoutes:
    """The built-in routes of :class:`~heirloom.wire.broker.Broker` (a mixin of it)."""

    #: The routes the broker answers itself: ``/metrics`` counts them from the start, at 0, as a
    #: one-process daemon counts its built-ins (a first error was not counted by increase()).
    OWN_ROUTES = (*KERNEL_ROUTES, SCALE_ROUTE)
    #: Why the last worker that failed to start failed (its GONE message), until one is ready.
    start_failure: str | None = None
    #: SIGHUP asked for what ``_reload`` does (done on the I/O loop, never in the signal handler).
    reload_asked = False

    def _reload_if_asked(self: Broker) -> None:
        if self.reload_asked:
            self.reload_asked = False
            log.info("received SIGHUP: reloading")
            self._route_reload()

    def _unroutable(self: Broker, route: str) -> RequestError:
        """UNAVAILABLE while no worker is ready (nobody knows the routes yet), or none that is serves a
        route one served before (being replaced) or the route's api of the broker's profile (only workers
        of another profile are ready: which routes it has is unknown until one of its own is), else NOT_FOUND."""
        if not self.table.ready:
            said = f"no worker is ready ({len(self.workers)} connected{self._why_not_ready()})"
            return RequestError(UNAVAILABLE, said, retry_after_ms=500)
        if route in self.table.served_once:
            return RequestError(UNAVAILABLE, f"no ready worker serves {route} now; retry", retry_after_ms=500)
        api = route.rpartition(".")[0]
        if any(name.rpartition(".")[0] == api for name in self.table.missing_routes()):
            said = f"no ready worker serves {cut(api)}.*, an api of this broker's profile, now; retry"
            return RequestError(UNAVAILABLE, said, retry_after_ms=500)
        routes = self.table.routes
        known = [*routes, *KERNEL_ROUTES, SCALE_ROUTE] if len(routes) <= MAX_HEARTBEAT_ROUTES else []
        hint = did_you_mean(route, known)  # peers' names and the built-in ones: _helth is _health
        message = f"no route {cut(route)!r}{hint} (call _routes for the list)"
        return RequestError(NOT_FOUND, message, "header.route")

    def _why_not_ready(self: Broker) -> str:
        """What a connected worker's last heartbeat says keeps it not ready: a model's wait (``models.m: ...
        no trained version yet``), a component's ready() that raises, or its resource manager's reason (past
        its memory budget); else why the last start failed, else that connected workers are still starting
        (loading models): what a one-process daemon's refusal says."""
        for worker in self.workers.values():
            if said := worker_not_ready(worker):
                return f"; {said}"
        if failure := self.start_trouble():
            return f"; {cut(failure, 300)}"
        return "; starting their components" if self.workers else ""

    def _new_stats(self: Broker, route: str) -> RouteStats:
        stats = self.stats[route] = RouteStats()
        return stats

    def _builtin(
        self: Broker,
        envelope: list[bytes],
        request_id: Any,
        route: str,
        user: str | None,
        received: float,
        *body: bytes,
    ) -> None:
        if route == SCALE_ROUTE:  # the kernel's admin routes were checked before their body
            check_admin(self.curve, route, user)
        answer = self._route_scale(body) if route == SCALE_ROUTE else getattr(self, f"_route{route}")()
        header = {"id": request_id, "status": OK, "queue_ms": 0.0, "compute_ms": 0.0}
        self.outbox.send([*envelope, SIGNATURE, packb(header), packb(answer)])
        (self.stats.get(route) or self._new_stats(route)).record(OK, time.perf_counter() - received)

    def start_trouble(self: Broker) -> str | None:
        """Why the last worker failed to start, else why the placing pool has not started them."""
        return self.start_failure or (self.pool.trouble() if self.pool is not None else None)

    def expected_workers(self: Broker) -> int:
        """Workers ``_ready`` waits for: the placed or local ones, else (``--workers 0``) one remote one."""
        return self.pool.size if self.pool is not None else max(1, self.settings.workers)

    def is_ready(self: Broker) -> bool:
        """Every expected worker ready, and the ready ones serving every api of the profile (not another's)."""
        ready = not self.draining and len(self.table.ready) >= self.expected_workers()
        return ready and not self.table.missing_routes()

    def _refuse_clients(self: Broker) -> None:
        """Answer what clients send for 50 ms (UNAVAILABLE: draining): while the workers stop, a
        request that reached the broker was left unanswered (its client waited out its timeout).
        And read what workers send: a worker whose start failed as the drain began says so (its
        exit 1 is that failure, not an unclean stop, which made the broker exit 1)."""
        for socket, _ in zmq_poll([(self.frontend, zmq.POLLIN), (self.backend, zmq.POLLIN)], 50):
            if socket is self.frontend:
                drain(self.frontend, self._from_clients, self._from_client, DRAIN_BATCH)
            else:
                drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)

    def _turn_away(self: Broker, identity: bytes) -> None:
        """A heartbeat the broker does not take: from a connection that said ``GONE`` (ignored), or one new
        during the drain, answered ``DRAIN``. Ignored, a worker that connected as its broker began to stop
        (its local workers, stopped while they started) warned after three heartbeats that the peer was no
        broker's worker endpoint, and waited those out before it stopped; the broker still does not take it
        (nor wait for it): it routes it nothing, so that ``DRAIN`` comes behind no request."""
        if identity not in self._departed:
            with contextlib.suppress(zmq.ZMQError):  # gone since: nothing to tell
                self._to_worker([identity, CONTROL, b"DRAIN"])

    def _forget_pid(self: Broker, pid: int, code: int, reason: str) -> None:
        """A local worker's process ended (``code``, ``reason``): its connection dropped, the line logged once."""
        connected = [w for w in self.workers.values() if w.pid == pid and w.local]
        if code == 0 and any(worker.in_flight for worker in connected):
            connected = self._read_until_gone(connected)
        for worker in connected:
            self._drop(worker, reason)
        if pid in self._counted:  # dropped and counted when it fell silent or failed to start
            why = self._counted.pop(pid)  # an exit other than 1 after a failed start is a crash of its own: said so
            expected = why != START_FAILED or code == 1
            log.log(logging.INFO if expected else logging.WARNING, "%s (%s)", reason, why)
        elif not connected:  # it died before its first heartbeat: nothing in flight, no _drop to say so
            self.workers_lost += not self.draining
            log.log(logging.INFO if self.draining else logging.WARNING, "%s", reason)

    def _read_until_gone(self: Broker, workers: list[Worker]) -> list[Worker]:
        """Read what ``workers``, whose process exited after a drain, sent before it: its last replies and its GONE
        (for up to GONE_WAIT seconds); those of them still connected. The exit was reaped while the tail of a
        burst of replies waited unread in the broker's queue, and two clients were answered UNAVAILABLE "exited
        with 0 while handling the request" for requests their worker had answered (a CI run at load 11)."""
        until = time.monotonic() + GONE_WAIT
        while (left := [w for w in workers if self.workers.get(w.identity) is w]) and time.monotonic() < until:
            drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
            self.backend.poll(max(1, int((until - time.monotonic()) * 1000)))
        return left

    def _lost_in_drain(self: Broker, worker: Worker) -> None:
        """A worker the draining broker could not tell DRAIN: its connection closed. What it sent before it
        closed is read first: a worker that said GONE and closed at once is logged drained, not "disconnected
        during the drain" (its GONE may still be unread when the send fails: a race CI hit once)."""
        drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
        if self.workers.get(worker.identity) is worker:
            self._drop(worker, f"worker pid {worker.pid} disconnected during the drain", planned=True)

    def _see_out_peers(self: Broker, until: float) -> None:
        """Once the local workers have stopped: until each worker on another host says it drained and
        stopped (or ``until``), tell it DRAIN again every half second (the broker closed while its DRAIN
        was on the way, and such a worker, with no parent process whose exit ends it, served nobody until
        it was killed), reading what it sent first (a GONE before its connection closed: the worker is
        logged as drained, not "disconnected during the drain"). Then answer what clients sent that the
        broker has not read, until its client socket is quiet (``sweep``: bounded)."""
        told = 0.0
        while (remote := [w for w in self.workers.values() if not w.local]) and time.monotonic() < until:
            if time.monotonic() - told >= REMIND_SECONDS:
                told = time.monotonic()
                drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
                if left := [worker for worker in remote if worker.identity in self.workers]:  # none: not all workers
                    self._tell_workers(b"DRAIN", left)
            self._refuse_clients()
        if remote:
            pids = ", ".join(str(worker.pid) for worker in remote)
            log.warning("remote worker pid %s did not say it stopped; the broker stops without waiting longer", pids)
        if read := sweep(self.frontend, self._from_clients, self._from_client):
            log.info("answered %d request(s) read as the drain ended (UNAVAILABLE but built-in routes)", read)

    def _route_health(self: Broker) -> dict[str, Any]:
        return {"live": True, "draining": self.draining, "pid": os.getpid()}

    def _route_ready(self: Broker) -> dict[str, Any]:
        missing = self.table.missing_routes()  # a worker of another profile alone serves nothing of this one's
        return {
            "ready": self.is_ready(),
            "draining": self.draining,
            "expected_workers": self.expected_workers(),
            "serving": not self.draining and bool(self.table.ready) and not missing,
            "workers": [] if self.draining else self._workers(),  # none takes new work: _stats lists them
            "start_failure": self.start_trouble(),
            "missing_routes": missing,
        }

    def _route_routes(self: Broker) -> dict[str, Any]:
        return {"routes": [*self._kernel_routes(), *self.table.routes.values()]}

    def _kernel_routes(self: Broker) -> list[dict[str, Any]]:
        """The broker's own routes, described as a one-process daemon describes its built-ins."""
        routes = [kernel_route(name, getattr(self, f"_route{name}")) for name in KERNEL_ROUTES]
        if self.pool is not None:
            routes.append(kernel_route(SCALE_ROUTE, self._route_scale, SCALE_DESCRIPTION, admin=True))
        return [Endpoint(route.name, route, builtin=True).describe() for route in routes]

    def _route_stats(self: Broker) -> dict[str, Any]:
        ready = self.table.ready
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "in_flight": len(self.forwarded),
            "dropped_frames": self.dropped,
            "refused_unrouted": dict(self.unrouted),
            "dropped_replies": self.outbox.dropped,
            "reply_backlog_bytes": self.outbox.release(),
            "undeliverable_replies": self.outbox.undeliverable,
            "draining": self.draining,
            "routes": broker_route_stats(self.stats, self.worker_totals),
            "resources": {"in_flight": len(self.forwarded), "max_in_flight": self.max_in_flight},
            "network": self.buckets.usage() if self.buckets is not None else {},
            "models": ready[0].status.get("models", {}) if ready else {},
            "storage": ready[0].status.get("storage", {}) if ready else {},
            "workers": [] if self.draining else self._workers(),  # none takes new work: _stats lists them
            "start_failure": self.start_trouble(),
        }

    def _route_reload(self: Broker) -> dict[str, Any]:
        keys = self.curve.reload() if self.curve is not None else ""
        self._reloads.log(
            log, logging.INFO, "_reload: asking %d worker(s) to check the store%s", len(self.workers), keys
        )
        self._tell_workers(b"RELOAD")
        return {"workers": len(self.workers)}

    def _route_scale(self: Broker, body_frames: tuple[bytes, ...]) -> dict[str, Any]:
        """Admin: ``{"workers": N}`` keeps N workers, where the resource manager places them."""
        if self.pool is None:
            raise RequestError(
                INVALID_ARGUMENT,
                '_scale needs a resource manager that places workers (e.g. use = "ray"); '
                "local workers follow --workers",
                "header.route",
            )
        body = unpackb(body_frames[0]) if len(body_frames) == 1 else None
        takes = '_scale takes {"workers": N}, N >= 1'
        if isinstance(body, dict) and (other := next((key for key in body if key != "workers"), None)) is not None:
            name = cut(printable(json.dumps(other, ensure_ascii=False)) if isinstance(other, str) else quoted(other))
            hint = did_you_mean(other, ["workers"]) if isinstance(other, str) else ""
            field = field_of([other]) if isinstance(other, str) else "body"
            raise RequestError(INVALID_ARGUMENT, f"{takes}; got the unknown key {name}{hint}", cut(field))
        count = body.get("workers") if isinstance(body, dict) else None
        if type(count) is not int or count < 1:  # quoted as sent: true, not Python's True
            raise RequestError(INVALID_ARGUMENT, f"{takes}; got {quoted(body)}", "body.workers")
        try:
            return {"workers": self.pool.scale(count)}
        except ValueError as exc:  # a count the pool refuses: its own words
            raise RequestError(INVALID_ARGUMENT, f"_scale: {exc}", "body.workers") from None

    def _workers(self: Broker) -> list[dict[str, Any]]:
        placed = self.pool.placements() if self.pool is not None else {}
        return describe_workers(list(self.workers.values()), placed)


def worker_not_ready(worker: Worker) -> str | None:
    """Why a worker's last heartbeat says it is not ready, in its own words (a heartbeat is untrusted: text,
    cut): ``models.m: ...`` as a one-process daemon says it, else the component or budget, by worker pid."""
    status = worker.status
    models = status.get("models")
    for name, entry in models.items() if isinstance(models, dict) else ():
        if isinstance(entry, dict) and entry.get("error"):
            return f"models.{cut(str(name))}: {cut(str(entry['error']), 300)}"
    raised = status.get("not_ready")  # profile key -> a component's ready() that raises
    resources = status.get("resources")
    said = next(iter(raised.values()), None) if isinstance(raised, dict) else None
    said = said or (resources.get("not_ready") if isinstance(resources, dict) else None)
    return f"worker pid {worker.pid}: {cut(str(said), 300)}" if said else None
