"""The daemon's I/O loop: one ZeroMQ socket, drained on every wake-up.

The I/O thread owns the socket. For each message it reads the header, looks the route
up (:mod:`heirloom.wire.routing`), answers the kernel's routes and inline routes at
once, and hands the rest to handler threads or a route's batcher; their results come
back through a queue and an inproc wake-up socket, and the I/O thread sends them. In
worker mode the same loop sits behind a broker (:mod:`heirloom.wire.broker`) on a
DEALER socket and heartbeats its status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
from zmq.backend import zmq_poll

from heirloom.core.components import Versioned
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.wire.builtin_routes import KernelApi
from heirloom.wire.call import Call, deadline_body, fail, settle
from heirloom.wire.idempotency import IdempotencyCache
from heirloom.wire.metrics import daemon_snapshot
from heirloom.wire.protocol import (
    CONTROL,
    DEADLINE_EXCEEDED,
    HEADER_LIMIT,
    INTERNAL,
    INVALID_ARGUMENT,
    OK,
    PERMISSION_DENIED,
    SIGNATURE,
    UNAVAILABLE,
    RequestError,
    detach_buffers,
    error_frames,
    hashable,
    header_route,
    packb,
    read_header,
    split_envelope,
    unpackb,
)
from heirloom.wire.routing import Admission, Endpoint, Router, decode_call
from heirloom.wire.transport import drain, receiver, sender

log = logging.getLogger("heirloom.server")
POLL_MS = 50
DRAIN_BATCH = 1000
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
    ):
        self.system = system
        self.settings = settings
        self.context = context or zmq.Context()
        self.curve = curve
        self.router = Router()
        for route in KernelApi(self).routes():
            self.router.add(route.name, route, builtin=True)
        self.admission = Admission(settings.max_queue, lambda: system.resources)
        self.idempotency = IdempotencyCache(settings.idempotency_cache)
        self.draining = False
        self.dropped = 0
        self.undeliverable = 0
        self.started_at = time.time()
        self.start_error: BaseException | None = None
        self._drain_deadline = 0.0
        self._done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._local = threading.local()
        self._wake_address = f"inproc://heirloom-wake-{id(self)}"
        self._wake = self.context.socket(zmq.PULL)
        self._wake.bind(self._wake_address)
        self._executor = ThreadPoolExecutor(settings.handler_threads, thread_name_prefix="heirloom-handler")
        self._system_ready = threading.Event()
        self._installed = False
        self.connect_address = connect
        if connect is not None:
            self.socket = self.context.socket(zmq.DEALER)
            self.identity = f"w{os.getpid()}-{os.urandom(4).hex()}".encode()
            self.socket.setsockopt(zmq.IDENTITY, self.identity)
            self.socket.connect(connect)
        else:
            self.socket = self.context.socket(zmq.ROUTER)
            if curve is not None:
                curve.serve(self.socket)
            for address in bind or settings.bind:
                self.socket.bind(address)
        self.socket.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        self.socket.setsockopt(zmq.LINGER, 2000)
        self._recv = receiver(self.socket, with_user=curve is not None)
        self._send_raw = sender(self.socket, nonblocking=True)
        self._last_heartbeat = 0.0

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
            except BaseException as exc:  # noqa: BLE001 - reported by run()
                self.start_error = exc
            self._system_ready.set()
            self._wake_up()

        threading.Thread(target=start, name="heirloom-start", daemon=True).start()

    def ready(self) -> bool:
        return not self.draining and self._system_ready.is_set() and self.start_error is None and self.system.ready()

    def request_drain(self) -> None:
        """Stop accepting work; finish in-flight requests within the grace period."""
        if not self.draining:
            self.draining = True
            self._drain_deadline = time.perf_counter() + self.settings.grace
            log.info("draining: %d request(s) in flight, grace %.1fs", self.admission.in_flight, self.settings.grace)

    def run(self) -> None:
        """The I/O loop; returns once drained (or the system failed to start)."""
        watched = [(self.socket, zmq.POLLIN), (self._wake, zmq.POLLIN)]
        while True:
            for ready, _ in zmq_poll(watched, POLL_MS):  # zmq.Poller's wrapper costs ~1 us a turn
                if ready is self.socket:
                    drain(self.socket, self._recv, self._handle, DRAIN_BATCH)
                else:
                    self._drain_wakes()
            self._drain_done()
            if not self._installed and self._system_ready.is_set() and not self._install():
                break
            if self.connect_address is not None:
                self._heartbeat()
            if self.draining and (self.admission.in_flight == 0 or time.perf_counter() > self._drain_deadline):
                break
        self._finish_drain()

    def _install(self) -> bool:
        """Mount the started system's routes and watch its models; False if it failed."""
        if self.start_error is None:
            try:
                names = self.router.install(self.system, self._complete)
            except Exception as exc:  # noqa: BLE001 - an api with unusable routes fails the start
                self.start_error = exc
        if self.start_error is not None:
            log.error("system failed to start: %s", self.start_error)
            return False
        if self.system.serving is not None:
            self.system.serving.watch(self.settings.reload_interval)
        self._installed = True
        self._last_heartbeat = 0.0  # tell a broker at once
        log.info("serving %d routes: %s", len(names), ", ".join(names))
        log.info("ready")
        return True

    def _finish_drain(self) -> None:
        """Stop batchers and handler threads; answer whatever outlived the grace period."""
        self.router.stop_batchers(timeout=0.5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._drain_done()
        if self.admission.open:
            log.warning(
                "grace period over with %d request(s) unfinished; answering them UNAVAILABLE",
                len(self.admission.open),
            )
            body = {
                "code": UNAVAILABLE,
                "message": "the daemon shut down before the request finished",
                "retryable": True,
            }
            for call in list(self.admission.open):
                self._finish(call, UNAVAILABLE, body, None, 0.0)

    def close(self) -> None:
        """Close sockets; pending replies are flushed for up to the linger time."""
        self.socket.close()
        self._wake.close()
        self.context.destroy(linger=2000)

    # -- receiving -----------------------------------------------------------------------
    def _handle(self, frames: list[bytes], user: str | None = None) -> None:
        received = time.perf_counter()
        if frames[0] == CONTROL and self.connect_address is not None:
            self._control(frames)
            return
        index = split_envelope(frames)
        if index < 0:
            self.dropped += 1
            return
        envelope = frames[:index]
        request_id, endpoint = None, None
        try:
            header = read_header(frames[index + 1])
            request_id = header.get("id")
            endpoint = self.router.lookup(header_route(header), self._installed)
            if endpoint.route.admin:
                self._check_admin(endpoint, user)
            if endpoint.builtin:
                if len(frames[index + 2]) > HEADER_LIMIT:
                    raise RequestError(
                        INVALID_ARGUMENT, f"built-in routes take bodies under {HEADER_LIMIT} bytes", "body"
                    )
                self._inline(Call(envelope, request_id, endpoint, received), frames[index + 2])
                return
            if self.draining:
                raise RequestError(UNAVAILABLE, "the daemon is draining; retry on another instance", retry_after_ms=100)
            call = decode_call(envelope, request_id, endpoint, header, frames[index + 2 :], received)
            key = header.get("idempotency_key")
            if key is not None:
                call.idem = (endpoint.name, hashable(key))
                if self._replayed(call):
                    return
            if not endpoint.route.inline:
                self.admission.admit(call)
                if call.idem is not None:
                    self.idempotency.begin(call)
        except RequestError as error:
            self._refuse(envelope, request_id, endpoint, error, received)
            return
        except Exception as exc:  # noqa: BLE001 - a malformed frame must never stop the daemon
            code, field = INVALID_ARGUMENT, "header" if request_id is None else "body"
            error = RequestError(code, f"cannot decode the {field}: {type(exc).__name__}: {exc}", field)
            self._refuse(envelope, request_id, endpoint, error, received)
            return
        if endpoint.route.inline:
            self._inline(call, None)
        elif endpoint.batcher is not None:
            endpoint.batcher.put(call)
        else:
            self._executor.submit(self._run_one, call)

    def _refuse(
        self, envelope: list[bytes], request_id: Any, endpoint: Endpoint | None, error: RequestError, received: float
    ) -> None:
        """Answer a request refused before it ran; count it against its route when it has one."""
        self._send_frames(error_frames(envelope, request_id, error))
        if endpoint is not None:
            endpoint.stats.record(error.code, time.perf_counter() - received)

    def _check_admin(self, endpoint: Endpoint, user: str | None) -> None:
        if self.curve is not None and not self.curve.is_admin(user):
            raise RequestError(
                PERMISSION_DENIED, f"{endpoint.name} is an admin route; this client's key is not an admin key"
            )

    def _replayed(self, call: Call) -> bool:
        """Answer a repeated idempotency key from memory, or park it behind the first attempt."""
        remembered = self.idempotency.remembered(call)
        if remembered is not None:
            self._send(call, *remembered, 0.0)
            return True
        return self.idempotency.wait_for_first(call)

    def _inline(self, call: Call, body_frame: bytes | None) -> None:
        """Run a cheap handler on the I/O thread and reply at once (the hot path of echo-like
        routes, kept flat: every function call here costs a measurable share)."""
        began = time.perf_counter()
        try:
            body = call.body if body_frame is None else unpackb(body_frame)
            result = call.endpoint.route.handler(body)
        except Exception as exc:  # noqa: BLE001
            fail(call, exc, self._finish, call.endpoint.name)
            return
        now = time.perf_counter()
        if call.idem is None and not isinstance(result, _SPECIAL_RESULTS):
            try:
                packed = packb(result)
            except TypeError:
                pass  # buffers or an unencodable value: the general path deals with it
            else:
                header = {"id": call.id, "status": OK, "queue_ms": 0.0, "compute_ms": (now - began) * 1000}
                self._send_frames([*call.envelope, SIGNATURE, packb(header), packed])
                call.endpoint.stats.record(OK, now - call.received)
                return
        settle(call, result, self._finish, now - began)

    def _run_one(self, call: Call) -> None:
        call.started = time.perf_counter()
        if call.deadline is not None and call.started > call.deadline:
            self._complete(call, DEADLINE_EXCEEDED, deadline_body(), None, 0.0)
            return
        try:
            result = call.endpoint.route.handler(call.body)
        except Exception as exc:  # noqa: BLE001
            fail(call, exc, self._complete, call.endpoint.name)
            return
        settle(call, result, self._complete, time.perf_counter() - call.started)

    # -- replying ------------------------------------------------------------------------
    def _complete(self, call: Call, status: str, body: Any, version: str | None, compute: float) -> None:
        """Hand a result to the I/O thread (called from handler and batcher threads)."""
        self._done.put((call, status, body, version, compute))
        self._wake_up()

    def _wake_up(self) -> None:
        push = getattr(self._local, "push", None)
        if push is None:
            push = self._local.push = self.context.socket(zmq.PUSH)
            push.connect(self._wake_address)
        with contextlib.suppress(zmq.Again):  # wake-ups already queued: the I/O thread drains them all
            push.send(b"", zmq.NOBLOCK)

    def _drain_wakes(self) -> None:
        while True:
            try:
                self._wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _drain_done(self) -> None:
        done = self._done
        while not done.empty():
            self._finish(*done.get_nowait())

    def _finish(self, call: Call, status: str, body: Any, version: str | None, compute: float) -> None:
        if call.done:
            return
        call.done = True
        self._send(call, status, body, version, compute)
        self.admission.release(call)
        if call.idem is not None:
            for waiter in self.idempotency.finish(call, (status, body, version)):
                self._send(waiter, status, body, version, 0.0)

    def _send(self, call: Call, status: str, body: Any, version: str | None, compute: float) -> None:
        header: dict[str, Any] = {
            "id": call.id,
            "status": status,
            "queue_ms": (call.started - call.received) * 1000,
            "compute_ms": compute * 1000,
        }
        if version is not None:
            header["version"] = version
        try:
            packed = packb(body)
            buffers: list[Any] = []
        except TypeError:
            body, specs, buffers = detach_buffers(body)
            header["buffers"] = specs
            try:
                packed = packb(body)
            except TypeError as exc:
                status, packed = (
                    INTERNAL,
                    packb({"code": INTERNAL, "message": f"reply not encodable: {exc}", "retryable": False}),
                )
                header["status"] = status
        self._send_frames([*call.envelope, SIGNATURE, packb(header), packed, *buffers])
        call.endpoint.stats.record(status, time.perf_counter() - call.received, call.started - call.received)

    def _send_frames(self, frames: list[Any]) -> None:
        try:
            self._send_raw(frames)
        except zmq.Again:  # a worker whose broker is gone: nobody to answer
            self.undeliverable += 1

    # -- worker mode ---------------------------------------------------------------------
    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self.settings.heartbeat:
            self._last_heartbeat = now
            self._send_frames([CONTROL, b"HEARTBEAT", packb(self.status())])

    def status(self) -> dict[str, Any]:
        """What a broker needs to know about this worker."""
        return {
            "pid": os.getpid(),
            "ready": self.ready(),
            "in_flight": self.admission.in_flight,
            "draining": self.draining,
            "routes": [e.describe() for e in self.router.endpoints.values() if not e.builtin],
            "metrics": daemon_snapshot(self),
        }

    def _control(self, frames: list[bytes]) -> None:
        command = frames[1] if len(frames) > 1 else b""
        if command == b"DRAIN":
            self.request_drain()
        elif command == b"RELOAD" and self.system.serving is not None:
            self.system.serving.check_now()
