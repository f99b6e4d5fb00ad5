"""The ``heirloom ui`` command: open the store, build the app, run uvicorn until stopped."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

import heirloom
from heirloom.options import ADDRESS, a_path, answered_hosts, bound_socket, existing_file, listen_options, url_host
from heirloom.reports import extra_hint


def default_store() -> Any:
    """The default store, only read (create=False: no folder made, the index opened read-only);
    where there is none yet, an empty one is made first, as ``train`` and ``serve`` make it."""
    kernel = heirloom.Kernel()
    try:
        return kernel.store(create=False)
    except heirloom.StoreMissing:
        kernel.store()
        return kernel.store(create=False)


@click.command("ui")
@click.option(
    "--store",
    type=a_path(file_okay=False),
    envvar="HEIRLOOM_STORE",
    show_envvar=True,
    help="The artifact store folder (default: the one `heirloom train` uses, HEIRLOOM_HOME/store).",
)
@click.option(
    "--connect", type=ADDRESS, metavar="ADDR", help="A running daemon's address, for live route stats (tcp://, ipc://)."
)
@existing_file("--curve-secret", "With --connect to a CurveZMQ daemon: this client's .key_secret file.")
@existing_file("--curve-server", "With --connect to a CurveZMQ daemon: the daemon's public .key file.")
@listen_options(default_port=8765)
@click.option(
    "--refresh",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seconds between reloads of the live page.",
)
def ui_command(
    store: Path | None,
    connect: str | None,
    curve_secret: Path | None,
    curve_server: Path | None,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    refresh: int,
) -> None:
    """Serve a read-only dashboard of the artifact store until Ctrl-C or SIGTERM.

    Pages: the stored models; each model's lineage as a graph (what it inherited from,
    across projects, and what inherited from it) with its versions and aliases; each
    version's facts and evaluation (metrics, per-class table, confusion matrix). With
    --connect, /live shows the daemon's routes (counts, errors, latency, queues, batches).
    Needs the 'ui' extra (starlette, uvicorn, matplotlib, jinja2).
    """
    try:
        import uvicorn

        from heirloom.reports import check_available
        from heirloom_plugins.dashboard.app import create_app

        check_available()
    except ImportError as exc:  # a HeirloomError: `error: ...`, exit 1, as every command says it (checker h356 F5)
        raise heirloom.HeirloomError(f"heirloom ui needs the 'ui' extra ({exc}): {extra_hint()}") from exc
    if (curve_secret is None) != (curve_server is None):
        raise click.UsageError("--curve-secret and --curve-server go together")
    if store is not None and not (store / "index.sqlite").is_file():
        raise click.BadParameter(f"no artifact store at {store} (no index.sqlite there)", param_hint="'--store'")
    opened = heirloom.ArtifactStore(store, create=False) if store is not None else default_store()
    curve = heirloom.CurveClient(curve_secret, curve_server) if curve_secret and curve_server else None
    listening = bound_socket(host, port)  # uvicorn takes it over: no other process can take the port meanwhile
    app = create_app(opened, connect=connect, refresh=refresh, curve=curve, hosts=answered_hosts(host, allowed_hosts))
    port = listening.getsockname()[1]  # the one the system chose for --port 0
    click.echo(
        f"heirloom ui: http://{url_host(host)}:{port}/ (store {getattr(opened, 'root', opened)}, read-only)", err=True
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the
    # handler it found: exit 0 there, as `heirloom serve` does after a clean stop.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda signum, frame: sys.exit(0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[listening])
    if not server.started:
        sys.exit(1)
