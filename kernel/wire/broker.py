"""``serve --workers N``: a broker in front of worker processes, for more than one core.

Clients talk to the broker's ROUTER exactly as to a single daemon. Workers (``heirloom
worker PROFILE --connect ADDR``, spawned locally or started on other hosts) connect a
DEALER to the broker's worker endpoint and heartbeat their status. Each request goes to
the ready worker with the fewest requests in flight. When a worker dies (its process
exits or its heartbeats stop) its in-flight requests are answered UNAVAILABLE at once
and a local worker is respawned.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import attrs
import zmq

from heirloom.core.schema import did_you_mean
from heirloom.core.settings import ServerSettings
from heirloom.wire.auth import CurveServer
from heirloom.wire.builtin_routes import ADMIN_ROUTES, KERNEL_ROUTES
from heirloom.wire.metrics import WorkerTotals
from heirloom.wire.protocol import (
    CONTROL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    PERMISSION_DENIED,
    SIGNATURE,
    UNAVAILABLE,
    RequestError,
    error_frames,
    hashable,
    header_route,
    packb,
    read_header,
    split_envelope,
    unpackb,
)
from heirloom.wire.server import DRAIN_BATCH, POLL_MS
from heirloom.wire.stats import RouteStats
from heirloom.wire.transport import drain, receiver, sender

log = logging.getLogger("heirloom.wire.broker")
MISSED_HEARTBEATS = 3
RESPAWN_BACKOFF_MAX = 30.0


@attrs.define(eq=False)
class Worker:
    """A connected worker as the broker sees it."""

    identity: bytes
    pid: int = 0
    ready: bool = False
    routes: list[dict[str, Any]] = attrs.field(factory=list)
    last_seen: float = 0.0
    in_flight: set[tuple[Any, ...]] = attrs.field(factory=set)


@attrs.define(eq=False)
class Forwarded:
    """A request handed to a worker, remembered until its reply comes back."""

    worker: Worker
    route: str
    received: float
    envelope: list[bytes]
    request_id: Any


@attrs.define(eq=False)
class LocalProcess:
    process: subprocess.Popen
    started: float
    failures: int = 0


class Broker:
    """Owns the client socket, the worker socket and the local worker processes."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        profile_ref: str,
        overrides: tuple[str, ...],
        curve: CurveServer | None,
        log_format: str,
        worker_bind: str | None = None,
    ):
        self.settings = settings
        self.profile_ref = profile_ref
        self.overrides = overrides
        self.curve = curve
        self.log_format = log_format
        self.context = zmq.Context()
        self.frontend = self.context.socket(zmq.ROUTER)
        if curve is not None:
            curve.serve(self.frontend)
        self.frontend.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        self.frontend.setsockopt(zmq.LINGER, 2000)
        for address in settings.bind:
            self.frontend.bind(address)
        self.backend = self.context.socket(zmq.ROUTER)
        self.backend.setsockopt(zmq.LINGER, 2000)
        self._tmp = tempfile.TemporaryDirectory(prefix="heirloom-broker-")
        self.backend.bind(worker_bind or f"ipc://{self._tmp.name}/workers")
        self.worker_address = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)
        self._to_client, self._to_worker = sender(self.frontend), sender(self.backend)
        self._from_clients = receiver(self.frontend, with_user=curve is not None)
        self._from_workers = receiver(self.backend)
        self.workers: dict[bytes, Worker] = {}
        self.processes: list[LocalProcess] = []
        self.forwarded: dict[tuple[Any, ...], Forwarded] = {}
        self.stats: dict[str, RouteStats] = {}
        self.worker_totals = WorkerTotals()
        self.dropped = 0
        self.draining = False
        self._drain_deadline = 0.0
        self.started_at = time.time()

    # -- lifecycle -----------------------------------------------------------------------
    def request_drain(self) -> None:
        if not self.draining:
            self.draining = True
            self._drain_deadline = time.perf_counter() + self.settings.grace
            log.info("draining: %d request(s) in flight, grace %.1fs", len(self.forwarded), self.settings.grace)

    def run(self) -> int:
        log.info("broker listening on %s; workers connect to %s", ", ".join(self.settings.bind), self.worker_address)
        for _ in range(self.settings.workers):
            self._spawn()
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        while True:
            events = dict(poller.poll(POLL_MS))
            if self.backend in events:
                drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
            if self.frontend in events:
                drain(self.frontend, self._from_clients, self._from_client, DRAIN_BATCH)
            self._check_workers()
            if self.draining and (not self.forwarded or time.perf_counter() > self._drain_deadline):
                break
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        for key in list(self.forwarded):
            self._fail(key, "the daemon shut down before the request finished")
        for worker in self.workers.values():
            self._to_worker([worker.identity, CONTROL, b"DRAIN"])
        for local in self.processes:
            if local.process.poll() is None:
                local.process.terminate()
        for local in self.processes:
            try:
                local.process.wait(timeout=self.settings.grace)
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d ignored SIGTERM; killing it", local.process.pid)
                local.process.kill()
        if self.curve is not None:
            self.curve.stop()
        self.frontend.close()
        self.backend.close()
        self.context.term()
        self._tmp.cleanup()
        log.info("stopped")

    # -- workers -------------------------------------------------------------------------
    def _spawn(self, failures: int = 0) -> None:
        command = [
            sys.executable,
            "-m",
            "heirloom",
            "worker",
            self.profile_ref,
            "--connect",
            self.worker_address,
            "--log-format",
            self.log_format,
        ]
        for override in self.overrides:
            command += ["--set", override]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.processes.append(LocalProcess(process, time.monotonic(), failures))
        log.info("spawned worker pid %d", process.pid)

    def _check_workers(self) -> None:
        now = time.monotonic()
        for local in list(self.processes):
            code = local.process.poll()
            if code is None:
                continue
            self.processes.remove(local)
            self._forget_pid(local.process.pid, f"worker pid {local.process.pid} exited with {code}")
            if not self.draining:
                lived = now - local.started
                failures = 0 if lived > 60 else local.failures + 1
                delay = min(RESPAWN_BACKOFF_MAX, 0.5 * 2 ** (failures - 1)) if failures > 1 else 0.0
                if delay:
                    log.warning("worker keeps dying; respawning in %.1fs", delay)
                    time.sleep(min(delay, 1.0))
                self._spawn(failures)
        silent = [w for w in self.workers.values() if now - w.last_seen > MISSED_HEARTBEATS * self.settings.heartbeat]
        for worker in silent:
            self._drop(worker, f"worker pid {worker.pid} missed {MISSED_HEARTBEATS} heartbeats")
            for local in self.processes:
                if local.process.pid == worker.pid:
                    local.process.kill()

    def _forget_pid(self, pid: int, reason: str) -> None:
        for worker in [w for w in self.workers.values() if w.pid == pid]:
            self._drop(worker, reason)
        if not any(w.pid == pid for w in self.workers.values()):
            log.warning("%s", reason)

    def _drop(self, worker: Worker, reason: str) -> None:
        log.warning("%s; failing its %d in-flight request(s)", reason, len(worker.in_flight))
        self.workers.pop(worker.identity, None)
        self.worker_totals.retire(worker.identity)
        for key in list(worker.in_flight):
            self._fail(key, f"{reason} while handling the request; retry")

    def _fail(self, key: tuple[Any, ...], message: str) -> None:
        forwarded = self.forwarded.pop(key, None)
        if forwarded is None:
            return
        forwarded.worker.in_flight.discard(key)
        error = RequestError(UNAVAILABLE, message, retry_after_ms=100)
        self._to_client(error_frames(forwarded.envelope, forwarded.request_id, error))
        self._stats(forwarded.route).record(UNAVAILABLE, time.perf_counter() - forwarded.received)

    def _from_worker(self, frames: list[bytes], user: Any) -> None:
        identity = frames[0]
        if len(frames) >= 3 and frames[1] == CONTROL:
            if frames[2] == b"HEARTBEAT" and len(frames) > 3:
                self._heartbeat(identity, unpackb(frames[3]))
            return
        rest = frames[1:]
        index = split_envelope(rest)
        if index < 0:
            return
        header = unpackb(rest[index + 1])
        key = (*rest[:index], hashable(header.get("id")))
        forwarded = self.forwarded.pop(key, None)
        if forwarded is not None:
            forwarded.worker.in_flight.discard(key)
            queued = header.get("queue_ms")
            self._stats(forwarded.route).record(
                str(header.get("status")),
                time.perf_counter() - forwarded.received,
                queued / 1000 if isinstance(queued, float | int) else 0.0,
            )
        self._to_client(rest)

    def _heartbeat(self, identity: bytes, status: dict[str, Any]) -> None:
        worker = self.workers.get(identity)
        if worker is None:
            worker = self.workers[identity] = Worker(identity)
            log.info("worker pid %s connected", status.get("pid"))
        was_ready = worker.ready
        worker.pid = int(status.get("pid", 0))
        worker.ready = bool(status.get("ready")) and not status.get("draining")
        worker.routes = status.get("routes", [])
        worker.last_seen = time.monotonic()
        self.worker_totals.update(identity, status.get("metrics"))
        if worker.ready and not was_ready:
            log.info("worker pid %d ready", worker.pid)

    # -- clients -------------------------------------------------------------------------
    def _from_client(self, frames: list[bytes], user: str | None) -> None:
        received = time.perf_counter()
        index = split_envelope(frames)
        if index < 0:
            self.dropped += 1
            return
        envelope, request_id = frames[:index], None
        try:
            header = read_header(frames[index + 1])
            request_id = header.get("id")
            route = header_route(header)
            if route in KERNEL_ROUTES:
                self._builtin(envelope, request_id, route, user, received)
                return
            self._forward(frames, envelope, request_id, route, received)
        except RequestError as error:
            self._to_client(error_frames(envelope, request_id, error))
        except Exception as exc:  # noqa: BLE001 - malformed input never stops the broker
            error = RequestError(INVALID_ARGUMENT, f"cannot decode the header: {type(exc).__name__}: {exc}", "header")
            self._to_client(error_frames(envelope, request_id, error))

    def _forward(
        self, frames: list[bytes], envelope: list[bytes], request_id: Any, route: str, received: float
    ) -> None:
        if self.draining:
            raise RequestError(UNAVAILABLE, "the daemon is draining; retry on another instance", retry_after_ms=100)
        ready = [w for w in self.workers.values() if w.ready]
        if not ready:
            raise RequestError(UNAVAILABLE, f"no worker is ready ({len(self.workers)} connected)", retry_after_ms=500)
        known = {r["name"] for r in ready[0].routes}
        if route not in known:
            raise RequestError(
                NOT_FOUND, f"no route {route!r}{did_you_mean(route, known)} (call _routes for the list)", "header.route"
            )
        worker = min(ready, key=lambda w: len(w.in_flight))
        key = (*envelope, hashable(request_id))
        worker.in_flight.add(key)
        self.forwarded[key] = Forwarded(worker, route, received, envelope, request_id)
        self._to_worker([worker.identity, *frames])

    def _stats(self, route: str) -> RouteStats:
        stats = self.stats.get(route)
        if stats is None:
            stats = self.stats[route] = RouteStats()
        return stats

    def _builtin(self, envelope: list[bytes], request_id: Any, route: str, user: str | None, received: float) -> None:
        if route in ADMIN_ROUTES and self.curve is not None and not self.curve.is_admin(user):
            raise RequestError(PERMISSION_DENIED, f"{route} is an admin route; this client's key is not an admin key")
        body = getattr(self, f"_route{route}")()
        header = {"id": request_id, "status": OK, "queue_ms": 0.0, "compute_ms": 0.0}
        self._to_client([*envelope, SIGNATURE, packb(header), packb(body)])
        self._stats(route).record(OK, time.perf_counter() - received)

    def _ready(self) -> bool:
        ready = sum(1 for w in self.workers.values() if w.ready)
        return not self.draining and ready >= self.settings.workers

    def _route_health(self) -> dict[str, Any]:
        return {"live": True, "draining": self.draining, "pid": os.getpid()}

    def _route_ready(self) -> dict[str, Any]:
        return {
            "ready": self._ready(),
            "draining": self.draining,
            "expected_workers": self.settings.workers,
            "workers": self._workers(),
        }

    def _route_routes(self) -> dict[str, Any]:
        ready = [w for w in self.workers.values() if w.ready]
        return {"routes": ready[0].routes if ready else []}

    def _route_stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "in_flight": len(self.forwarded),
            "dropped_frames": self.dropped,
            "draining": self.draining,
            "routes": {name: stats.snapshot(0) for name, stats in self.stats.items()},
            "workers": self._workers(),
        }

    def _route_reload(self) -> dict[str, Any]:
        for worker in self.workers.values():
            self._to_worker([worker.identity, CONTROL, b"RELOAD"])
        return {"workers": len(self.workers)}

    def _workers(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        local = {p.process.pid for p in self.processes}
        return [
            {
                "pid": w.pid,
                "ready": w.ready,
                "in_flight": len(w.in_flight),
                "local": w.pid in local,
                "last_seen_ms": round((now - w.last_seen) * 1000, 1),
            }
            for w in self.workers.values()
        ]
