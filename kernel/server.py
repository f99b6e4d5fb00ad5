"""The daemon's request loop: one ZeroMQ socket, drained on every wake-up.

The I/O thread owns the socket: it decodes headers, answers built-in and inline routes
at once, queues the rest (bounded) to handler threads or batchers, and sends replies
that those threads hand back through a queue and an inproc wake-up socket. In worker
mode the same loop sits behind a broker (:mod:`heirloom.broker`) on a DEALER socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
from zmq.backend import zmq_poll

from heirloom.batching import Batcher, deadline_body, fail, items_of, settle
from heirloom.components import Route, Versioned
from heirloom.inputs import InputValidator, json_schema
from heirloom.protocol import (
    CONTROL,
    DEADLINE_EXCEEDED,
    HEADER_LIMIT,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    SIGNATURE,
    UNAVAILABLE,
    RequestError,
    attach_buffers,
    detach_buffers,
    header_route,
    packb,
    read_header,
    unpackb,
)
from heirloom.schema import did_you_mean
from heirloom.settings import ServerSettings
from heirloom.stats import RouteStats
from heirloom.system import System
from heirloom.transport import drain, receiver, sender

log = logging.getLogger("heirloom.server")
POLL_MS = 50
DRAIN_BATCH = 1000
BUILTIN_ROUTES = ("_health", "_ready", "_routes", "_stats", "_reload")
ADMIN_ROUTES = frozenset({"_reload"})


_SPECIAL_RESULTS = (Versioned, RequestError)


class Call:
    """One accepted request on its way through the daemon."""

    __slots__ = ("body", "deadline", "done", "endpoint", "envelope", "id", "idem", "items", "received", "started")

    def __init__(self, envelope: list[bytes], request_id: Any, endpoint: Endpoint, received: float):
        self.envelope = envelope
        self.id = request_id
        self.endpoint = endpoint
        self.received = received
        self.started = received
        self.deadline: float | None = None
        self.idem: tuple[str, Any] | None = None
        self.body: Any = None
        self.items = 1
        self.done = False


class Endpoint:
    """A route as the daemon runs it: validation, limits, stats, and where it executes."""

    __slots__ = ("batcher", "builtin", "name", "pending", "route", "stats", "validate")

    def __init__(self, name: str, route: Route, builtin: bool = False):
        self.name = name
        self.route = route
        self.builtin = builtin
        self.validate = InputValidator(route.input) if route.input is not None else None
        self.stats = RouteStats()
        self.pending = 0
        self.batcher: Batcher | None = None

    def describe(self) -> dict[str, Any]:
        route = self.route
        return {
            "name": self.name,
            "description": route.description,
            "batched": route.batched,
            "max_batch": route.max_batch if route.batched else 1,
            "max_wait_ms": route.max_wait_ms if route.batched else 0,
            "max_payload": route.max_payload,
            "inline": route.inline or self.builtin,
            "admin": self.name in ADMIN_ROUTES,
            "input": json_schema(route.input),
        }


def error_frames(envelope: list[bytes], request_id: Any, error: RequestError) -> list[bytes]:
    """A complete error reply for ``envelope``."""
    header = {"id": request_id, "status": error.code}
    return [*envelope, SIGNATURE, packb(header), packb(error.body())]


def split_envelope(frames: list[bytes]) -> int:
    """Index of the signature frame (after the routing envelope), or -1 if not an envelope."""
    if len(frames) >= 4 and frames[1] == SIGNATURE:
        return 1
    for index in range(2, min(len(frames) - 2, 6)):
        if frames[index] == SIGNATURE:
            return index
    return -1


def hashable(value: Any) -> Any:
    """Keys and ids are usually ints or strings; anything else is keyed by its encoding."""
    try:
        hash(value)
    except TypeError:
        return packb(value)
    return value


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
        self.routes: dict[str, Endpoint] = {
            name: Endpoint(name, self._builtin(name), builtin=True) for name in BUILTIN_ROUTES
        }
        self.draining = False
        self.dropped = 0
        self.in_flight = 0
        self.started_at = time.time()
        self.start_error: BaseException | None = None
        self._drain_deadline: float | None = None
        self._done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._local = threading.local()
        self._wake_address = f"inproc://heirloom-wake-{id(self)}"
        self._wake = self.context.socket(zmq.PULL)
        self._wake.bind(self._wake_address)
        self._executor = ThreadPoolExecutor(settings.handler_threads, thread_name_prefix="heirloom-handler")
        self._replies: OrderedDict[tuple[str, Any], tuple[str, Any, str | None]] = OrderedDict()
        self._waiting: dict[tuple[str, Any], list[Call]] = {}
        self._system_ready = threading.Event()
        self._reload_now = threading.Event()
        self._watch_stop = threading.Event()
        self._open: set[Call] = set()
        self._resources: Any = None
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
        self._recv = receiver(self.socket, with_user=curve is not None)
        self.undeliverable = 0
        send = sender(self.socket, nonblocking=True)

        def send_or_drop(frames: list[Any]) -> None:
            try:
                send(frames)
            except zmq.Again:  # a worker whose broker is gone: nobody to answer
                self.undeliverable += 1

        self._send_frames = send_or_drop
        self.socket.setsockopt(zmq.LINGER, 2000)
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

    def _install_routes(self) -> None:
        self._resources = self.system.resources
        for api_name, api in self.system.apis().items():
            for route in api.routes():
                name = f"{api_name}.{route.name}"
                endpoint = Endpoint(name, route)
                if route.batched:
                    endpoint.batcher = Batcher(name, route, endpoint.stats, self._complete)
                self.routes[name] = endpoint
        if self.system.serving is not None and self.system.serving.handles:
            threading.Thread(target=self._watch_models, name="heirloom-models", daemon=True).start()
        log.info(
            "serving %d routes: %s",
            len(self.routes) - len(BUILTIN_ROUTES),
            ", ".join(n for n in self.routes if not n.startswith("_")),
        )

    def request_drain(self) -> None:
        """Stop accepting work; finish in-flight requests within the grace period."""
        if not self.draining:
            self.draining = True
            self._drain_deadline = time.perf_counter() + self.settings.grace
            log.info("draining: %d request(s) in flight, grace %.1fs", self.in_flight, self.settings.grace)

    def run(self) -> None:
        """The I/O loop; returns once drained (or the system failed to start)."""
        watched = [(self.socket, zmq.POLLIN), (self._wake, zmq.POLLIN)]
        installed = False
        while True:
            for ready, _ in zmq_poll(watched, POLL_MS):  # zmq.Poller's wrapper costs ~1 us a turn
                if ready is self.socket:
                    self._drain_socket()
                else:
                    self._drain_wakes()
            self._drain_done()
            if not installed and self._system_ready.is_set():
                if self.start_error is None:
                    try:
                        self._install_routes()
                    except Exception as exc:  # noqa: BLE001 - an api with unusable routes fails the start
                        self.start_error = exc
                if self.start_error is not None:
                    log.error("system failed to start: %s", self.start_error)
                    break
                installed = True
                self._last_heartbeat = 0.0  # tell a broker at once
                log.info("ready")
            if self.connect_address is not None:
                self._heartbeat()
            if self.draining and (self.in_flight == 0 or time.perf_counter() > self._drain_deadline):
                break
        self._finish_drain()

    def _finish_drain(self) -> None:
        """Stop batchers and handler threads; answer whatever outlived the grace period."""
        self._watch_stop.set()
        self._reload_now.set()
        for endpoint in self.routes.values():
            if endpoint.batcher is not None:
                endpoint.batcher.stop(timeout=0.5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._drain_done()
        if self._open:
            log.warning("grace period over with %d request(s) unfinished; answering them UNAVAILABLE", len(self._open))
            for call in list(self._open):
                self._finish(
                    call,
                    UNAVAILABLE,
                    {
                        "code": UNAVAILABLE,
                        "message": "the daemon shut down before the request finished",
                        "retryable": True,
                    },
                    None,
                    0.0,
                )

    def close(self) -> None:
        """Close sockets; pending replies are flushed for up to the linger time."""
        self.socket.close()
        self._wake.close()
        self.context.destroy(linger=2000)

    # -- receiving -----------------------------------------------------------------------
    def _drain_socket(self) -> None:
        drain(self.socket, self._recv, self._handle, DRAIN_BATCH)

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
        request_id = None
        try:
            header = read_header(frames[index + 1])
            request_id = header.get("id")
            name = header_route(header)
            endpoint = self.routes.get(name)
            if endpoint is None:
                raise self._unknown_route(name)
            if endpoint.builtin:
                self._check_admin(name, user)
                if len(frames[index + 2]) > HEADER_LIMIT:
                    raise RequestError(
                        INVALID_ARGUMENT, f"built-in routes take bodies under {HEADER_LIMIT} bytes", "body"
                    )
                self._inline(Call(envelope, request_id, endpoint, received), frames[index + 2])
                return
            if self.draining:
                raise RequestError(UNAVAILABLE, "the daemon is draining; retry on another instance", retry_after_ms=100)
            call = self._accept(envelope, request_id, endpoint, header, frames[index + 2 :], received)
        except RequestError as error:
            self._send_frames(error_frames(envelope, request_id, error))
            return
        except Exception as exc:  # noqa: BLE001 - a malformed frame must never stop the daemon
            code, field = INVALID_ARGUMENT, "header" if request_id is None else "body"
            error = RequestError(code, f"cannot decode the {field}: {type(exc).__name__}: {exc}", field)
            self._send_frames(error_frames(envelope, request_id, error))
            return
        if call is None:
            return
        if call.endpoint.route.inline:
            self._inline(call, None)
        else:
            self._dispatch(call)

    def _unknown_route(self, name: str) -> RequestError:
        if not self._system_ready.is_set():
            return RequestError(UNAVAILABLE, "the daemon is starting; no routes yet", "header.route", 500)
        known = [n for n in self.routes if not n.startswith("_")]
        return RequestError(
            NOT_FOUND, f"no route {name!r}{did_you_mean(name, known)} (call _routes for the list)", "header.route"
        )

    def _check_admin(self, name: str, user: str | None) -> None:
        if name in ADMIN_ROUTES and self.curve is not None and not self.curve.is_admin(user):
            raise RequestError(PERMISSION_DENIED, f"{name} is an admin route; this client's key is not an admin key")

    def _accept(
        self,
        envelope: list[bytes],
        request_id: Any,
        endpoint: Endpoint,
        header: dict,
        rest: list[bytes],
        received: float,
    ) -> Call | None:
        route = endpoint.route
        body_frame = rest[0]
        if len(body_frame) > route.max_payload:
            raise RequestError(
                INVALID_ARGUMENT,
                f"body is {len(body_frame)} bytes; {endpoint.name} accepts at most {route.max_payload}",
                "body",
            )
        call = Call(envelope, request_id, endpoint, received)
        budget = header.get("deadline_ms")
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)):
                raise RequestError(
                    INVALID_ARGUMENT, f"header.deadline_ms must be a number, got {budget!r}", "header.deadline_ms"
                )
            if budget <= 0:
                raise RequestError(DEADLINE_EXCEEDED, "the deadline had passed when the request arrived")
            call.deadline = received + budget / 1000
        body = unpackb(body_frame)
        if len(rest) > 1:
            body = attach_buffers(body, header, rest[1:])
        if endpoint.validate is not None:
            body = endpoint.validate(body)
        call.body = body
        key = header.get("idempotency_key")
        if key is not None:
            call.idem = (endpoint.name, hashable(key))
            if self._replay(call):
                return None
        if route.inline:
            return call
        if endpoint.pending >= self.settings.max_queue:
            raise RequestError(
                RESOURCE_EXHAUSTED,
                f"{endpoint.name} has {endpoint.pending} requests queued (the limit); retry after the hinted pause",
                retry_after_ms=self._retry_hint(endpoint),
            )
        if not self._resources.admit():
            raise RequestError(
                RESOURCE_EXHAUSTED,
                "the resource manager refused the request (in-flight or memory limit); retry after the hinted pause",
                retry_after_ms=self._retry_hint(endpoint),
            )
        call.items = items_of(route, body)
        endpoint.pending += 1
        self.in_flight += 1
        self._open.add(call)
        if call.idem is not None:
            self._waiting[call.idem] = []  # repeats of this key now wait for this attempt
        return call

    @staticmethod
    def _retry_hint(endpoint: Endpoint) -> int:
        """A pause worth one typical request: cheap, since it is computed on every refusal."""
        return max(10, int(endpoint.stats.typical * 1000))

    def _replay(self, call: Call) -> bool:
        """Answer a repeated idempotency key from memory (or wait for the first attempt)."""
        assert call.idem is not None
        cached = self._replies.get(call.idem)
        if cached is not None:
            status, body, version = cached
            self._send(call, status, body, version, 0.0)
            return True
        if call.idem in self._waiting:
            self._waiting[call.idem].append(call)
            return True
        return False

    def _dispatch(self, call: Call) -> None:
        endpoint = call.endpoint
        if endpoint.batcher is not None:
            endpoint.batcher.put(call)
        else:
            self._executor.submit(self._run_one, call)

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
        endpoint = call.endpoint
        self._send(call, status, body, version, compute)
        if call in self._open:
            self._open.discard(call)
            endpoint.pending -= 1
            self.in_flight -= 1
            self._resources.release()
        if call.idem is not None:
            self._remember(call, status, body, version)

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
        call.endpoint.stats.record(status, time.perf_counter() - call.received)

    def _remember(self, call: Call, status: str, body: Any, version: str | None) -> None:
        """Answer calls that repeated this idempotency key meanwhile; cache a success."""
        assert call.idem is not None
        for waiter in self._waiting.pop(call.idem, []):
            self._send(waiter, status, body, version, 0.0)
        if status == OK:
            self._replies[call.idem] = (status, body, version)
            while len(self._replies) > self.settings.idempotency_cache:
                self._replies.popitem(last=False)

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
            "ready": self._ready(),
            "in_flight": self.in_flight,
            "draining": self.draining,
            "routes": [e.describe() for e in self.routes.values() if not e.builtin],
        }

    def _control(self, frames: list[bytes]) -> None:
        command = frames[1] if len(frames) > 1 else b""
        if command == b"DRAIN":
            self.request_drain()
        elif command == b"RELOAD":
            self._reload(None)

    # -- built-in routes -----------------------------------------------------------------
    def _builtin(self, name: str) -> Route:
        handlers = {
            "_health": self._health,
            "_ready": self._ready_route,
            "_routes": self._routes_route,
            "_stats": self._stats,
            "_reload": self._reload,
        }
        docs = {
            "_health": "Liveness: answers while the process runs.",
            "_ready": "Readiness: every component started and warm, and not draining.",
            "_routes": "Every route with its limits and input schema.",
            "_stats": "Per-route counts, errors, latency percentiles, queue depth and batch sizes.",
            "_reload": "Admin: check the artifact store now for models whose served alias moved.",
        }
        return Route(name, handler=handlers[name], inline=True, description=docs[name])

    def _ready(self) -> bool:
        return not self.draining and self._system_ready.is_set() and self.start_error is None and self.system.ready()

    def _health(self, body: Any) -> dict[str, Any]:
        return {"live": True, "draining": self.draining, "pid": os.getpid()}

    def _ready_route(self, body: Any) -> dict[str, Any]:
        return {"ready": self._ready(), "draining": self.draining, "components": self.system.readiness()}

    def _routes_route(self, body: Any) -> dict[str, Any]:
        return {"routes": [endpoint.describe() for endpoint in self.routes.values()]}

    def _stats(self, body: Any) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "in_flight": self.in_flight,
            "dropped_frames": self.dropped,
            "undeliverable_replies": self.undeliverable,
            "draining": self.draining,
            "routes": {name: e.stats.snapshot(e.pending) for name, e in self.routes.items()},
            "resources": self.system.resources.usage() if self.system.state == "running" else {},
            "models": self.system.serving.status() if self.system.serving is not None else {},
        }

    def _reload(self, body: Any) -> dict[str, Any]:
        """Check the store for moved versions now (the watcher loads them off this thread)."""
        self._reload_now.set()
        serving = self.system.serving
        return {"checking": sorted(serving.handles) if serving is not None else []}

    def _watch_models(self) -> None:
        """Every ``reload_interval`` seconds (or on ``_reload``), swap in moved versions."""
        serving = self.system.serving
        assert serving is not None
        while not self._watch_stop.is_set():
            self._reload_now.wait(self.settings.reload_interval or None)
            self._reload_now.clear()
            if self._watch_stop.is_set():
                return
            try:
                serving.refresh()
            except Exception:
                log.exception("checking the artifact store for new model versions failed")
