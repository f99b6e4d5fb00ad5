"""``serve --workers N``: a broker in front of worker processes, for more than one core.

Clients talk to the broker's ROUTER exactly as to a single daemon. Workers (``heirloom worker PROFILE --connect
ADDR``, spawned locally or started on other hosts) connect a DEALER to the broker's worker endpoint and heartbeat
their status. Each request goes to the ready worker with the fewest requests in flight (a request with an
idempotency key to the worker its key hashes to, so a retry meets the first attempt), prefixed with a tag frame and
the client's identity; the worker answers with the tag (plus a status byte) in front, so the broker matches replies
without decoding them. The broker checks a request's size and deadline and the daemon-wide in-flight limit (the
body is the worker's to check). When a worker dies (its process exits, its heartbeats stop, or a request finds its
connection closed and goes to another worker) its in-flight requests are answered UNAVAILABLE at once and a local
worker is respawned; one unanswered past its deadline and a grace (``broker_deadlines``) DEADLINE_EXCEEDED.
A worker sees ``[tag + client identity, header, body, ...]`` (``deadline_ms``: what is left) and answers ``[tag +
status, header, body, ...]``: the client's routing frames stay here, the signature frame is left out both ways.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import zmq
from zmq.backend import zmq_poll

from heirloom.core.components import ClientLimits
from heirloom.core.placement import WorkerPool
from heirloom.core.settings import ServerSettings
from heirloom.wire.auth import CurveServer, bound_worker_address, check_admin, secure_worker_endpoint
from heirloom.wire.broker_deadlines import Deadlines, forwarded_header
from heirloom.wire.broker_folder import SOCKET, worker_folder
from heirloom.wire.broker_ready import ReadyTable
from heirloom.wire.broker_routes import SCALE_ROUTE, BrokerRoutes
from heirloom.wire.broker_versions import VersionWatch
from heirloom.wire.broker_workers import (
    MAX_WORKERS,
    MISSED_HEARTBEATS,
    WORKER_COMMANDS,
    WORKER_LINES_PER_MINUTE,
    WORKER_QUEUE,
    Departed,
    Worker,
    names_another,
    not_sent,
    read_heartbeat,
    routes_differing,
    start_failure,
    worker_argv,
)
from heirloom.wire.builtin_routes import ADMIN_ROUTES, KERNEL_ROUTES, check_no_body
from heirloom.wire.call import answered_instead
from heirloom.wire.connections import ConnectionWatch, client_receiver, client_router, peer_router, reply_outbox
from heirloom.wire.headers import header_id, header_options, header_route, read_header
from heirloom.wire.heartbeat_gate import HeartbeatGate
from heirloom.wire.local_workers import START_FAILED, LocalWorkers
from heirloom.wire.metrics import WorkerTotals
from heirloom.wire.protocol import (
    CODE_OF_BYTE,
    CONTROL,
    DEADLINE_EXCEEDED,
    INTERNAL,
    OK,
    RESOURCE_EXHAUSTED,
    SIGNATURE,
    UNAVAILABLE,
    RequestError,
    error_frames,
    split_envelope,
)
from heirloom.wire.ratelimit import ClientBuckets, vet_sender
from heirloom.wire.routing import draining_error, passed_on_arrival, refused, too_large
from heirloom.wire.server import DRAIN_BATCH, POLL_MS, TAG_BYTES
from heirloom.wire.stats import RouteStats
from heirloom.wire.strays import KEY_REMOVED, WELCOME, Strays, peer_name, workers_go
from heirloom.wire.throttle import RELOAD_LOG_SECONDS, Budget, Every
from heirloom.wire.transport import RECEIVE_HWM, RETRY_MS, attach, drain, receiver, sender

log = logging.getLogger("heirloom.wire.broker")
#: Seconds between checks of worker processes and heartbeats (not on every loop turn).
CHECK_INTERVAL = 0.05
#: A keyed request lost with its worker: it may have run, and the worker's cache of its key is gone with it.
MAY_HAVE_RUN = "it may have run, and its idempotency key was lost with the worker: a retry may run it twice"
#: An unkeyed one: "retry" alone had a write made twice (v31 F2); clients retry only idempotent calls by themselves.
RAN = "it may have run: retry it if it is idempotent"
#: Seconds a local worker has to stop its components once the shared grace period is over.
STOP_SECONDS = 10.0
#: Requests of this many bytes and more count against ``[server] forward_backlog_mb`` (the
#: smaller ones are bounded by the in-flight limit: 1,024 of them hold at most 64 MiB).
LARGE_REQUEST = 64 << 10
#: A request in flight: its worker, route stats, when it was received, its client's envelope, its id.
Forwarded = tuple[Worker, RouteStats, float, list[bytes], Any]


class Broker(BrokerRoutes):
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
        max_in_flight: int | None = None,
        limits: ClientLimits | None = None,
        place_workers: Callable[[list[str]], WorkerPool | None] | None = None,
        apis: Collection[str] = (),
    ):
        self.settings = settings
        self.profile_ref = profile_ref
        self.overrides = overrides
        self.curve = curve
        self.log_format = log_format
        #: The resource manager's limit for the whole daemon (all workers together).
        self.max_in_flight = max_in_flight
        self.buckets = ClientBuckets(limits) if limits is not None else None
        self.context = zmq.Context()
        self.frontend = client_router(self.context)
        if curve is not None:
            curve.serve(self.frontend)
        self.backend = peer_router(self.context)
        for socket in (self.frontend, self.backend):  # before bind: options apply to new connections
            socket.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
            socket.setsockopt(zmq.LINGER, 2000)
        self.frontend.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        self.watch = ConnectionWatch(self.frontend, self.context) if curve is not None else None  # see Server.watch
        for address in settings.bind:
            attach(self.frontend, address, bind=True)
        self._tmp = None if worker_bind else worker_folder()  # the dead brokers' ones removed first
        #: With Curve on the worker endpoint, each worker's key comes with its messages (revocation).
        self._from_workers = receiver(self.backend, with_user=secure_worker_endpoint(curve, self.backend, worker_bind))
        # a message for a worker that is gone or whose queue is full raises (refused at once, not lost in silence)
        self.backend.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.backend.setsockopt(zmq.SNDHWM, WORKER_QUEUE)  # before the bind, as its connections copy it
        attach(self.backend, worker_bind or f"ipc://{self._tmp.name}/{SOCKET}", bind=True)
        self.worker_address = bound_worker_address(self.backend)
        self.outbox = reply_outbox(self.frontend, settings, self.watch)
        self._to_worker = sender(self.backend, nonblocking=True)
        self._from_clients = client_receiver(self.frontend, self.watch)
        self._unreadable, self._crowded, self._reloads = Every(60.0), Every(60.0), Every(RELOAD_LOG_SECONDS)
        self._impostors = Every(60.0)  # GONE messages naming a worker their connection is not
        self._strays = Strays(log, self.outbox.send, workers_go(worker_bind and self.worker_address, broker=True))
        self._comings = Budget(WORKER_LINES_PER_MINUTE, "lines about workers joining and leaving")
        self.workers: dict[bytes, Worker] = {}
        self._gate = HeartbeatGate(self._heartbeat, self.workers)  # each peer's share of the broker's time
        self._departed = Departed(settings.heartbeat)
        self.versions = VersionWatch(settings.heartbeat, settings.reload_interval)  # a mix outlasting a swap
        self.table = ReadyTable(settings.admin_routes, self.workers.values(), settings.idempotency_cache, apis)
        self.forwarded: dict[bytes, Forwarded] = {}  # by tag
        self.deadlines = Deadlines(self.forwarded, settings.heartbeat)
        #: tag -> bytes of each large forwarded request (LARGE_REQUEST and up), and their sum
        self._large: dict[bytes, int] = {}
        self._large_bytes = 0
        self._tag = 0
        self.stats: dict[str, RouteStats] = {}
        self.worker_totals = WorkerTotals()
        self.dropped = 0
        #: Workers lost without a planned stop (crashed, killed, silent, key revoked); and whether one was lost
        #: with requests in flight during the drain (a remote one too: its exit the broker cannot see, h368 F2).
        self.workers_lost, self._lost_work_in_drain = 0, False
        #: Local workers dropped and counted lost before their exit is reaped (killed for their
        #: silence, or their start failed), with why: counted once, not again at exit.
        self._counted: dict[int, str] = {}
        #: Refusals before any route was known (unknown route, unreadable header, rate limit), by code.
        self.unrouted: Counter[str] = Counter()
        self.draining = self.drain_asked = False
        self._drain_deadline = self._checked = 0.0
        self.started_at = time.time()
        #: Workers the resource manager placed (None: local processes); placed before the
        #: caller installs its signal handlers, so a cluster client's own handlers yield to them.
        self._worker_argv = worker_argv(profile_ref, self.worker_address, log_format, overrides, settings.grace)
        self.pool: WorkerPool | None = place_workers(self._worker_argv) if place_workers is not None else None
        self.local = LocalWorkers(self._worker_argv, settings.workers if self.pool is None else 0)

    # -- lifecycle -----------------------------------------------------------------------
    def request_drain(self) -> None:
        """Ask for a drain, which the loop starts at its next turn: SIGTERM's handler runs between any two steps of
        the loop, and its DRAIN to the workers dropped one whose heartbeat was being read, which then came back."""
        self.drain_asked = True

    def _drain(self) -> None:
        """Refuse new work; every worker drains now too: with the broker's, within one ``--grace``."""
        if not self.draining:
            self.draining = True
            self._drain_deadline = time.perf_counter() + self.settings.grace
            log.info("draining: %d request(s) in flight, grace %gs", len(self.forwarded), self.settings.grace)
            self._tell_workers(b"DRAIN")

    def run(self) -> int:
        log.info("broker listening on %s; workers connect to %s", ", ".join(self.settings.bind), self.worker_address)
        self.local.start(lambda: self.draining)
        watched = [(self.frontend, zmq.POLLIN), (self.backend, zmq.POLLIN)]
        wait_ms = POLL_MS
        while True:  # woken by a message, the next check, or the soonest deadline of a forwarded request
            for ready, _ in zmq_poll(watched, wait_ms):
                if ready is self.backend:
                    drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
                else:
                    drain(self.frontend, self._from_clients, self._from_client, DRAIN_BATCH)
            if self.drain_asked:
                self._drain()
            now = time.monotonic()
            if now - self._checked >= CHECK_INTERVAL:
                if self.watch is not None:
                    self.watch.catch_up()
                self._check_workers(now, now - self._checked if self._checked else 0.0)
                self._checked = now
                self._reload_if_asked()
            wait_ms = self._expire()
            if self.draining:
                left = self._drain_deadline - time.perf_counter()
                if (not self.forwarded and not self.outbox.waiting) or left <= 0:  # replies sent first
                    break
                wait_ms = min(wait_ms, int(left * 1000) + 1)
        return 0 if self._shutdown() else 1

    def _shutdown(self) -> bool:
        """Stop the workers and close; False when a local worker did not stop cleanly, or one was lost in the drain."""
        for tag in list(self.forwarded):
            self._fail(tag, "the daemon shut down before the request finished")
        drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)  # heartbeats not read yet
        self._tell_workers(b"DRAIN")  # one that connected during the drain
        wait = STOP_SECONDS + max(0.0, self._drain_deadline - time.perf_counter())  # one still starting: its grace
        until = time.monotonic() + wait
        clean = self.local.stop(wait, self._refuse_clients) and not self._lost_work_in_drain  # with its grace
        self._see_out_peers(until)
        if self.pool is not None:
            self.pool.close()
        if self.curve is not None:
            self.curve.stop()
        self.context.destroy()  # the sockets, with their linger, and a ConnectionWatch's
        if self._tmp is not None:
            self._tmp.cleanup()
        log.info("stopped" if clean else "stopped; a worker did not stop cleanly (its log says why)")
        return clean

    # -- workers -------------------------------------------------------------------------
    def _tell_workers(self, command: bytes, workers: list[Worker] | None = None) -> None:
        for worker in workers or list(self.workers.values()):
            try:
                self._to_worker([worker.identity, CONTROL, command])
            except zmq.ZMQError:  # gone since its last heartbeat: their absence will say so, or (draining) this
                log.debug("could not tell worker pid %d %s", worker.pid, command)
                if self.draining:  # not one to wait for, unless it said GONE before it closed
                    self._lost_in_drain(worker)

    def _check_workers(self, now: float, gap: float) -> None:
        if gap > self.settings.heartbeat:  # the broker was stopped (a paused VM, a debugger): the silence was its own
            for worker in self.workers.values():
                worker.last_seen += gap
        if self.pool is not None and not self.draining:
            self.pool.observe(len(self.forwarded), len(self.table.ready))
        self._comings.roll(log)
        self._strays.roll()
        for pid, code, reason in self.local.reap(now, respawn=not self.draining):
            self._forget_pid(pid, code, reason)
        if any(now - w.last_seen > w.silence for w in self.workers.values()):  # read what a stall of ours held back
            drain(self.backend, self._from_workers, self._from_worker, DRAIN_BATCH)
        self._gate.catch_up()  # heartbeats that waited for their connection's turn
        for worker in [w for w in self.workers.values() if now - w.last_seen > w.silence]:
            self._drop(worker, f"worker pid {worker.pid} missed {MISSED_HEARTBEATS} heartbeats")
            if worker.local and self.local.kill(worker.pid):
                self._counted[worker.pid] = "killed for its silence"
        for level, line in self.versions.check(self.table.ready, now):
            log.log(level, "%s", line)

    def _drop(self, worker: Worker, reason: str, planned: bool = False, said: bool = False) -> None:
        """Forget ``worker``, failing its requests in flight (a planned idle exit is no warning; ``said``: logged)."""
        self.workers_lost += not (planned or self.draining)
        self._lost_work_in_drain |= self.draining and not planned and worker.in_flight > 0
        if (planned or said) and not worker.in_flight:
            self._comings.log(log, logging.DEBUG if said else logging.INFO, "%s", reason, always=worker.local)
        else:
            line = "%s; failing its %d in-flight request(s)"
            self._comings.log(log, logging.WARNING, line, reason, worker.in_flight, always=worker.local)
        self.workers.pop(worker.identity, None)
        self._gate.forget(worker.identity)
        self.worker_totals.retire(worker.identity)
        self.table.update()
        for tag in [tag for tag, forwarded in self.forwarded.items() if forwarded[0] is worker]:  # its key too: a
            keyed = self.table.keys.holds(tag)  # retry ran again elsewhere, a write made twice (checker h423 F3)
            self._fail(tag, f"{reason} while handling the request; {MAY_HAVE_RUN if keyed else RAN}", not keyed)

    def _send(self, route: str, client: bytes, key: Any, message: list[bytes]) -> Worker:
        """Hand ``message`` (``[tag + client, header, ...]``) to the worker the table chooses. One whose connection
        is closed (EHOSTUNREACH: killed, its host gone) is lost at once, its requests in flight failed, and the
        next is tried: with nothing in flight it was the least busy, and drew 82 % of requests for 3 heartbeats.
        RequestError when its queue is full (back-pressure, not its loss) or no worker serving ``route`` is left."""
        tag = message[0][:TAG_BYTES]
        while True:
            worker = self.table.choose(route, client, key, tag)
            try:
                self._to_worker([worker.identity, *message])
                return worker
            except zmq.ZMQError as exc:
                self.table.keys.answered(tag, ok=False)
                if exc.errno != zmq.EHOSTUNREACH:
                    raise not_sent(worker, exc) from None
                self._drop(worker, f"worker pid {worker.pid} cannot be reached ({exc.strerror})")
                if worker.local and self.local.kill(worker.pid):  # its exit, reaped later, is this loss
                    self._counted[worker.pid] = "it could not be reached"
                if not self.table.serving.get(route):
                    raise not_sent(worker, exc) from None

    def _fail(self, tag: bytes, message: str, retryable: bool = True) -> None:
        forwarded = self.forwarded.get(tag)
        if forwarded is None or not self._release(tag, forwarded, ok=False):
            return
        _, stats, received, envelope, request_id = forwarded
        error = RequestError(UNAVAILABLE, message, retry_after_ms=100 if retryable else None, retryable=retryable)
        self.outbox.send(error_frames(envelope, request_id, error))
        stats.record(UNAVAILABLE, time.perf_counter() - received)

    def _release(self, tag: bytes, forwarded: Forwarded, ok: bool) -> bool:
        """Free request ``tag``'s slot (answered, ``ok`` or not, or lost); False if its client got DEADLINE_EXCEEDED."""
        del self.forwarded[tag]
        if self._large:
            self._large_bytes -= self._large.pop(tag, 0)
        self.table.keys.answered(tag, ok=ok)
        forwarded[0].in_flight -= 1
        return not self.deadlines.answered(tag)

    def _expire(self) -> int:
        """Answer DEADLINE_EXCEEDED to each forwarded request whose deadline and grace passed (a stopped or hung
        worker keeps its slot until it answers or is lost), send replies waiting for room in a client's queue; the
        milliseconds to the next deadline, at most POLL_MS (RETRY_MS while replies wait)."""
        now = time.perf_counter()
        for tag in self.deadlines.due(now):
            worker, stats, received, envelope, request_id = self.forwarded[tag]
            said = f"the deadline passed before worker pid {worker.pid} answered (it may still run the request)"
            self.outbox.send(error_frames(envelope, request_id, RequestError(DEADLINE_EXCEEDED, said)))
            stats.record(DEADLINE_EXCEEDED, now - received)
        return self.deadlines.wait_ms(now, RETRY_MS if self.outbox.flush() else POLL_MS)

    def _from_worker(self, frames: list[bytes], user: str | None) -> None:
        tagged = frames[1]
        if tagged == CONTROL:
            if user is not None and not self.curve.is_worker(user):  # its key was removed since it connected
                if frames[0] in self.workers:
                    self._drop(self.workers[frames[0]], f"worker pid {self.workers[frames[0]].pid}: key removed")
                with contextlib.suppress(zmq.ZMQError):  # gone meanwhile, or not reading: told at its next heartbeat
                    self._to_worker([frames[0], *KEY_REMOVED])
            elif len(frames) > 3 and frames[2] == b"HEARTBEAT":
                self._gate.offer(frames[0], frames[3])
            elif len(frames) > 2 and frames[2] == b"GONE":
                self._gate.forget(frames[0])  # a heartbeat of it still waiting came before it: superseded
                self._gone(frames[0], frames[3] if len(frames) > 3 else None)
            else:
                self._strays.misread(frames, self.workers, TAG_BYTES)
            return
        tag = tagged[:TAG_BYTES]
        forwarded = self.forwarded.get(tag)
        if forwarded is None or forwarded[0].identity != frames[0]:
            if len(tagged) != TAG_BYTES + 1 or tagged in WORKER_COMMANDS:
                self._strays.misread(frames, self.workers, TAG_BYTES)
            return  # answered already (its worker was declared dead meanwhile), or sent to another peer
        code = CODE_OF_BYTE.get(tagged[TAG_BYTES:])
        if code is None or len(frames) < 4:  # no reply a worker sends (a status, a header, a body): fail it now
            self._strays.misread(frames, self.workers, TAG_BYTES, failed=True)
            return self._fail(tag, "its worker sent a reply the broker cannot read; retry")
        if not self._release(tag, forwarded, ok=code == OK):
            return  # answered at its deadline: a reply after it is dropped
        _, stats, received, envelope, request_id = forwarded
        stats.record(code, time.perf_counter() - received)
        reply, instead = frames[2:], answered_instead(self.outbox.send, envelope, request_id, stats, code)
        self.outbox.send([*envelope, SIGNATURE, *reply], sum(map(len, reply)), instead)

    def _gone(self, identity: bytes, failure: bytes | None) -> None:
        """A worker drained and stopped, or (``failure``) its system did not start."""
        worker = self.workers.get(identity)
        served = worker is not None and worker.served  # a worker that has been ready did start: a plain GONE
        message, said = start_failure(failure) if failure is not None and not served else ({}, None)
        local = self.local.vouches(message)
        if said is not None and not local and names_another(worker, message.get("pid"), self.workers.values()):
            ignored = "ignored a GONE naming worker pid %s from another connection (a peer cannot speak for a worker)"
            self._impostors.log(log, logging.WARNING, ignored, message["pid"])
            return
        pid = message.get("pid") if local else None  # one of ours, not a peer naming it
        if said is not None:  # a peer's text is logged, not shown to every client as the daemon's state
            if pid is not None or not self.local.count:  # with local workers, only theirs
                self.start_failure = said
            self._comings.log(log, logging.ERROR, "%s", said, always=local)
        if pid is not None:  # its exit 1, reaped later, is this loss: counted once, not unclean
            self._counted[pid] = START_FAILED
            self.local.failed_starts.add(pid)
        if worker is not None:
            self._departed.add(identity)
            self._drop(worker, said or f"worker pid {worker.pid} drained and stopped", said is None, said is not None)
        elif said is not None and pid in self._counted:  # before its first heartbeat: counted here, as _drop would
            self.workers_lost += not self.draining

    def _heartbeat(self, identity: bytes, frame: bytes) -> None:
        if identity in self._departed or (self.draining and identity not in self.workers):  # new in a drain: not taken
            self._turn_away(identity)
            return
        try:
            status = read_heartbeat(frame)
        except ValueError as exc:
            said = "ignored a heartbeat on the worker endpoint from %s: %s"
            self._unreadable.log(log, logging.WARNING, said, peer_name(self.workers, identity), exc)
            return
        worker, local = self.workers.get(identity), self.local.vouches(status)
        if worker is None:
            if len(self.workers) >= MAX_WORKERS and not local:  # made-up peers: not ours
                self._crowded.log(log, logging.WARNING, "ignored a new worker: %d are connected", MAX_WORKERS)
                return
            worker = self.workers[identity] = Worker(identity)
            self._comings.log(log, logging.INFO, "worker pid %s connected", status.get("pid"), always=local)
            self._tell_workers(WELCOME, [worker])  # it says it is connected once it has this answer
        was_ready, before = worker.ready, worker.status
        worker.update(status, local, self.settings.heartbeat)
        if status.get("draining") and not (before.get("draining") or self.draining):  # a draining broker told it
            self._tell_workers(b"DRAIN", [worker])
        if not self.worker_totals.update(identity, status.get("metrics")):
            self._unreadable.log(log, logging.WARNING, "ignored worker pid %d's metrics: not a snapshot", worker.pid)
        if worker.ready != was_ready or (worker.ready and status.get("routes") != before.get("routes")):
            self.table.update()  # a ready worker's new routes count now, not once it turns ready
            if worker.ready and not was_ready:
                self._comings.log(log, logging.INFO, "worker pid %d ready", worker.pid, always=local)
                self.start_failure = None
                if differing := routes_differing(worker, self.table.ready):
                    self._comings.log(log, logging.WARNING, "%s", differing, always=local)

    # -- clients -------------------------------------------------------------------------
    def _from_client(self, frames: list[bytes], user: str | None) -> None:
        """One client message: answered here (built-in routes, refusals) or forwarded (the hot
        path, kept flat: common cases first, checks inline)."""
        received = time.perf_counter()
        index = split_envelope(frames)
        if index < 0:  # not a request; a worker's heartbeat here is told where workers connect
            self.dropped += not self._strays.on_client_endpoint(frames)  # answered: not dropped
            return
        envelope, request_id, info, route = frames[:index], None, None, None
        try:
            header = read_header(frames[index + 1])
            request_id = header_id(header)  # an invalid id raises, and its reply carries nil
            key, budget = header_options(header)  # the header's own fields: checked first
            named = header.get("route")  # a refusal before the route is known counts as unrouted (h379 F1)
            vet_sender(self.curve, self.buckets, user, envelope, frames, named if type(named) is str else None)
            route = named
            info = self.table.routes.get(route) if type(route) is str else None
            if info is None:
                route = header_route(header)
                if route == SCALE_ROUTE:
                    self._builtin(envelope, request_id, route, user, received, *frames[index + 2 :])
                    return
                if route in KERNEL_ROUTES:
                    if route in ADMIN_ROUTES:  # admin rights before the body, as a worker checks them
                        check_admin(self.curve, route, user)
                    check_no_body(route, frames[index + 2 :])
                    self._builtin(envelope, request_id, route, user, received)
                    return
                raise self._unroutable(route)
            if info["admin"]:
                check_admin(self.curve, route, user)
            if self.draining:
                raise draining_error()
            if not self.table.serving.get(route):
                raise self._unroutable(route)
            # the checks a worker makes before admission that need no decoding; the body's contents are the worker's
            payload = sum(map(len, frames[index + 2 :]))
            if type(limit := info.get("max_payload")) is int and payload > limit:  # as the workers describe it
                raise too_large(route, payload, len(frames) - index - 2, limit)
            if budget is not None and budget <= 0:
                raise passed_on_arrival()
            stats = self.stats.get(route) or self._new_stats(route)
            if self.max_in_flight is not None and len(self.forwarded) >= self.max_in_flight:
                held = f"the daemon has {len(self.forwarded)} requests in flight across its workers"
                raise refused(f"max_in_flight ({self.max_in_flight}) reached: {held}", stats)
            client = user.encode() if user is not None else envelope[0]
            size = payload + len(frames[index + 1])
            if size >= LARGE_REQUEST and self._large_bytes + size > self.settings.forward_backlog_mb << 20:
                held = f"{self._large_bytes / (1 << 20):.1f} MiB of requests for its workers"
                raise RequestError(RESOURCE_EXHAUSTED, f"the broker holds {held}; retry", retry_after_ms=100)
            self._tag += 1
            tag = self._tag.to_bytes(TAG_BYTES, "little")
            head = frames[index + 1] if budget is None else forwarded_header(header, budget, received)
            worker = self._send(route, client, key, [tag + client, head, *frames[index + 2 :]])
            worker.in_flight += 1
            self.forwarded[tag] = (worker, stats, received, envelope, request_id)
            if budget is not None or key is not None:  # a repeat of a key in flight: due with the first
                self.deadlines.add(received, budget, tag, None if key is None else (client, route, key))
            if size >= LARGE_REQUEST:
                self._large[tag] = size
                self._large_bytes += size
        except RequestError as error:
            self.outbox.send(error_frames(envelope, request_id, error))
            if info is not None or (type(route) is str and (route in KERNEL_ROUTES or route == SCALE_ROUTE)):
                # a refusal of a known route counts against it, as in a worker
                (self.stats.get(route) or self._new_stats(route)).record(error.code, time.perf_counter() - received)
            else:
                self.unrouted[error.code] += 1
        except Exception as exc:  # nothing a client sends stops the broker
            log.exception("broker failed on a request")
            error = RequestError(INTERNAL, f"the broker failed: {type(exc).__name__}: {exc}")
            self.outbox.send(error_frames(envelope, request_id, error))
