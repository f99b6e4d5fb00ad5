"""``heirloom serve``, ``worker``, ``call`` and ``keys``: the daemon and its clients."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import attrs
import click

from heirloom import logs
from heirloom.auth import CurveClient, CurveServer, new_keypair
from heirloom.cli import fail, get_kernel, resolve_or_exit, set_option
from heirloom.client import DEFAULT_ADDRESS, Client, RemoteError
from heirloom.errors import HeirloomError
from heirloom.protocol import Buffer

log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as JSON objects.",
)
log_level_option = click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)


@click.command("serve")
@click.argument("profile")
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="ADDR",
    help="Endpoint to listen on, repeatable (tcp://HOST:PORT, ipc:///path). Default: [server] bind, "
    "else tcp://127.0.0.1:5555.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes behind a broker (default 1: in-process).")
@click.option(
    "--grace", type=click.FloatRange(min=0, min_open=True), help="Seconds to finish in-flight work on SIGTERM."
)
@click.option(
    "--worker-bind",
    metavar="ADDR",
    help="With --workers: where workers connect (default: an ipc:// socket in a private temp folder). "
    "Bind a tcp:// address to accept `heirloom worker --connect` from other hosts.",
)
@click.option(
    "--curve-secret",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="This server's .key_secret file: serve over CurveZMQ.",
)
@click.option(
    "--curve-clients",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of authorised clients' public .key files.",
)
@click.option(
    "--curve-admins",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of public .key files allowed to call admin routes (_reload).",
)
@set_option
@log_format_option
@log_level_option
def serve_command(
    profile: str,
    binds: tuple[str, ...],
    workers: int | None,
    grace: float | None,
    worker_bind: str | None,
    curve_secret: Path | None,
    curve_clients: Path | None,
    curve_admins: Path | None,
    overrides: tuple[str, ...],
    log_format: str,
    log_level: str,
) -> None:
    """Run PROFILE as a daemon answering requests over ZeroMQ until SIGTERM/SIGINT.

    On a stop signal it drains: _ready turns false, new requests get UNAVAILABLE, requests
    in flight finish within the grace period, components stop (flushing what they
    write), and the process exits 0. The wire format is in docs/PROTOCOL.md.
    """
    logs.configure(log_level, log_format)
    resolved = resolve_or_exit(profile, overrides)
    settings = resolved.settings["server"]
    changes: dict[str, Any] = {}
    if binds:
        changes["bind"] = list(binds)
    if workers is not None:
        changes["workers"] = workers
    if grace is not None:
        changes["grace"] = grace
    settings = attrs.evolve(settings, **changes)
    if (curve_secret is None) != (curve_clients is None):
        fail("error: --curve-secret and --curve-clients go together", 2)
    try:
        curve = CurveServer(curve_secret, curve_clients, curve_admins) if curve_secret and curve_clients else None
        from heirloom.daemon import serve

        code = serve(
            get_kernel(),
            resolved,
            settings,
            profile_ref=profile,
            overrides=overrides,
            curve=curve,
            log_format=log_format,
            worker_bind=worker_bind,
        )
    except HeirloomError as exc:
        fail(f"error: {exc}")
    sys.exit(code)


@click.command("worker")
@click.argument("profile")
@click.option("--connect", required=True, metavar="ADDR", help="The broker's worker endpoint (serve --worker-bind).")
@set_option
@log_format_option
@log_level_option
def worker_command(profile: str, connect: str, overrides: tuple[str, ...], log_format: str, log_level: str) -> None:
    """Serve PROFILE as a worker of a broker (`heirloom serve --workers N`), possibly from another host."""
    logs.configure(log_level, log_format)
    resolved = resolve_or_exit(profile, overrides)
    from heirloom.daemon import run_server

    system = get_kernel().system(resolved, serve_models=True)
    sys.exit(run_server(system, resolved.settings["server"], connect=connect))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, Buffer):
        return {"dtype": value.dtype, "shape": list(value.shape), "$base64": base64.b64encode(value.data).decode()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


curve_client_options = [
    click.option(
        "--curve-secret",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="This client's .key_secret file (CurveZMQ).",
    ),
    click.option(
        "--curve-server",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The server's public .key file (CurveZMQ).",
    ),
]


@click.command("call")
@click.argument("route")
@click.argument("body", required=False)
@click.option("--connect", default=DEFAULT_ADDRESS, show_default=True, metavar="ADDR", help="The daemon's address.")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before giving up (sent to the daemon as the deadline).",
)
@click.option("--idempotency-key", help="Makes a write safe to retry: the daemon answers a repeated key from memory.")
@curve_client_options[0]
@curve_client_options[1]
def call_command(
    route: str,
    body: str | None,
    connect: str,
    timeout: float,
    idempotency_key: str | None,
    curve_secret: Path | None,
    curve_server: Path | None,
) -> None:
    """Call ROUTE on a daemon with BODY (JSON, default null) and print the reply as JSON.

    On an error reply it prints CODE: message to stderr and exits 1 (2 for bad usage).
    Example: heirloom call echo.echo '{"hello": 1}'
    """
    try:
        payload = json.loads(body) if body is not None else None
    except json.JSONDecodeError as exc:
        fail(f"error: BODY is not valid JSON: {exc}", 2)
    if (curve_secret is None) != (curve_server is None):
        fail("error: --curve-secret and --curve-server go together", 2)
    curve = CurveClient(curve_secret, curve_server) if curve_secret and curve_server else None
    with Client(connect, timeout=timeout, curve=curve) as client:
        try:
            reply = client.request(route, payload, idempotency_key=idempotency_key)
        except RemoteError as exc:
            fail(f"{exc.code}: {exc.message}" + (f" (field: {exc.field})" if exc.field else ""))
    click.echo(json.dumps(_jsonable(reply.body), indent=2))


@click.group("keys")
def keys_group() -> None:
    """CurveZMQ keypairs for encrypted, authenticated daemons."""


@keys_group.command("new")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="heirloom", show_default=True, help="File name stem of the keypair.")
def keys_new(directory: Path, name: str) -> None:
    """Write NAME.key (public: give it to the other side) and NAME.key_secret (keep private) into DIRECTORY."""
    try:
        public, secret = new_keypair(directory, name)
    except HeirloomError as exc:
        fail(f"error: {exc}")
    click.echo(f"public key: {public}\nsecret key: {secret} (mode 0600)")


COMMANDS = [serve_command, worker_command, call_command, keys_group]
