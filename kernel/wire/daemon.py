"""Running a profile as a daemon: one process, or a broker with worker processes.

Signals: SIGTERM/SIGINT start a drain (``_ready`` turns false, new requests get
UNAVAILABLE, in-flight work finishes within the grace period); then the system stops,
flushing durable writes, and the process exits 0.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from heirloom.core.components import Resources
from heirloom.core.schema import ResolvedProfile
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.files import flush_std_streams
from heirloom.wire import manager_calls
from heirloom.wire.auth import CurveClient, CurveKeys, CurveServer
from heirloom.wire.builtin_routes import exported_snapshot
from heirloom.wire.exporter import Exporter, MetricsAddress, url_host
from heirloom.wire.fd_watch import watched_descriptors
from heirloom.wire.metrics import Snapshot, broker_snapshot
from heirloom.wire.server import HANDLER_THREADS, START_THREAD, Server
from heirloom.wire.transport import Unworkable, loopback

if TYPE_CHECKING:
    from heirloom.wire.broker import Broker

log = logging.getLogger("heirloom.wire.daemon")


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGTERM and SIGINT (the drain trigger)."""

    said: set[int] = set()

    def handler(signum: int, frame: object) -> None:
        if signum not in said:  # once: logging inside a flood of signals recursed until the process died
            said.add(signum)
            log.info("received %s", signal.Signals(signum).name)
        callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def on_hang_up(target: Server | Broker) -> None:
    """SIGHUP asks ``target`` for what ``_reload`` does (Curve keys read again, the store checked
    for moved aliases now), on its I/O thread: the signal's default killed the daemon undrained. The
    handler only sets a flag (logging in it, a flood of SIGHUPs recursed until the process died)."""

    def handler(signum: int, frame: object) -> None:
        target.reload_asked = True

    signal.signal(signal.SIGHUP, handler)


def run_server(
    system: System,
    settings: ServerSettings,
    *,
    bind: list[str] | None = None,
    connect: str | None = None,
    curve: CurveServer | CurveClient | CurveKeys | None = None,
    metrics: MetricsAddress | None = None,
) -> int:
    """Serve ``system`` until drained; returns the process exit code. ``curve``: the client
    socket's CurveServer, or (``connect``) the worker's keys for its broker."""
    limits = None if connect is not None else manager_calls.client_limits(configured_resources(system.profile))
    server = Server(system, settings, bind=bind, connect=connect, curve=curve, limits=limits)
    if connect is None and curve is None:
        warn_open(bind or settings.bind)
    exporter = _exporter(metrics, lambda: exported_snapshot(server))
    if connect is not None:
        log.info("worker connecting to %s", connect)
    else:
        log.info("listening on %s", ", ".join(bind or settings.bind))
    on_stop_signals(server.request_drain)
    on_hang_up(server)
    server.start_system()
    try:
        with watched_descriptors():
            server.run()
    finally:
        stopped_cleanly = stop_when_started(server, system)
        if server.start_error is not None and server.link is not None:  # a start that failed as a drain began:
            server.link.failed(server.start_error)  # its exit 1 is that failure, which the broker counts as one
        if isinstance(curve, CurveServer):
            curve.stop()
        if exporter is not None:
            exporter.close()
        server.close()
    if server.start_error is not None:
        return 1
    log.info("stopped")
    return 0 if stopped_cleanly else 1


def warn_open(binds: list[str]) -> None:
    """PROTOCOL.md's advice where the mistake shows, for a client socket without Curve, once it is bound:
    said before the bind, a bind that failed left a daemon "listening" that never listened (h294 F4)."""
    for address in binds:
        if address.startswith("tcp://") and not loopback(address[6:].rpartition(":")[0].strip("[]")):
            log.warning(
                "listening on %s without Curve: whoever reaches it can call every route, admin ones (_reload) too; "
                "serve with --curve-secret and --curve-clients, or bind 127.0.0.1 (docs/PROTOCOL.md)",
                address,
            )


def stop_when_started(server: Server, system: System) -> bool:
    """Stop ``system`` once its start (on ``start_system``'s thread) is over: a stop signal
    can end the I/O loop mid-start, and stopping then would race components still starting
    (those started after the stop would never stop, nor flush what they write). A start
    that outlasts the grace period too (a long model load) is left running, unstopped:
    nothing was served yet, and an operator's stop must not wait for it (False)."""
    if not server.wait_started(0):
        grace = server.settings.grace
        log.info("waiting up to %gs (the grace period) for the system's start to finish before stopping it", grace)
        if not server.wait_started(grace):
            log.error("the system was still starting after the grace period (%gs): exiting without stopping it", grace)
            return False
    try:
        system.stop()
    except Exception as exc:  # noqa: BLE001 - report every teardown error, then exit non-zero
        log.error("%s", exc)
        return False
    return True


def serve(
    kernel,
    profile: ResolvedProfile,
    settings: ServerSettings,
    *,
    profile_ref: str,
    overrides: tuple[str, ...],
    curve: CurveServer | None,
    log_format: str,
    worker_bind: str | None = None,
    metrics: MetricsAddress | None = None,
) -> int:
    """``heirloom serve``: in-process for one worker, otherwise a broker with workers;
    ``metrics``: also serve Prometheus ``/metrics`` there."""
    if in_one_process(profile, settings):
        if worker_bind is not None:  # no broker would listen there: remote workers would wait forever
            raise Unworkable(
                f"--worker-bind {worker_bind} needs a broker: serve with --workers N (N >= 2; remote workers "
                "join the N local ones; N = 0: only remote workers), or a resource manager that places workers "
                '([resources] use = "ray")'
            )
        return run_server(kernel.system(profile, serve_models=True), settings, curve=curve, metrics=metrics)
    from heirloom.wire.broker import Broker

    resources = configured_resources(profile)
    if settings.workers == 0 and worker_bind is None and not _places_workers(resources):
        raise Unworkable(
            "--workers 0 is a broker whose workers all connect from elsewhere: give it --worker-bind ADDR "
            "for them to connect to (`heirloom worker PROFILE --connect ADDR`)"
        )
    broker = Broker(
        settings,
        profile_ref=profile_ref,
        overrides=overrides,
        curve=curve,
        log_format=log_format,
        worker_bind=worker_bind,
        max_in_flight=manager_calls.in_flight_limit(resources),
        limits=manager_calls.client_limits(resources),
        place_workers=manager_calls.placer(resources) if _places_workers(resources) else None,
        apis=[spec.name for spec in profile.components if spec.kind == "api"],
    )
    if curve is None:
        warn_open(settings.bind)
    on_stop_signals(broker.request_drain)
    on_hang_up(broker)
    exporter = _exporter(metrics, lambda: broker_snapshot(broker))
    try:
        with watched_descriptors():
            return broker.run()
    finally:
        if exporter is not None:
            exporter.close()


def _exporter(metrics: MetricsAddress | None, snapshot: Callable[[], Snapshot]) -> Exporter | None:
    """Prometheus ``/metrics`` on ``metrics``, its address logged: port 0 takes a free one, which
    nobody could find (an env file's METRICS_PORT=0 meant to turn metrics off served them unannounced)."""
    if metrics is None:
        return None
    exporter = Exporter(metrics, snapshot)
    log.info("metrics at http://%s:%d/metrics", url_host(metrics.host), exporter.port)  # [::1] for IPv6
    return exporter


def in_one_process(profile: ResolvedProfile, settings: ServerSettings) -> bool:
    """Whether the daemon is one process: one worker, and a resource manager that does not
    place workers itself (Ray does)."""
    return settings.workers == 1 and not _places_workers(configured_resources(profile))


def _places_workers(resources: Resources) -> bool:
    """Whether the resource manager starts worker processes itself (Ray's does)."""
    return type(resources).place_workers is not Resources.place_workers


def configured_resources(profile: ResolvedProfile) -> Resources:
    """The profile's resource manager as configured (not started): what the process that
    owns the client socket asks for daemon-wide limits."""
    return profile.instantiate(next(spec for spec in profile.components if spec.kind == "resources"))


def exit_process(code: int) -> NoReturn:
    """End a daemon or worker process with ``code``. A handler still running past the grace
    period (its request was answered UNAVAILABLE, the system has stopped), or a start left
    running, would keep the interpreter waiting for its thread, deaf to further signals, or
    crash it at exit (torch's threads): then exit at once.

    The system has stopped (its writes flushed) by now, so the interpreter's own teardown is
    skipped too: its last garbage collections and the unloading of torch's operators cost a
    worker about 0.5 s of CPU after its log said ``stopped``; with a dozen daemons stopping at
    once on two cores that outlasted the broker's ``STOP_SECONDS``, which SIGKILLed workers that
    had stopped cleanly and exited 1. atexit handlers (logging's flush, temporary folders) still run."""
    stuck = [t for t in threading.enumerate() if t.name.startswith((HANDLER_THREADS, START_THREAD))]
    for thread in stuck:
        thread.join(0.2 / len(stuck))  # idle handler threads are on their way out
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        handlers = sum(thread.name.startswith(HANDLER_THREADS) for thread in stuck)
        others = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
        others = [name for name in others if not name.startswith((HANDLER_THREADS, START_THREAD))]  # (h433 F8)
        also = f", nor {len(others)} other thread(s) still running: {', '.join(others)}" if others else ""
        if handlers:  # a start left running was said by stop_when_started
            log.warning(
                "%d request handler(s) still running after the grace period; exiting without them%s", handlers, also
            )
        logging.shutdown()
        os._exit(code)
    threading.Thread(target=_exit_unless_ended, args=(code,), name="heirloom-exit-watch", daemon=True).start()
    try:  # what the interpreter's exit does before its teardown: executors' and other non-daemon threads end
        threading._shutdown()  # (a plugin's idle executor too: its atexit hook wakes it), then atexit handlers
        atexit._run_exitfuncs()
    finally:
        flush_std_streams()
        os._exit(code)


#: Seconds the exit waits for non-daemon threads to end once the system has stopped.
EXIT_WAIT = 5.0


def _exit_unless_ended(code: int) -> None:
    """Exit with ``code`` if the process has not ended EXIT_WAIT seconds after it began its exit, naming the
    non-daemon threads left: a plugin's thread that never ends kept the process alive after "stopped", deaf to
    SIGTERM, until its supervisor killed it, with nothing said why (checker h364 F2)."""
    time.sleep(EXIT_WAIT)
    left = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    said = "start a plugin's threads as daemon threads, or end them in its stop()"
    log.warning(
        "exiting without %d thread(s) still running %.0f s after the stop (%s): %s",
        len(left),
        EXIT_WAIT,
        said,
        ", ".join(left),
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(code)
