"""``heirloom gateway PROFILE|--connect ADDR``: HTTP in front of a daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click

import heirloom
from heirloom.options import existing_file, listen_options
from heirloom.reports import EXTRA_HINT

#: How uvicorn runs the gateway (uvloop and httptools, from the 'ui' extra's uvicorn[standard],
#: by uvicorn's "auto" choice). bench/gateway.py runs its FastAPI baseline with the same.
UVICORN_SETTINGS = {"log_level": "warning", "access_log": False}


@contextlib.contextmanager
def served(profile: str, start_timeout: float) -> Iterator[str]:
    """``heirloom serve PROFILE`` as a child on a private ipc socket; SIGTERM on the way out."""
    folder = tempfile.mkdtemp(prefix="heirloom-gateway-")
    address = f"ipc://{folder}/daemon.sock"
    child = subprocess.Popen([sys.executable, "-m", "heirloom", "serve", profile, "--bind", address])
    try:
        with heirloom.Client(address, timeout=2.0, retries=0) as client:
            deadline = time.monotonic() + start_timeout
            while True:
                if child.poll() is not None:
                    raise click.ClickException(f"heirloom serve {profile} exited with {child.returncode}")
                try:
                    client.call("_health")
                    break
                except heirloom.RemoteError:
                    if time.monotonic() > deadline:
                        raise click.ClickException(
                            f"heirloom serve {profile} did not answer in {start_timeout:g} s"
                        ) from None
        yield address
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait()
        with contextlib.suppress(OSError):
            os.remove(f"{folder}/daemon.sock")
            os.rmdir(folder)


@click.command("gateway")
@click.argument("profile", required=False)
@click.option("--connect", metavar="ADDR", help="A running daemon's address (tcp://, ipc://) instead of PROFILE.")
@listen_options(default_port=8000)
@click.option(
    "--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001), help="Longest wait per request (s)."
)
@existing_file("--tokens", 'TOML [tokens] "TOKEN" = "client.key_secret": bearer tokens mapped to Curve client keys.')
@existing_file("--curve-server-key", "The daemon's public key (server.key), with --tokens when the daemon uses Curve.")
def gateway_command(
    profile: str | None,
    connect: str | None,
    host: str,
    port: int,
    timeout: float,
    tokens: Path | None,
    curve_server_key: Path | None,
) -> None:
    """Serve a daemon over HTTP until Ctrl-C or SIGTERM.

    \b
    /v2/...              Open Inference Protocol v2 (KServe V2, Triton clients) for model routes
    /v1/routes/ROUTE     POST any route's JSON body, get its JSON reply
    /openapi.json, /docs the OpenAPI 3.1 document and a page to try each operation
    /console/API         the web console plugins supply for an api (heirloom_register_consoles)

    With PROFILE the gateway starts `heirloom serve PROFILE` itself on a private socket
    and stops it on exit; with --connect it uses a running daemon. Errors map to HTTP
    statuses (docs/HTTP.md); Heirloom-Deadline-Ms sets a request's budget. Needs the 'ui'
    extra (starlette, uvicorn).
    """
    if (profile is None) == (connect is None):
        raise click.UsageError("give PROFILE or --connect ADDR (one of them)")
    if curve_server_key is not None and tokens is None:
        raise click.UsageError("--curve-server-key needs --tokens (the client keys to use)")
    try:
        import uvicorn

        from heirloom_plugins.gateway.app import Gateway, create_app
        from heirloom_plugins.gateway.auth import read_tokens
    except ImportError as exc:
        raise click.ClickException(f"heirloom gateway needs the 'ui' extra ({exc}): {EXTRA_HINT}") from exc
    try:
        token_keys = read_tokens(tokens) if tokens is not None else None
        consoles = heirloom.Kernel().consoles()
    except heirloom.HeirloomError as exc:
        raise click.ClickException(str(exc)) from exc
    with contextlib.ExitStack() as stack:
        address = connect or stack.enter_context(served(str(profile), start_timeout=120))
        gateway = Gateway(
            address, timeout=timeout, curve_server_key=curve_server_key, tokens=token_keys, consoles=consoles
        )
        click.echo(f"heirloom gateway: http://{host}:{port}/ -> {address}", err=True)
        # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises; exit 0 as serve does
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, lambda signum, frame: sys.exit(0))
        uvicorn.run(create_app(gateway), host=host, port=port, **UVICORN_SETTINGS)
