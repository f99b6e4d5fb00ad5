"""The daemon's I/O loop: one ZeroMQ socket, drained on every wake-up.

The I/O thread owns the socket. For each message it reads the header, looks the route up (:mod:`heirloom.wire.routing`),
admits the request, answers the kernel's routes and inline routes at once, and hands the rest to handler threads or a
route's batcher; their results come back through a queue and a wake-up pipe, and the I/O thread sends them. In worker
mode the same loop sits behind a broker (:mod:`heirloom.wire.broker`) on a DEALER socket and heartbeats its status.

Threads other than the I/O thread touch no socket: they write one byte to the wake-up pipe, under a lock that
:meth:`Server.close` also takes, so none writes to a closed (or reused) file descriptor. A pipe, not an inproc ZeroMQ
pair: one ``write`` to wake, one ``read`` to collect every wake-up, where the pair cost a send, a receive per wake-up
and a ``zmq.Again`` to end the drain (about 10 µs a reply off the I/O thread).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
from zmq.backend import zmq_poll

from heirloom.core.components import ClientLimits, Versioned
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.wire import manager_calls
from heirloom.wire.auth import check_admin
from heirloom.wire.batching import Batcher
from heirloom.wire.broker_link import BrokerLink
from heirloom.wire.builtin_routes import KernelApi, check_no_body
from heirloom.wire.call import Call, Encoded, deadline_body, dropped_reply, encode, fail, invalid_part, settle
from heirloom.wire.connections import ConnectionWatch, client_receiver, client_router, reply_outbox
from heirloom.wire.headers import header_id, header_options, header_route, read_header
from heirloom.wire.idempotency import IdempotencyCache, body_digest
from heirloom.wire.protocol import (
    CONTROL,
    DEADLINE_EXCEEDED,
    OK,
    SIGNATURE,
    STATUS_BYTE,
    UNAVAILABLE,
    RequestError,
    error_reply,
    packb,
    split_envelope,
    unpackb,
)
from heirloom.wire.ratelimit import ClientBuckets, vet_sender
from heirloom.wire.routing import Admission, Endpoint, Router, decode_call, draining_error, passed_on_arrival, refused
from heirloom.wire.strays import Strays, workers_go
from heirloom.wire.transport import RECEIVE_HWM, RETRY_MS, TRACK_BYTES, attach, drain, sweep

#: Name prefix of the threads that run unbatched handlers.
HANDLER_THREADS = "heirloom-handler"
#: Name of the thread that starts the system while the I/O loop answers built-in routes.
START_THREAD = "heirloom-start"
log = logging.getLogger("heirloom.server")
POLL_MS = 50
DRAIN_BATCH = 1000
#: Bytes read off the wake-up pipe per wake: more than are ever pending in practice.
WAKE_READ = 1 << 16
#: In worker mode a request's one envelope frame is the broker's 8-byte tag followed by the
#: client's identity; the reply's is the tag followed by one status byte. Neither carries
#: the signature frame (one frame less to move each way: the broker checked it).
TAG_BYTES = 8
OK_BYTE = STATUS_BYTE[OK]
_SPECIAL_RESULTS = (Versioned, RequestError)


class Server:
    """Serves one started (or starting) system on one socket until drained.

    ``bind`` mode: a ROUTER bound to client-facing addresses. ``connect`` mode: a
    DEALER connected to a broker's worker endpoint, sending heartbeats.
    """

    def __init__(
        self,
        system: System,
        settings: ServerSettings,
        *,
        bind: list[str] | None = None,
        connect: str | None = None,
        curve: Any = None,
        context: zmq.Context | None = None,
        limits: ClientLimits | None = None,
    ):
        self.system = system
        self.buckets = ClientBuckets(limits) if limits is not None else None
        self.settings = settings
        self.context = context or zmq.Context()
        self.curve = curve if connect is None else None  # a worker's requests were checked by its broker
        self.router = Router()
        for route in KernelApi(self).routes():
            self.router.add(route.name, route, builtin=True)
        self.admission = Admission(settings.max_queue)
        self.idempotency = IdempotencyCache(settings.idempotency_cache, settings.idempotency_cache_mb << 20)
        self.draining = False
        self.reload_asked = False  # by SIGHUP: done on the loop's next turn once the models have loaded
        self._reload_waits = False  # asked during start-up, and said so
        self.dropped = 0
        #: Refusals before any route was known (unknown route, unreadable header, rate limit), by code.
        self.unrouted: Counter[str] = Counter()
        self.started_at = time.time()
        self.start_error: BaseException | None = None
        self._drain_deadline = 0.0
        self._done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        #: Readable when a handler or batcher thread has finished a call (see read_wake).
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_write, False)
        self._wake_lock = threading.Lock()
        self._closed = False
        self._idle_inline = settings.idle_inline_ms / 1000
        self._executor = ThreadPoolExecutor(settings.handler_threads, thread_name_prefix=HANDLER_THREADS)
        self._system_ready = threading.Event()
        self._installed = False
        self._worker = connect is not None
        self.socket = self.context.socket(zmq.DEALER) if connect is not None else client_router(self.context)
        # socket options apply to connections made after they are set: before bind/connect
        self.socket.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        self.socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        self.socket.setsockopt(zmq.LINGER, 2000)
        #: Under Curve: which connection each request came on, so no other key gets its reply.
        self.watch = ConnectionWatch(self.socket, self.context) if self.curve is not None else None
        if connect is not None:
            self.identity = f"w{os.getpid()}-{os.urandom(4).hex()}".encode()
            self.socket.setsockopt(zmq.IDENTITY, self.identity)
            self.socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a broker not connected (BrokerLink)
            if curve is not None:  # the worker's keys for a broker whose worker endpoint is Curve
                curve.apply(self.socket)
            attach(self.socket, connect, bind=False)
        else:
            if curve is not None:
                curve.serve(self.socket)
            for address in bind or settings.bind:
                attach(self.socket, address, bind=True)
        self._recv = client_receiver(self.socket, self.watch, capped=connect is None)
        self.outbox = reply_outbox(self.socket, settings, self.watch)
        self.link = BrokerLink(self, connect) if connect is not None else None
        self.strays = Strays(log, self.outbox.send, workers_go(None, broker=False))  # workers come to a broker
        #: How long the I/O loop may wait for the socket or a wake-up before its next turn.
        self.wait_ms = POLL_MS

    # -- lifecycle -----------------------------------------------------------------------
    def endpoints(self) -> list[str]:
        """The addresses actually bound (``tcp://...:0`` resolved to its port)."""
        return [self.socket.getsockopt_string(zmq.LAST_ENDPOINT)]

    def start_system(self) -> None:
        """Start the system on a helper thread; built-in routes answer meanwhile."""

        def start() -> None:
            try:
                if self.system.state == "built":
                    self.system.start()
                gc.freeze()  # what the start made lives on: full collections (set off by a body of arrays) skip it
            except BaseException as exc:  # noqa: BLE001 - reported by run()
                self.start_error = exc
            self._system_ready.set()
            self._wake_up()

        threading.Thread(target=start, name=START_THREAD, daemon=True).start()

    def wait_started(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s (None: no limit) for start_system's thread to finish."""
        return self._system_ready.wait(timeout)

    @property
    def mounted(self) -> bool:
        """Whether the started system's routes are served (``ready`` also needs each model's version, no drain)."""
        return self._installed

    def ready(self) -> bool:
        # _installed, not only started: a _ready in the start's last turn said ready before the routes were mounted
        return not self.draining and self._installed and self.system.ready()

    def request_drain(self) -> None:
        """Stop accepting work; finish in-flight requests within the grace period."""
        if not self.draining:
            self.draining = True
            self._drain_deadline = time.perf_counter() + self.settings.grace
            log.info("draining: %d request(s) in flight, grace %gs", self.admission.in_flight, self.settings.grace)
            if self.link is not None:
                self.link.beat_soon()  # the broker stops sending work at the next turn

    def run(self) -> None:
        """The I/O loop; returns once drained (or the system failed to start), after answering what clients
        sent meanwhile and the daemon had not read (``sweep``: a worker's broker stops routing to it itself)."""
        watched = [(self.socket, zmq.POLLIN), (self.wake_fd, zmq.POLLIN)]
        while True:
            for ready, _ in zmq_poll(watched, self.wait_ms):  # zmq.Poller's wrapper costs ~1 us a turn
                if ready is self.socket:
                    self.read_socket()
                else:
                    self.read_wake()
            if not self.turn():
                break
        self.finish_drain()
        if self.draining and self.link is None and (read := sweep(self.socket, self._recv, self._handle)):
            log.info("answered %d request(s) read as the drain ended (UNAVAILABLE but built-in routes)", read)

    # The loop's pieces, for a host's event loop too (served_on_loop): read_socket or
    # read_wake when their descriptor is ready, then turn(); turn() also every wait_ms.
    def read_socket(self) -> None:
        """Handle the requests waiting on the socket (at most DRAIN_BATCH of them)."""
        drain(self.socket, self._recv, self._handle, DRAIN_BATCH)

    def read_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_fd, WAKE_READ)  # every wake-up written so far, at once

    def turn(self) -> bool:
        """Answer finished calls, mount the routes once started, heartbeat, check the drain;
        False once the loop should end (drained, or the system failed to start)."""
        self._drain_done()
        replies_wait = self.outbox.flush()  # replies waiting for room in ZeroMQ's queue: a drain sends them first
        self.wait_ms = RETRY_MS if replies_wait else POLL_MS
        if self.watch is not None:
            self.watch.catch_up()
        if not self._installed and self._system_ready.is_set() and not self._install():
            return False
        if self.link is not None:
            self.link.beat()
        if self.reload_asked and not self._installed and not self._reload_waits:  # said once, and kept asked
            self._reload_waits = True
            log.info("reload asked during start-up: the store is checked once the models have loaded")
        if self.reload_asked and self._installed:  # SIGHUP: what _reload does, on the I/O thread, not in the handler
            self.reload_asked = self._reload_waits = False
            log.info("received SIGHUP: reloading" if self.link is None else "reloading, as the broker asked at start")
            self.router.endpoints["_reload"].route.handler(None)
        if self.draining:
            left = self._drain_deadline - time.perf_counter()
            # a worker also answers what its broker sent before it learnt of the drain
            waiting = self.link is not None and self.link.owed()
            if (self.admission.in_flight == 0 and not waiting and not replies_wait) or left <= 0:
                return False
            self.wait_ms = min(self.wait_ms, int(left * 1000) + 1)  # wake at the deadline, not after it
        return True

    def _install(self) -> bool:
        """Mount the started system's routes and watch its models; False if it failed (a ready() raised, say)."""
        if self.start_error is None:
            try:
                names = self.router.install(self.system, self._complete, self.settings)
                if self.link is not None:  # a heartbeat its broker would refuse kept it out, unsaid (checker h336 F1)
                    self.link.check_heartbeat()
                waiting = [name for name, ready in self.system.readiness(strict=True).items() if not ready]
            except Exception as exc:  # noqa: BLE001 - an api with unusable routes (or a raising ready()) fails the start
                self.start_error = exc
        if self.start_error is not None:
            log.error("system failed to start: %s", self.start_error)
            if self.link is not None:
                self.link.failed(self.start_error)
            return False
        if self.system.serving is not None:
            self.system.serving.watch(self.settings.reload_interval)
        self.admission.resources = self.system.resources
        self._installed = True
        if self.link is not None:
            self.link.beat_soon()  # tell the broker at once
        log.info("serving %d route%s: %s", len(names), "s" * (len(names) != 1), ", ".join(names))
        if waiting:  # as _ready says: e.g. a model with no version to serve yet
            log.info("started; not ready until these report ready: %s", ", ".join(waiting))
        elif not self.draining:  # a worker stopped as it started is not ready: its log said it drains
            log.info("ready%s", self.link.where() if self.link else "")
        return True

    def finish_drain(self) -> None:
        """Answer what finished; past the grace period, answer the rest UNAVAILABLE at once
        (queued batches are dropped), then let handler and batcher threads go."""
        self._drain_done()
        if self.admission.open:
            log.warning(
                "grace period over with %d request(s) unfinished; answering them UNAVAILABLE",
                len(self.admission.open),
            )
            self.router.abandon_batchers()
            said = "the daemon shut down before the request finished"
            body = {"code": UNAVAILABLE, "message": said, "retryable": True, "retry_after_ms": 100}
            for call in list(self.admission.open):
                self._finish(call, UNAVAILABLE, body, None, 0.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.router.stop_batchers(timeout=0.5)
        if self.link is not None:
            self.link.leave()

    def close(self) -> None:
        """Close sockets; pending replies are flushed for up to the linger time. Threads still
        computing after this find the wake-up socket closed and send nothing."""
        with self._wake_lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_write)
        self.socket.close()
        os.close(self.wake_fd)
        self.context.destroy(linger=2000)

    # -- receiving -----------------------------------------------------------------------
    def _handle(self, frames: list[bytes], user: str | None = None) -> None:
        """One message off the socket (the hot path: common cases first, checks inline)."""
        received = time.perf_counter()
        if self._worker:  # [tag + client identity, header, body, *buffers]: no signature frame
            if frames[0] == CONTROL:
                self.link.control(frames)
                return
            envelope, head = frames[:1], 1
        else:
            index = split_envelope(frames)
            if index < 0:  # not a request; a worker's heartbeat here is told that this daemon takes no workers
                self.dropped += not self.strays.on_client_endpoint(frames)  # answered: not dropped
                return
            envelope, head = frames[:index], index + 1
        request_id, endpoint = None, None
        try:
            header = read_header(frames[head])
            request_id = header_id(header)  # an invalid id raises, and its reply carries nil
            key, budget = header_options(header)  # the header's own fields: checked first
            route = header.get("route")
            vet_sender(self.curve, self.buckets, user, envelope, frames, route if type(route) is str else None)
            endpoint = self.router.endpoints.get(route) if type(route) is str else None
            if endpoint is None:
                endpoint = self.router.lookup(header_route(header), self._installed, self.draining)
            if endpoint.admin:
                check_admin(self.curve, endpoint.name, user)
            if endpoint.builtin:
                check_no_body(endpoint.name, frames[head + 1 :])
                self._inline(Call(envelope, request_id, endpoint, received), False)
                return
            if self.draining and self.link is None:  # a broker stops routing to a draining worker itself
                raise draining_error()
            rest = frames[head + 1 :]
            call = decode_call(envelope, request_id, endpoint, header, rest, received, budget, self._worker)
            if key is not None:
                client = envelope[0][TAG_BYTES:] if self._worker else user if user is not None else envelope[0]
                call.idem = (client, endpoint.name, key)
                call.digest = body_digest(rest, header)
                if self._replayed(call):
                    return
            if budget is not None and budget <= 0:  # a broker's, after the key: a repeat waits for its first
                raise passed_on_arrival()
            if endpoint.inline:
                if (why := manager_calls.admit(self.admission.resources)) is not None:
                    raise refused(why, endpoint.stats)
            else:
                self.admission.admit(call)
                if call.idem is not None:
                    self.idempotency.begin(call)
        except RequestError as error:
            self._refuse(envelope, request_id, endpoint, error, received)
            return
        except Exception as exc:  # noqa: BLE001 - a malformed request must never stop the daemon
            error = invalid_part("header" if request_id is None else "body", exc)
            self._refuse(envelope, request_id, endpoint, error, received)
            return
        if endpoint.inline:
            self._inline(call, True)
        elif endpoint.batcher is not None:
            if not self._run_lone(call, endpoint.batcher):
                endpoint.batcher.put(call)
        else:
            self._executor.submit(self._run_one, call)

    def _refuse(
        self, envelope: list[bytes], request_id: Any, endpoint: Endpoint | None, error: RequestError, received: float
    ) -> None:
        """Answer a request refused before it ran; count it against its route when it has one."""
        self._send_error(envelope, request_id, error)
        if endpoint is not None:
            endpoint.stats.record(error.code, time.perf_counter() - received)
        else:
            self.unrouted[error.code] += 1

    def _replayed(self, call: Call) -> bool:
        """Answer a repeated idempotency key from memory, or park it behind the first attempt."""
        if (remembered := self.idempotency.remembered(call)) is not None:
            self._send(call, remembered, 0.0)
            return True
        return self.idempotency.wait_for_first(call)

    def _inline(self, call: Call, admitted: bool) -> None:
        """Run a cheap handler on the I/O thread and reply at once (the hot path of echo-like
        routes, kept flat: every function call here costs a measurable share). ``admitted``:
        the call holds a resource slot, given back when it is answered."""
        began = time.perf_counter()
        try:
            try:
                result = call.endpoint.route.handler(call.body)
            except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit too (signals never raise here)
                call.inline_done(began)  # a handler that held the I/O thread and then raised is said too (v34 F5)
                return fail(call, exc, self._finish, call.endpoint.name)
            now = call.inline_done(began)
            if call.idem is None and not isinstance(result, _SPECIAL_RESULTS):
                try:
                    unpackb(packed := packb(result))  # a tuple key packs, but no client decodes it: the general path
                    small = len(packed) < TRACK_BYTES  # one the outbox may drop: the general path answers in its place
                except BaseException:  # noqa: BLE001 - buffers, or what msgpack cannot pack: the general path says so
                    small = False
                if small:
                    header = packb({"id": call.id, "status": OK, "queue_ms": 0.0, "compute_ms": (now - began) * 1000})
                    if self._worker:
                        self.outbox.send([call.envelope[0][:TAG_BYTES] + OK_BYTE, header, packed])
                    else:
                        self.outbox.send([*call.envelope, SIGNATURE, header, packed])
                    call.endpoint.stats.record(OK, now - call.received, 0.0)
                    return
            settle(call, result, self._finish, now - began)
        finally:
            if admitted:
                manager_calls.release(self.admission.resources)

    def _run_lone(self, call: Call, batcher: Batcher) -> bool:
        """Compute a batched request on this thread when it is the daemon's only one in
        flight and no other message waits: there is nothing to batch it with, and the hand-over
        to the batcher thread and back would cost more than a quick compute. Bounded by
        ``[server] idle_inline_ms`` (the route's last batch must have been at least that quick),
        so other requests wait at most about that long behind it."""
        if not self._idle_inline or self.admission.in_flight > 1 or self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            return False
        return batcher.run_here(call, self._finish, self._idle_inline)

    def _run_one(self, call: Call) -> None:
        call.started = time.perf_counter()
        if call.deadline is not None and call.started > call.deadline:
            self._complete(call, DEADLINE_EXCEEDED, deadline_body(), None, 0.0)
            return
        try:
            result = call.endpoint.route.handler(call.body)
        except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit too (signals never raise here)
            fail(call, exc, self._complete, call.endpoint.name)
            return
        settle(call, result, self._complete, time.perf_counter() - call.started)

    # -- replying ------------------------------------------------------------------------
    def _complete(self, call: Call, status: str, body: Any, version: str | None, compute: float) -> None:
        """Hand a result to the I/O thread (called from handler and batcher threads)."""
        self._done.put((call, status, body, version, compute))
        self._wake_up()

    def _wake_up(self) -> None:
        with self._wake_lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups: the I/O thread will wake
                os.write(self._wake_write, b"w")

    def _drain_done(self) -> None:
        done = self._done
        while not done.empty():
            self._finish(*done.get_nowait())

    def _finish(self, call: Call, status: str, body: Any, version: str | None, compute: float) -> None:
        if call.done:
            return
        call.done = True
        reply = encode(status, body, version, call.endpoint, self.settings.max_message_bytes, self.outbox.total)
        self._send(call, reply, compute)
        self.admission.release(call)
        if call.idem is not None:
            for waiter in self.idempotency.finish(call, reply[0], reply, reply[5]):
                self._send(waiter, reply, 0.0)

    def _send(self, call: Call, reply: Encoded, compute: float) -> None:
        status, version, packed, specs, buffers, size = reply
        header: dict[str, Any] = {
            "id": call.id,
            "status": status,
            "queue_ms": (call.started - call.received) * 1000,
            "compute_ms": compute * 1000,
        }
        if version is not None:
            header["version"] = version
        if specs:
            header["buffers"] = specs
        call.endpoint.stats.record(status, time.perf_counter() - call.received, call.started - call.received)

        def instead(size: int, held: int) -> None:  # the reply dropped: counted as what the client gets
            call.endpoint.stats.dropped(status)
            self._send_error(call.envelope, call.id, dropped_reply(size, held))

        self.outbox.send([*self._prefix(call.envelope, status), packb(header), packed, *buffers], size, instead)

    def _send_error(self, envelope: list[bytes], request_id: Any, error: RequestError) -> None:
        self.outbox.send([*self._prefix(envelope, error.code), *error_reply(request_id, error)])

    def _prefix(self, envelope: list[bytes], status: str) -> list[bytes]:
        """What precedes a reply's header: the client's envelope and the signature, or in
        worker mode one frame, the broker's tag and the status as one byte (the broker
        adds the signature back)."""
        if self._worker:
            return [envelope[0][:TAG_BYTES] + STATUS_BYTE[status]]
        return [*envelope, SIGNATURE]
