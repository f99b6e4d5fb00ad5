"""Worker actors on a Ray cluster: Ray places and restarts them; ZeroMQ carries requests.

Each actor runs ``python -m heirloom worker ... --connect BROKER`` as a child process (the
same worker loop as a local worker, with its own main thread for signals), killed with its
actor: the child holds PR_SET_PDEATHSIG, and the actor exits when the child does, so Ray
restarts the pair (up to ``max_restarts``). A worker that vanishes with its node is noticed
by the broker through its lapsed heartbeats, which answers its in-flight requests UNAVAILABLE.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import heirloom
from heirloom.options import loopback
from heirloom_plugins.ray_cluster import MAX_WORKERS, too_many


def _import_ray_naming_this_driver() -> tuple[ModuleType, str | None]:
    """Import ray with this process named as its raylet's pid; return ray and what its core read as that pid
    (None: the parent's liveness stands for it).

    Ray's core ends a driver (_Exit(1), its log saying "Exiting because the Raylet IPC connection failed and the
    local Raylet is dead") when a message to its raylet fails and that raylet seems dead: the process
    RAY_RAYLET_PID names, else this process's parent, taken for dead when it is PID 1, as for a service systemd
    runs. The ray.shutdown() of a rejoin (a head that restarted: its raylet is gone) failed so and ended the broker
    (checker h322 F1). This driver names itself, which lives as long as it does; Ray reads the variable as it is
    imported, so a ray imported earlier keeps what it read then. The variable is removed again: this process's
    children's raylets name themselves."""
    preset = os.environ.get("RAY_RAYLET_PID")
    if "ray" in sys.modules or preset is not None:
        return importlib.import_module("ray"), preset
    os.environ["RAY_RAYLET_PID"] = str(os.getpid())
    try:
        return importlib.import_module("ray"), os.environ["RAY_RAYLET_PID"]
    finally:
        del os.environ["RAY_RAYLET_PID"]


#: Ray's core installs a crash handler for SIGTERM (among others) as it joins, and sets SIGTERM's action back to
#: the default as it leaves, in C, unseen by Python: a broker that rejoined on a thread of its own (only the main
#: thread may set a handler again) then died of a SIGTERM without its drain (checker h348 F4). Without that handler
#: the process's own handlers stay; a crash of Ray's core still ends the process, without Ray's stack trace.
_KEEP_SIGTERM = os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
ray, RAYLET_PID = _import_ray_naming_this_driver()

if TYPE_CHECKING:
    from heirloom_plugins.ray_cluster import RayResources

log = logging.getLogger("heirloom.ray")

#: Seconds between refreshes of where each worker runs (read by ``_ready``).
REFRESH_S = 1.0
#: Seconds an autoscaling pool waits after a change, and the queue must stay low before a scale-down.
SCALE_COOLDOWN_S = 5.0
SCALE_DOWN_AFTER_S = 30.0
#: Seconds a worker removed by a scale-down may take to finish its requests.
RETIRE_GRACE_S = 30.0
#: Seconds a worker may stay unanswered before the pool looks into why (a cluster it cannot
#: reach, a head that restarted, a request no node can hold), and between repeats of what it found.
STUCK_S = 10.0
REPEAT_S = 60.0
REJOIN_EVERY_S = 5.0
#: How long close() waits for the pool's threads to leave their Ray calls (a refresh's takes REFRESH_S).
CLOSE_WAIT_S = 10.0
#: Seconds a TCP connect to the head's address (and its answer to an HTTP/2 greeting) may take.
CONNECT_TIMEOUT_S = 3.0
#: Seconds ray.init may take to join a HOST:PORT address before serve or train ends, saying so: Ray retries
#: an address whose GCS it cannot reach for minutes (it dialled the node's own IP for a 127.0.0.1 address).
JOIN_TIMEOUT_S = 60.0
#: HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (a head's GCS port, a Ray Client
#: server) answers with a SETTINGS frame (type 4) of its own; another program does not.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_PR_SET_PDEATHSIG = 1
_AUTH_HINT = (
    "the cluster refused this process's authentication: a cluster with token authentication needs "
    "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) where heirloom runs (docs/SCALE.md)"
)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the actor process dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a ``HOST:PORT`` or ``ray://HOST:PORT`` address (None for auto and local)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def unreachable(host: str, port: int) -> str | None:
    """Why nothing answers a TCP connect to HOST:PORT within seconds, or None when something does:
    ray.init itself retries an address with nothing behind it for minutes."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"
    return None


def no_grpc(host: str, port: int) -> str | None:
    """Why the process at HOST:PORT is no gRPC server, as a head's GCS port is, or None when it answers
    HTTP/2 (or the cluster uses TLS, whose handshake comes first: not probed)."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as probe:
            probe.sendall(_HTTP2_HELLO)
            head = b""
            while len(head) < 9 and (more := probe.recv(9 - len(head))):
                head += more
    except TimeoutError:
        return f"it answered nothing to an HTTP/2 greeting within {CONNECT_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"it dropped the connection ({exc.strerror or type(exc).__name__})"
    if len(head) < 9 or head[3] != 4:
        return f"it answered an HTTP/2 greeting with {head[:16]!r}, not HTTP/2" if head else "it closed the connection"
    return None


def connect(config: RayResources, *, again: bool = False) -> bool:
    """Join the configured cluster unless this process has already; True if it joined now. ``again`` (a rejoin):
    ``auto`` is looked up first and checked as a HOST:PORT address is, so a head that is gone fails within seconds
    (ray.init dialled the GCS of a head `ray stop` was ending for 60 s)."""
    if ray.is_initialized():
        return False
    where = f"resources.address = {config.address!r}"
    target = host_port(config.address) or (_auto_target() if again and config.address == "auto" else None)
    if target is not None and (why := unreachable(*target)):
        raise heirloom.HeirloomError(
            f"{where}: nothing answers there ({why}); start the cluster's head (`ray start --head`, "
            "docs/SCALE.md) or correct the address"
        )
    if target is not None and (why := no_grpc(*target)):
        raise heirloom.HeirloomError(
            f"{where}: a process answers there, but it is no Ray head ({why}; a head's GCS port speaks gRPC): "
            "correct the address (`ray start --head` prints it; the default port is 6379)"
        )
    try:
        with _signals_kept(), _bounded(where if target is not None else None):
            ray.init(address=config.address, logging_level=logging.WARNING)
    except ray.exceptions.AuthenticationError as exc:
        raise heirloom.HeirloomError(f"{where}: {_AUTH_HINT} ({first_line(exc)})") from None
    except ConnectionError as exc:
        if target is not None:  # something answered the connect, but Ray could not join it
            raise heirloom.HeirloomError(
                f"{where}: a process answers there, but Ray could not join it as a cluster ({exc}); either "
                f"{_AUTH_HINT}, or that is not a head's GCS port"
            ) from None
        raise heirloom.HeirloomError(
            f"{where}: no Ray cluster answers there ({exc}); start one "
            '(`ray start --head`, docs/SCALE.md), or set address = "local" for a cluster of this host alone'
        ) from None
    return True


def _auto_target() -> tuple[str, int] | None:
    """The HOST:PORT ``auto`` stands for now, as ray.init finds it (None: none found; ray.init says so)."""
    try:
        found = ray._private.services.canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - no cluster found (a private API): ray.init's own error says so
        return None
    return host_port(found) if found else None


class _NoThreadWarning(logging.Filter):
    """Ray's "SIGTERM handler is not set because current thread is not the main thread.", at each rejoin (run off
    the broker's main thread so that its loop goes on): heirloom's own handler is the one kept, as wanted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


logging.getLogger("ray._private.worker").addFilter(_NoThreadWarning())


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """Keep this process's SIGTERM and SIGINT handlers across ray.init and ray.shutdown, which
    replace them (with sys.exit, or the default action), so serve still drains on SIGTERM."""
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextlib.contextmanager
def _bounded(where: str | None) -> Iterator[None]:
    """While ray.init joins ``where`` (a HOST:PORT address; None: not watched), from the main thread: end the
    process on SIGTERM or SIGINT (exit 0: nothing was served yet), or with exit 1 after JOIN_TIMEOUT_S, saying
    so. Ray's C++ retries hold the main thread, where Python's handlers run: a SIGTERM waited until they gave
    up (5.5 minutes, in a check). Python's own C handler writes each signal to the wake-up fd at once."""
    if where is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig, handler in signals.items():
        if handler in (signal.SIG_DFL, None):  # a Python handler, so that the signal reaches the wake-up fd
            signal.signal(sig, lambda signum, frame: None)
    read, write = socket.socketpair()
    write.setblocking(False)
    previous = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(read, done, where), name="heirloom-ray-join", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous)
        watcher.join()
        read.close()
        write.close()
        for sig, handler in signals.items():
            if handler in (signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)


def _watch(read: socket.socket, done: threading.Event, where: str) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    read.settimeout(0.2)
    while not done.is_set():
        try:
            caught = [sig for sig in read.recv(64) if sig in (signal.SIGTERM, signal.SIGINT)]
        except TimeoutError:
            caught = []
        if caught:
            log.info("received %s while joining the Ray cluster (%s); stopping", signal.Signals(caught[0]).name, where)
            _leave(0)
        if time.monotonic() > deadline and not done.is_set():
            log.error(
                "%s: Ray has not joined the cluster there after %g s (it retries a GCS it cannot reach; its lines "
                "above say which address it dialled): check that the address is the head's GCS port and that this "
                "host reaches the head's node IP",
                where,
                JOIN_TIMEOUT_S,
            )
            _leave(1)


def _leave(code: int) -> None:
    """End the process from the watcher thread (the main thread is inside ray.init, deaf to Python)."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 200 characters), or its type when it says nothing."""
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def options(config: RayResources) -> dict[str, Any]:
    """What each worker actor or training task reserves on its node."""
    chosen: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus}
    if config.memory_mb:
        chosen["memory"] = config.memory_mb * 2**20
    return chosen


def heirloom_env() -> dict[str, str]:
    """The HEIRLOOM_* settings (home, store, data, plugins) a remote process gets from here."""
    return {key: value for key, value in os.environ.items() if key.startswith("HEIRLOOM_")}


def _in_env(env: dict[str, str], cwd: str, task: Callable[[], Any]) -> Any:
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return task()


#: How a Ray task ends without raising: its worker process or node died under it.
_ENDED = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.LocalRayletDiedError,
)


def run_on_cluster(config: RayResources, task: Callable[[], Any]) -> Any:
    """Run a training ``task`` as one Ray task with the configured resources; its result
    (the fitted state) comes back here."""
    joined = connect(config)
    try:
        remote = ray.remote(_in_env).options(**options(config), max_retries=0)
        return ray.get(remote.remote(heirloom_env(), os.getcwd(), task))
    except _ENDED as exc:  # not fit's own error (that one keeps its traceback): its process is gone
        raise heirloom.HeirloomError(
            f"the Ray task running fit (resources.address = {config.address!r}) ended before it returned: "
            f"{type(exc).__name__}: {first_line(exc).rstrip('.')}; its process was killed (out of memory, `ray stop`, "
            "a lost node); nothing was stored"
        ) from None
    finally:
        if joined:
            ray.shutdown()


class WorkerActor:
    """One ``heirloom worker`` child process, supervised inside a Ray actor."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "heirloom", *argv],
            cwd=cwd if os.path.isdir(cwd) else None,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        context = ray.get_runtime_context()
        self.where = {"node_id": context.get_node_id(), "actor_id": context.get_actor_id()}
        self.stopping = False
        threading.Thread(target=self._exit_with_child, daemon=True).start()

    def _exit_with_child(self) -> None:
        code = self.process.wait()
        if self.stopping or code == 0:  # asked to stop, or drained by its broker: the pool ends this actor itself
            return  # (exiting here made a clean stop look like a crash: Ray logged an "unexpected system error")
        print(f"heirloom worker pid {self.process.pid} exited with {code}; its actor exits too", flush=True)
        os._exit(1)  # the actor dies with its worker: Ray restarts both while max_restarts allows

    def info(self) -> dict[str, Any]:
        return {"pid": self.process.pid, **self.where}

    def stop(self, grace: float) -> None:
        self.stopping = True
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()


class RayWorkerPool(heirloom.WorkerPool):
    """Keeps ``size`` worker actors on the cluster and reports where each one runs."""

    def __init__(self, config: RayResources, argv: list[str]):
        self.config = config
        self.argv = argv
        self._owns_ray = connect(config)
        if config.address == "local" and (short := shortfall(config)):  # a cluster that cannot grow
            ray.shutdown()
            raise heirloom.HeirloomError(f"resources.address = 'local': {short}")
        if (endpoint := this_host_only(argv)) and (others := other_hosts()):
            log.warning(
                "the worker endpoint %s is reachable from this host only, but the Ray cluster has nodes at %s: "
                "workers placed there cannot reach the broker; give --worker-bind an address they reach "
                "(docs/SCALE.md)",
                endpoint,
                ", ".join(others),
            )
        self._actor = self._actor_class()
        # the worker's torch threads match what its actor reserved (heirloom.cpu_share())
        self._env = {**heirloom_env(), "HEIRLOOM_CPU_SHARE": str(max(1, math.ceil(config.num_cpus)))}
        self._actors: list[Any] = []
        self._lock = threading.Lock()
        self._placements: dict[int, dict[str, Any]] = {}
        self._pids: dict[str, int] = {}  # actor id -> its worker's pid, last seen: a new one is a restart
        self._asked: dict[Any, Any] = {}  # actor -> its info() call not answered yet (the refresh thread's own)
        self._changed = 0.0
        self._low_since: float | None = None
        self._missing_since: float | None = None
        self._said_at = -math.inf
        self._trouble: str | None = None  # what _look_into found last, for _ready
        self._rejoined_at = -math.inf
        self._joining: threading.Thread | None = None  # the rejoin's thread
        self._node_gone_since: float | None = None  # when _look_into first found this process's Ray node gone
        self._lost = 0  # workers to start again once a restarted cluster can be joined
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []  # those that call Ray: close() waits for them
        self._retiring: list[Any] = []  # actors draining after a scale-down: close() ends them too
        self.scale(config.workers)
        self._start(self._refresh_loop, name="heirloom-ray-placements")

    def _start(self, target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
        """Run ``target`` on a thread that close() waits for before ``ray.shutdown()``: a Ray call
        after it would start Ray again from that thread (checker 291 F1)."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _actor_class(self) -> Any:
        return ray.remote(WorkerActor).options(
            **options(self.config),
            max_restarts=self.config.max_restarts,
            scheduling_strategy="SPREAD" if self.config.placement == "spread" else "DEFAULT",
        )

    @property
    def size(self) -> int:
        return len(self._actors) + self._lost

    def scale(self, count: int) -> int:
        if self.config.max_workers:
            count = max(self.config.min_workers, min(self.config.max_workers, count))
        elif count > MAX_WORKERS:
            raise ValueError(too_many(count))
        if self._lost:  # rejoining a restarted cluster: it starts this many
            self._lost = count
            return count
        with self._lock:
            while len(self._actors) < count:
                self._actors.append(self._actor.remote(self.argv, os.getcwd(), self._env))
            retired, self._actors = self._actors[count:], self._actors[:count]
            self._retiring += retired
        if retired:
            self._start(self._retire, retired, name="heirloom-ray-retire")
        self._changed = time.monotonic()
        log.info("keeping %d ray worker(s)", count)
        return count

    def observe(self, in_flight: int, ready: int) -> None:
        if self._lost:
            self._rejoin()
        if not self.config.max_workers:
            return
        now = time.monotonic()
        if now - self._changed < SCALE_COOLDOWN_S:
            return
        target = self.config.target_in_flight
        if in_flight > target * self.size and self.size < self.config.max_workers:
            self.scale(self.size + 1)
        elif in_flight < target * (self.size - 1) and self.size > self.config.min_workers:
            self._low_since = self._low_since or now
            if now - self._low_since >= SCALE_DOWN_AFTER_S:
                self._low_since = None
                self.scale(self.size - 1)
        else:
            self._low_since = None

    def _retire(self, actors: list[Any]) -> None:
        """Let the workers drain (the broker stops sending them work), then end their actors for good;
        once closed, close() ends them instead. One thread per scale-down, not per actor: scaling
        3,000 down to 1 ran 3,019 threads and stalled the broker 10 s (checker h348 F2)."""
        with self._lock:
            draining = [actor for actor in actors if actor in self._retiring]
        placed = self._placed(draining)  # one never placed drains nothing: the wait held its CPU 35 s (h430 F1)
        with self._lock:
            stopped = [actor.stop.remote(RETIRE_GRACE_S) for actor in draining if actor in placed]
        with contextlib.suppress(Exception):  # already gone (or ended by close()): nothing to drain
            ray.wait(stopped, num_returns=len(stopped), timeout=RETIRE_GRACE_S + 5)
        with self._lock:
            for actor in draining:
                if actor in self._retiring:
                    self._retiring.remove(actor)
                    ray.kill(actor, no_restart=True)

    @staticmethod
    def _placed(actors: list[Any]) -> set[Any]:
        """Those of ``actors`` that say where they run within REFRESH_S: the others are pending (the cluster has no
        room for them) or gone, and are ended without a drain."""
        with contextlib.suppress(Exception):  # Ray gone: none to drain
            asked = {actor.info.remote(): actor for actor in actors}
            done, _ = ray.wait(list(asked), num_returns=len(asked), timeout=REFRESH_S) if asked else ([], [])
            return {asked[ref] for ref in done}
        return set()

    def placements(self) -> dict[int, dict[str, Any]]:
        return self._placements

    def _refresh_loop(self) -> None:
        while not self._closed.wait(REFRESH_S):
            if self._lost:
                continue  # observe() joins the restarted cluster again
            with self._lock:
                actors = list(self._actors)
            found: dict[int, dict[str, Any]] = {}
            if self._closed.is_set():
                return  # close() ends these actors and then Ray: no call of this thread may follow
            try:
                answered = self._ask(actors)
            except Exception as exc:  # noqa: BLE001 - the refresh goes on whatever Ray raises
                self._say(f"cannot ask the ray workers where they run: {first_line(exc)}")
                continue
            for actor, ref in answered:
                try:
                    info = ray.get(ref, timeout=0)
                except ray.exceptions.ActorDiedError as exc:  # its restarts are used up: Ray gives up on it
                    self._replace(actor, exc)
                    continue
                except Exception:  # noqa: BLE001 - restarting or unreachable: _look_into says why
                    continue
                pid = info.pop("pid")
                if (before := self._pids.get(info["actor_id"])) not in (None, pid):
                    self._restarted(info["actor_id"], before, pid)
                self._pids[info["actor_id"]] = pid
                found[pid] = {**info, "state": "ALIVE"}
            self._placements = found
            missing = len(actors) - len(found)
            if self._closed.is_set():
                return
            try:
                self._look_into(missing)
            except Exception as exc:  # noqa: BLE001 - the refresh goes on whatever Ray raises
                self._say(f"cannot tell why {missing} ray worker(s) are not running: {first_line(exc)}")

    def _ask(self, actors: list[Any]) -> list[tuple[Any, Any]]:
        """Ask every actor where it runs at once, waiting ``REFRESH_S`` in all: the actors that answered (or died),
        with their answer. One asked one by one waited a second for each pending actor, so that with many pending
        ``_ready``'s placements and ``start_failure`` lagged by as many seconds (checker h348 F1). A pending actor's
        question stays asked until it answers: asked anew each second, those questions piled up."""
        asked = {actor: self._asked.get(actor) or actor.info.remote() for actor in actors}
        done, _ = ray.wait(list(asked.values()), num_returns=len(asked), timeout=REFRESH_S) if asked else ([], [])
        answered = set(done)  # asked anew next time: a restart changes its worker's pid
        self._asked = {actor: ref for actor, ref in asked.items() if ref not in answered}
        return [(actor, ref) for actor, ref in asked.items() if ref in answered]

    @staticmethod
    def _restarted(actor_id: str, before: int, pid: int) -> None:
        """Say in the broker's log that Ray restarted an actor: its dying line, ``heirloom worker pid N exited
        with CODE; its actor exits too``, is in Ray's log of that actor (it exits at once; Ray's log monitor
        forwards it to the broker's stderr only at times)."""
        log.warning(
            "ray worker actor %s was restarted: its worker pid %d ended (Ray's log of that actor, logs/worker-*.out "
            "in the cluster's session folder on its node, says with which code), and worker pid %d runs in its place",
            actor_id[:8],
            before,
            pid,
        )

    def _look_into(self, missing: int) -> None:
        """With workers unanswered for ``STUCK_S``, find out why and say it (at most once in
        ``REPEAT_S``), so that a pool without its workers is never silent; rejoin a cluster whose
        head restarted, since this process's actor handles died with it."""
        now = time.monotonic()
        if not missing:
            self._missing_since = self._trouble = None
            return
        self._missing_since = self._missing_since or now
        waited = now - self._missing_since
        if waited < STUCK_S:
            return
        where = f"the Ray cluster at resources.address = {self.config.address!r}"
        why = _head_unreachable()
        gone = not why and self._node_lost()
        self._node_gone_since = (self._node_gone_since or now) if gone else None
        if why:
            self._say(f"{where} does not answer ({why}) for {waited:.0f}s: {missing} worker(s) wait for it")
        elif gone and now - self._node_gone_since < REJOIN_EVERY_S:
            return  # `ray stop` ends this node's raylet seconds before the head's GCS: not taken for a restart yet
        elif gone:
            with self._lock:
                self._lost, self._actors = len(self._actors), []
            log.warning(
                "%s restarted (this process's Ray node is gone, as after `ray stop` and `ray start --head` "
                "without GCS fault tolerance); joining it again and starting %d new worker(s)",
                where,
                self._lost,
            )
        elif now - self._said_at < REPEAT_S:
            return  # said lately: ask the cluster again later
        elif short := shortfall(self.config):
            self._say(f"{missing} ray worker(s) not placed after {waited:.0f}s: {short}")
        else:
            self._say(
                f"{missing} of {self.size} ray worker(s) not running after {waited:.0f}s; {where} has not "
                "placed or started them (see `ray status`, `ray list actors`)"
            )

    def trouble(self) -> str | None:
        return self._trouble

    def _say(self, message: str) -> None:
        self._trouble = message
        if time.monotonic() - self._said_at >= REPEAT_S:
            self._said_at = time.monotonic()
            log.warning("%s", message)

    def _rejoin(self) -> None:
        """Join a cluster whose head restarted, on a thread of its own, at most every ``REJOIN_EVERY_S``: this
        process's node and actors are gone and it can place nothing until it joins again. The broker's loop goes on
        meanwhile (answering ``_health``, draining on SIGTERM): ray.init of ``auto`` held it for 60 s, and a SIGTERM
        then ended the process in Ray's handler, without a drain (checker h348 F4)."""
        if (self._joining and self._joining.is_alive()) or time.monotonic() - self._rejoined_at < REJOIN_EVERY_S:
            return
        self._rejoined_at = time.monotonic()
        self._joining = self._start(self._join_again, name="heirloom-ray-rejoin")

    def _join_again(self) -> None:
        """Leave the old cluster's session and join anew (off the main thread, Ray sets no signal handler: see
        ``_KEEP_SIGTERM``); then start the lost workers anew."""
        if risk := _shutdown_may_end_process():  # said before Ray's core can end the process without a word
            log.error(
                "leaving the old cluster's session (ray.shutdown()) may end this process in Ray's core, without "
                "another line here (its log: 'Exiting because the Raylet IPC connection failed'), since %s; it "
                "exits with status 1 then: a supervisor's Restart=on-failure starts it again (docs/SCALE.md, Ray)",
                risk,
            )
        with contextlib.suppress(Exception):  # the old connection is broken already
            ray.shutdown()
        try:
            self._owns_ray = connect(self.config, again=True) or self._owns_ray
        except heirloom.HeirloomError as exc:  # not back yet: try again on the next check
            self._say(f"{exc}; {self._lost} worker(s) wait for it")
            return
        if self._closed.is_set():
            return  # close() leaves Ray once this thread has ended
        self._actor = self._actor_class()
        with self._lock:
            count, self._lost, self._said_at, self._missing_since = self._lost, 0, -math.inf, None
        self.scale(count)

    def _node_lost(self) -> bool:
        """Whether this process's Ray node is gone (a head restarted without GCS fault tolerance)."""
        node = ray._private.worker.global_worker.node  # None under Ray Client (ray://): no local node
        return node is not None and self.config.address != "local" and not _raylet_alive(node.raylet_socket_name)

    def _replace(self, dead: Any, why: ray.exceptions.ActorDiedError) -> None:
        """Start a new actor in place of one Ray will not restart again, so the pool keeps its size; saying
        why from Ray's own account. Not while the cluster is gone: every handle is dead then, though no restart
        was used (_look_into says so, and rejoins a head that restarted). Nor when Ray says the actor's owner died:
        the owner is this process, so Ray took its node for dead (`ray stop` ends the raylet a moment before the head
        stops answering and before its socket goes), and a false "died for good" ERROR followed `ray stop`."""
        if OWNER_DIED in str(why) or _head_unreachable() or self._node_lost():
            return
        with self._lock:
            if dead not in self._actors:
                return  # removed meanwhile (a scale-down or close)
            self._actors[self._actors.index(dead)] = self._actor.remote(self.argv, os.getcwd(), self._env)
        restarts = _restarts(why.actor_id)
        if restarts is not None and restarts >= self.config.max_restarts >= 0:
            used = f"max_restarts = {self.config.max_restarts} used up"
        else:  # ray.kill, a failed creation, its node's own end: Ray's account below says which
            used = f"Ray will not restart it; {'?' if restarts is None else restarts} of max_restarts = "
            used += f"{self.config.max_restarts} restart(s) used"
        log.error("a ray worker actor died for good (%s: %s); starting a new one", used, ray_said(why))

    def close(self) -> None:
        """Stop every worker, then leave Ray once no thread of this pool is in a Ray call: a call after
        ``ray.shutdown()`` starts Ray again from that thread, which can write ``~/.ray/auth_token`` and
        end the process in Ray's core worker (checker 291 F1)."""
        self._closed.set()
        with self._lock:
            actors, self._actors, self._retiring = self._actors + self._retiring, [], []
        if actors and ray.is_initialized():  # not after a failed rejoin left Ray: a call would start a local Ray
            stops = [actor.stop.remote(2.0) for actor in actors]  # (and write ~/.ray/auth_token, h348 F4)
            with contextlib.suppress(Exception):  # a dead actor has nothing left to stop
                ray.get(stops, timeout=5.0)
            for actor in actors:
                ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + CLOSE_WAIT_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy_threads = [t for t in self._threads if t.is_alive()]
        if busy := [t.name for t in busy_threads]:
            log.warning(
                "ray thread(s) %s still in a Ray call after %.0fs; leaving Ray to this process's exit",
                ", ".join(busy),
                CLOSE_WAIT_S,
            )
            if self._joining in busy_threads:  # Ray's exit hook (ray.shutdown) would wait for the join's lock for
                atexit.unregister(ray._private.worker.shutdown)  # minutes: the process exits, its cluster sees it go
        elif self._owns_ray and ray.is_initialized():
            ray.shutdown()


def this_host_only(argv: list[str]) -> str | None:
    """The worker endpoint ``argv`` connects to, when no other host reaches it: ``ipc://``, or ``tcp://`` on a
    loopback address (``$(hostname -i)`` gives 127.0.1.1 or 127.0.0.1 on many hosts, checker 291 F5)."""
    endpoint = argv[argv.index("--connect") + 1] if "--connect" in argv[:-1] else ""
    host = endpoint.removeprefix("tcp://").rpartition(":")[0].strip("[]")  # a host name other than localhost: unknown
    local = endpoint.startswith("ipc://") or (endpoint.startswith("tcp://") and loopback(host))
    return endpoint if local else None


def other_hosts() -> list[str]:
    """The addresses of the cluster's live nodes but this process's own node's (none under Ray Client)."""
    node = ray._private.worker.global_worker.node
    if node is None:
        return []
    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")} - {node.node_ip_address})


def _head_unreachable() -> str | None:
    """Why the head's GCS, as this process joined it, does not answer a TCP connect (None: it does, or
    there is no local node to ask, under Ray Client)."""
    node = ray._private.worker.global_worker.node
    gcs = host_port(node.gcs_address) if node is not None else None
    return unreachable(*gcs) if gcs is not None else None


def _restarts(actor_id: str | None) -> int | None:
    """How often Ray restarted the actor, as its GCS counts (None: not known)."""
    try:
        return int(ray._private.state.actors(actor_id)["NumRestarts"]) if actor_id else None
    except Exception:  # noqa: BLE001 - a private API (and none under Ray Client): the count is only shown
        return None


#: Ray's words for an actor whose owner died (ActorDiedErrorContext's message; the exception keeps only the text).
OWNER_DIED = "because its owner has died"


def ray_said(error: ray.exceptions.RayActorError) -> str:
    """Ray's account of an actor's death on one line: its message without the indented fields (class name,
    ids, pid) and without the generic first line when a reason follows it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith("\t")]
    if len(lines) > 1 and lines[0] == ray.exceptions.ActorDiedError.BASE_ERROR_MSG:
        lines = lines[1:]
    return " ".join(lines)


def _shutdown_may_end_process() -> str | None:
    """Why Ray's core would take this driver's raylet for dead and end the process (see RAYLET_PID) when a
    message to it fails; None when it would not (this process is named, or a live one)."""
    if RAYLET_PID is None:
        return "this process's parent is PID 1, which Ray takes for a dead raylet" if os.getppid() == 1 else None
    if RAYLET_PID == str(os.getpid()):
        return None
    try:
        os.kill(int(RAYLET_PID), 0)
    except ProcessLookupError:
        return f"RAY_RAYLET_PID names pid {RAYLET_PID}, which is gone"
    except (OSError, ValueError):  # another user's (alive), or no pid: Ray's check is its own
        return None
    return None


def _raylet_alive(path: str) -> bool:
    """Whether this process's own raylet still listens (a cheap local check: Ray's own calls to a
    head that restarted abort the process with WrongClusterID)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def shortfall(config: RayResources) -> str | None:
    """What of ``num_cpus``/``num_gpus``/``memory_mb`` no live node of the cluster has (its workers
    would wait for ever unless nodes join), with what the nodes offer; None when one node fits."""
    wanted = {"CPU": ("num_cpus", config.num_cpus, 1), "GPU": ("num_gpus", config.num_gpus, 1)}
    wanted["memory"] = ("memory_mb", config.memory_mb, 2**20)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(res.get(kind, 0) >= amount * unit for kind, (_, amount, unit) in wanted.items()) for res in nodes):
        return None
    over = [
        f"resources.{key} = {amount:g}"
        for kind, (key, amount, unit) in wanted.items()
        if amount and not any(res.get(kind, 0) >= amount * unit for res in nodes)
    ]
    offers = "; ".join(
        f"CPU {res.get('CPU', 0):g}, GPU {res.get('GPU', 0):g}, memory_mb {res.get('memory', 0) / 2**20:.0f}"
        for res in nodes
    )
    what = ", ".join(over) or "num_cpus, num_gpus and memory_mb together"
    return f"{what} is more than any node of the cluster has (its nodes: {offers or 'none'})"
