"""``heirloom gateway PROFILE|--connect ADDR``: HTTP in front of a daemon."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import attrs
import click
import zmq

import heirloom
from heirloom.options import (
    ADDRESS,
    PROFILE,
    SECONDS,
    a_path,
    answered_hosts,
    bound_socket,
    configure_logs,
    existing_file,
    listen_options,
    log_options,
    loopback,
    set_option,
    url_host,
)
from heirloom.reports import extra_hint

log = logging.getLogger("heirloom.gateway")

#: How uvicorn runs the gateway (uvloop and httptools, from the 'ui' extra's uvicorn[standard],
#: by uvicorn's "auto" choice; the gateway's httptools protocol adds its pipelining bound).
#: bench/gateway.py runs its FastAPI baseline with the same.
#: No WebSocket: the gateway serves none, so an Upgrade: websocket request is plain HTTP/1.1 too.
#: ``log_config`` None: uvicorn's lines go through heirloom's logging, ``--log-format json`` too (h397 F1).
UVICORN_SETTINGS = {"log_level": "warning", "access_log": False, "ws": "none", "log_config": None}


#: Where the gateway reaches the daemon it runs in its own process.
IN_PROCESS_ADDRESS = "inproc://heirloom-daemon"


@attrs.frozen
class Daemon:
    """Where the gateway reaches PROFILE's daemon, and the daemon itself: on the gateway's event
    loop (``on_loop``), or a ``heirloom serve`` ``child`` (None of either with --connect)."""

    address: str
    on_loop: heirloom.LoopDaemon | None = None
    child: subprocess.Popen | None = None


@contextlib.contextmanager
def daemon_for(
    kernel: heirloom.Kernel,
    profile: str,
    context: zmq.Context,
    *,
    separate: bool,
    overrides: tuple[str, ...] = (),
    logs: tuple[str, str] = ("text", "INFO"),
) -> Iterator[Daemon]:
    """PROFILE's daemon, started for the gateway and stopped when it stops.

    By default a one-process daemon is served from the gateway's own event loop, reached
    over ``inproc://`` in ``context``: one process to run, no thread or process for a
    request to cross (docs/HTTP.md). ``separate``, or a daemon of worker processes: a
    ``heirloom serve`` child, with an interpreter lock of its own, logging as ``logs`` says
    (the gateway's ``--log-format`` and ``--log-level``).
    """
    resolved = kernel.resolve(profile, overrides)
    settings = resolved.settings["server"]
    if separate or not heirloom.in_one_process(resolved, settings):
        with served_by_child(profile, overrides, start_timeout=120, logs=logs) as (address, child):
            yield Daemon(address, child=child)
        return
    system = kernel.system(resolved, serve_models=True)
    with heirloom.served_on_loop(system, settings, IN_PROCESS_ADDRESS, context) as on_loop:
        yield Daemon(IN_PROCESS_ADDRESS, on_loop)


@contextlib.contextmanager
def served_by_child(
    profile: str, overrides: tuple[str, ...], start_timeout: float, logs: tuple[str, str] = ("text", "INFO")
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``heirloom serve PROFILE`` as a child on a private ipc socket, yielded (its address and
    process) once it serves its routes (as the in-process daemon is: started and mounted, so the
    gateway's first requests are not refused as too early); SIGTERM on the way out. ``logs``: its
    ``--log-format`` and ``--log-level`` (a child given neither wrote text lines at INFO under a
    gateway's ``--log-format json --log-level warning``)."""
    folder = tempfile.mkdtemp(prefix="heirloom-gateway-")
    address = f"ipc://{folder}/daemon.sock"
    settings = [f"--set={override}" for override in overrides]
    log_format, log_level = logs
    command = [sys.executable, "-m", "heirloom", "serve", profile, *settings, "--bind", address]
    command += ["--log-format", log_format, "--log-level", log_level]
    child = subprocess.Popen(command, preexec_fn=stopped_with_parent())
    try:
        with heirloom.Client(address, timeout=2.0, retries=0) as client:
            deadline = time.monotonic() + start_timeout
            while True:
                if child.poll() is not None:
                    raise click.ClickException(f"heirloom serve {profile} exited with {exit_said(child.returncode)}")
                with contextlib.suppress(heirloom.RemoteError):
                    routes = client.call("_routes")["routes"]  # the built-in ones until the start is over
                    if any(not route["name"].startswith("_") for route in routes):
                        break
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"heirloom serve {profile} did not serve its routes in {start_timeout:g} s"
                    )
                time.sleep(0.05)
        yield address, child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait()
        with contextlib.suppress(FileNotFoundError):  # a socket the daemon never bound
            os.remove(f"{folder}/daemon.sock")
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def exit_said(code: int) -> str:
    """A child's exit status in words: ``3``, or ``-9 (killed by SIGKILL)``."""
    if code >= 0:
        return str(code)
    try:
        return f"{code} (killed by {signal.Signals(-code).name})"
    except ValueError:
        return str(code)


#: prctl(2)'s option that has the kernel send a process a signal when its parent dies.
PR_SET_PDEATHSIG = 1


def stopped_with_parent() -> Callable[[], None] | None:
    """For ``Popen(preexec_fn=...)`` on Linux: the child gets SIGTERM (drains and stops, its
    workers with it) when the gateway dies, even of SIGKILL, which runs none of the gateway's
    own clean-up; a child of a gateway already gone ends at once. None elsewhere (no prctl).

    The signal follows the thread that started the child: the gateway's main thread, which
    lives as long as the gateway. libc is loaded here, before the fork: the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the gateway died before prctl took effect
            os._exit(1)

    return in_child


@click.command("gateway")
@click.argument("profile", type=PROFILE, required=False)
@click.option(
    "--connect", type=ADDRESS, metavar="ADDR", help="A running daemon's address (tcp://, ipc://) instead of PROFILE."
)
@listen_options(default_port=8000)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=SECONDS,
    help="Longest wait per request (s), for its body to arrive (408) and for its reply (504: sent when the event "
    "loop gets to it, later under load, docs/HTTP.md); on SIGTERM, also the longest wait for the requests in progress.",
)
@existing_file(
    "--tokens",
    'TOML [tokens] "TOKEN" = "client.key_secret": bearer tokens mapped to Curve client keys; read again on SIGHUP.',
)
@click.option(
    "--curve-server",
    "--curve-server-key",
    "curve_server_key",
    type=a_path(exists=True, dir_okay=False),
    help="With --connect and --tokens: the public key (server.key) of a running daemon that uses Curve (as call and "
    "ui take it). A daemon the gateway runs from PROFILE has no Curve.",
)
@click.option(
    "--separate-daemon",
    is_flag=True,
    help="With PROFILE: run its daemon as a `heirloom serve` child process, not on the gateway's event loop.",
)
@set_option
@log_options
def gateway_command(
    profile: str | None,
    overrides: tuple[str, ...],
    connect: str | None,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    timeout: float,
    tokens: Path | None,
    curve_server_key: Path | None,
    separate_daemon: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Serve a daemon over HTTP until Ctrl-C or SIGTERM.

    \b
    /v2/...              Open Inference Protocol v2 (KServe V2, Triton clients) for model routes
    /v1/routes/ROUTE     POST any route's JSON body, get its JSON reply
    /openapi.json, /docs the OpenAPI 3.1 document and a page to try each operation
    /console/API         the web console plugins supply for an api (heirloom_register_consoles)

    With PROFILE the gateway runs PROFILE's daemon itself, and drains and stops it on exit
    (on Linux a child daemon also when the gateway is killed): in its own process, served
    from the gateway's event loop over inproc:// (one process to run, the lowest latency),
    or with --separate-daemon, [server] workers > 1 or a placing resource manager, as a
    `heirloom serve` child (more requests per second under heavy load: the daemon has its
    own interpreter lock); a child daemon that exits stops the gateway with exit 1. SIGHUP
    reloads the daemon as for `heirloom serve` (passed on to a child) and reads --tokens
    again. With --connect it uses a running daemon. Errors map to HTTP
    statuses (docs/HTTP.md); Heirloom-Deadline-Ms sets a request's budget. Needs the 'ui'
    extra (starlette, uvicorn, orjson).
    """
    configure_logs(log_level, log_format)  # first: under --log-format json every error below is a JSON line too
    if (profile is None) == (connect is None):
        raise click.UsageError("give PROFILE or --connect ADDR (one of them)")
    if separate_daemon and connect is not None:
        raise click.UsageError("--separate-daemon goes with PROFILE, not --connect")
    if overrides and connect is not None:
        raise click.UsageError("--set changes PROFILE's settings: it goes with PROFILE, not --connect")
    if curve_server_key is not None and connect is None:  # ignored in-process, every request 401 with a child
        raise click.UsageError(
            "--curve-server goes with --connect (a running daemon that uses Curve): the daemon the gateway runs "
            "from PROFILE has no Curve"
        )
    if curve_server_key is not None and tokens is None:
        raise click.UsageError("--curve-server needs --tokens (the client keys to use)")
    try:
        import uvicorn

        from heirloom_plugins.gateway.app import Gateway, create_app
        from heirloom_plugins.gateway.auth import read_tokens
        from heirloom_plugins.gateway.lifecycle import GatewayServer, HangUps, reread_tokens
        from heirloom_plugins.gateway.pipelining import OneQueuedRequest, Refusals
    except ImportError as exc:
        raise click.ClickException(f"heirloom gateway needs the 'ui' extra ({exc}): {extra_hint()}") from exc
    listening = bound_socket(host, port)  # before the daemon loads its models; uvicorn takes it over
    # SIGTERM/SIGINT unwind the stack below (drain and stop the daemon), also while it starts;
    # uvicorn stops gracefully on them, then re-raises: exit 0 as serve does. A signal that
    # lands while a plugin imports is taken for the plugin's own SystemExit (the kernel
    # reports that plugin and goes on), so the flag is checked once the daemon is up too.
    stopping = threading.Event()
    server: GatewayServer | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        # once: a second signal then raised SystemExit again in an atexit hook (a traceback on stderr, under
        # --log-format json too), or, after the interpreter reset its handlers, killed it (exit 143 or 130: h358
        # F1); ignored ones stay ignored through that teardown. uvicorn's own handlers take signals while it runs.
        # Once uvicorn is about to run, it is told to stop instead: a SystemExit raised as the run entered asyncio
        # left its coroutine never awaited, a RuntimeWarning on stderr (checker v11 F2)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, signal.SIG_IGN)
        stopping.set()
        if server is None:
            sys.exit(0)
        server.handle_exit(signum, frame)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stop)
    hang_ups = HangUps()  # SIGHUP reloads (below), once the gateway serves; it never stops it
    with contextlib.ExitStack() as stack:
        context = zmq.Context()
        stack.callback(context.destroy, linger=0)
        try:
            token_keys = read_tokens(tokens, curve_server_key) if tokens is not None else None
            kernel = heirloom.Kernel()
            consoles = kernel.consoles()
            if connect is not None:
                daemon = Daemon(connect)
            else:
                daemon = stack.enter_context(
                    daemon_for(
                        kernel,
                        profile,
                        context,
                        separate=separate_daemon,
                        overrides=overrides,
                        logs=(log_format, log_level),
                    )
                )
        except heirloom.HeirloomError as exc:
            if stopping.is_set():  # a plugin "failed" on the signal's SystemExit
                sys.exit(0)
            failed = click.ClickException(str(exc))
            if isinstance(exc, heirloom.ProfileError | heirloom.PluginError):  # a profile that cannot work: 2, as serve
                failed.exit_code = 2
            raise failed from exc
        if stopping.is_set():
            sys.exit(0)
        gateway = Gateway(
            daemon.address,
            timeout=timeout,
            curve_server_key=curve_server_key,
            tokens=token_keys,
            consoles=consoles,
            context=context,
        )
        port = listening.getsockname()[1]  # the one the system chose for --port 0
        log.info("serving HTTP at http://%s:%d/ -> %s", url_host(host), port, daemon.address)
        if token_keys is None and not loopback(host):  # HTTP.md's advice, said where the mistake shows
            log.warning(
                "listening on %s without --tokens: whoever reaches port %d can call every route of the daemon, "
                "admin ones (_reload) too; give --tokens, or listen on 127.0.0.1 behind a proxy (docs/HTTP.md)",
                host or "every interface",
                port,
            )
        # on a stop signal, a request (or a body that never ends) gets --timeout more at most
        settings = {**UVICORN_SETTINGS, "timeout_graceful_shutdown": timeout, "http": OneQueuedRequest}
        app = create_app(gateway, daemon.on_loop, answered_hosts(host, allowed_hosts))

        def reload() -> None:
            """SIGHUP: what ``heirloom serve`` does on it (``_reload``), and the tokens file read again."""
            if daemon.on_loop is not None:
                daemon.on_loop.server.reload_asked = True  # the daemon's own SIGHUP flag: _reload on its next turn
            elif daemon.child is not None:
                log.info("received SIGHUP: passed on to heirloom serve %s (pid %d)", profile, daemon.child.pid)
                daemon.child.send_signal(signal.SIGHUP)
            elif tokens is None:
                log.info("received SIGHUP: nothing to reload (the daemon at %s reloads on its own SIGHUP)", connect)
            if tokens is not None:
                reread_tokens(gateway, tokens, curve_server_key)

        server = GatewayServer(
            uvicorn.Config(app, **settings), hang_ups=hang_ups, reload=reload, child=daemon.child, profile=profile
        )
        stack.callback(Refusals.flush)  # also when a stop signal unwinds the run
        server.run(sockets=[listening])
        if stopping.is_set():  # the stack unwinds: the daemon drains
            sys.exit(0)
        if not server.started or server.exited is not None:  # the child daemon's exit was logged as it happened
            sys.exit(1)
