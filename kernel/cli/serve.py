"""``heirloom serve`` and ``heirloom worker``: run a profile as a daemon, or as one of its workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from heirloom.cli import logs
from heirloom.cli.common import EXIT_INVALID, fail, get_kernel, resolve_or_exit, store_or_exit
from heirloom.cli.options import (
    ADDRESS,
    PROFILE,
    SECONDS,
    existing_file,
    existing_folder,
    log_options,
    set_option,
)
from heirloom.core.errors import HeirloomError, RefError
from heirloom.core.serving import served_ref
from heirloom.store.private_logs import warn_open_home
from heirloom.wire.auth import CurveServer, worker_curve
from heirloom.wire.exporter import MetricsAddress
from heirloom.wire.transport import Unworkable, ipc_bind_problem


@click.command("serve")
@click.argument("profile", type=PROFILE)
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="ADDR",
    help="Endpoint to listen on, repeatable (tcp://HOST:PORT, HOST an interface's address or name, or *; "
    "ipc:///path). Default: [server] bind, else tcp://127.0.0.1:5555.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Worker processes behind a broker (default: [server] workers, else 1: in-process; 0: a broker whose "
    "workers all connect from elsewhere, with --worker-bind; at most 8 per core on this host).",
)
@click.option(
    "--grace",
    type=SECONDS,
    help="Seconds to finish in-flight work on SIGTERM; what is left then is answered UNAVAILABLE "
    "[default: [server] grace, 30].",
)
@click.option(
    "--worker-bind",
    metavar="ADDR",
    help='With --workers (or [resources] use = "ray"): where workers connect (default: an ipc:// socket '
    "in a private temp folder). Bind a tcp:// address to accept `heirloom worker --connect` from other "
    "hosts (they join the local ones; --workers 0: only they serve); Ray workers need one their nodes "
    "reach (docs/SCALE.md).",
)
@existing_file("--curve-secret", "This server's .key_secret file: serve over CurveZMQ.")
@existing_folder(
    "--curve-clients",
    "Folder of authorised clients' public .key files, read again every [server] reload_interval "
    "seconds and on _reload (a removed key is refused from then on).",
)
@existing_folder(
    "--curve-admins",
    "Folder of public .key files allowed to call admin routes (_reload); each must also be in --curve-clients.",
)
@existing_folder(
    "--curve-workers",
    "Folder of public .key files of workers allowed to join from elsewhere (heirloom worker --curve-secret). "
    "With --curve-secret, a tcp:// --worker-bind is Curve too: workers this daemon starts get a key of "
    "their own, any other needs its key here (read again like --curve-clients).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (needs the 'metrics' extra), logged at start; "
    "0 takes a free port (the log names it): leave the option out for no metrics. With --workers they cover "
    "every worker.",
)
@click.option(
    "--metrics-host",
    metavar="HOST",
    help="Address --metrics-port listens on (default 127.0.0.1; 0.0.0.0: every interface).",
)
@set_option
@log_options
def serve_command(
    profile: str,
    binds: tuple[str, ...],
    workers: int | None,
    grace: float | None,
    worker_bind: str | None,
    curve_secret: Path | None,
    curve_clients: Path | None,
    curve_admins: Path | None,
    curve_workers: Path | None,
    metrics_port: int | None,
    metrics_host: str | None,
    overrides: tuple[str, ...],
    log_format: str,
    log_level: str,
) -> None:
    """Run PROFILE as a daemon answering requests over ZeroMQ until SIGTERM/SIGINT.

    On a stop signal it drains: _ready turns false, new requests get UNAVAILABLE, requests
    in flight finish within the grace period (the rest are answered UNAVAILABLE at its
    end), components stop (flushing what they write), and the process exits 0. Limits
    ([server] in the profile) and the wire format are in docs/PROTOCOL.md.
    """
    logs.configure(log_level, log_format)
    warn_open_home()  # its store and logs, another user's to replace
    resolved = resolve_or_exit(profile, overrides)
    _index_readable_or_exit(resolved)  # opens the store, as store=True did, once
    settings = resolved.settings["server"]
    changes: dict[str, Any] = {}
    if binds:
        changes["bind"] = list(binds)
    if workers is not None:
        changes["workers"] = workers
    if grace is not None:
        changes["grace"] = grace
    try:
        settings = attrs.evolve(settings, **changes)
    except ValueError as exc:  # the settings' own validators: a malformed --bind
        fail("error: " + str(exc).replace("'bind'", "--bind"), 2)
    binds_from = "--bind" if binds else "[server] bind"  # checked before anything starts
    for option, address in [*((binds_from, address) for address in settings.bind), ("--worker-bind", worker_bind)]:
        if address and (problem := ipc_bind_problem(address)) is not None:
            fail(f"error: {resolved.raw.hide_secrets('', f'{option} {address}: {problem}')}", 2)
    from heirloom.wire.local_workers import too_many_workers

    if too_many := too_many_workers(settings.workers):  # a value that cannot work here: exit 2, as a typo's
        fail(f"error: {settings.workers} workers (--workers, [server] workers): {too_many}", 2)
    if (curve_secret is None) != (curve_clients is None):
        fail("error: --curve-secret and --curve-clients go together", 2)
    if curve_admins is not None and curve_secret is None:  # ignored, it left _reload open to every client
        fail("error: --curve-admins needs --curve-secret and --curve-clients (admins are Curve keys)", 2)
    if metrics_host is not None and metrics_port is None:
        fail("error: --metrics-host needs --metrics-port (without it no metrics are served)", 2)
    if curve_workers is not None and not (curve_secret and (worker_bind or "").startswith("tcp://")):
        fail("error: --curve-workers needs --curve-secret and a tcp:// --worker-bind for workers to join", 2)
    try:
        curve = (
            CurveServer(
                curve_secret, curve_clients, curve_admins, curve_workers, refresh_interval=settings.reload_interval
            )
            if curve_secret and curve_clients
            else None
        )
        from heirloom.wire.daemon import exit_process, serve

        code = serve(
            get_kernel(),
            resolved,
            settings,
            profile_ref=profile,
            overrides=overrides,
            curve=curve,
            log_format=log_format,
            worker_bind=worker_bind,
            metrics=MetricsAddress(metrics_host or "127.0.0.1", metrics_port) if metrics_port is not None else None,
        )
    except HeirloomError as exc:  # a bind from ${VAR} as the profile wrote it (h419 F4)
        fail(f"error: {resolved.raw.hide_secrets('', str(exc))}", EXIT_INVALID if isinstance(exc, Unworkable) else 1)
    exit_process(code)


def _index_readable_or_exit(resolved: Any) -> None:
    """Exit 1 naming it when the store index cannot say what each model serves (a page a bad restore damaged):
    one process failed its start so, while a ``--workers`` broker, whose workers load, stayed up, never ready
    (checker v21 F4). A model with nothing to serve yet (not trained, no such alias) starts, not ready."""
    store = store_or_exit(resolved)
    for spec in resolved.components:
        if spec.kind == "model":
            try:
                store.resolve(served_ref(resolved.project, spec))
            except RefError:
                continue
            except HeirloomError as exc:
                fail(f"error: {exc}")


@click.command("worker")
@click.argument("profile", type=PROFILE)
@click.option(
    "--connect", type=ADDRESS, required=True, metavar="ADDR", help="The broker's worker endpoint (serve --worker-bind)."
)
@existing_file(
    "--curve-secret", "This worker's .key_secret file, for a broker serving Curve (its public key in --curve-workers)."
)
@existing_file("--curve-server", "The broker's public .key file (the pair of its serve --curve-secret).")
@set_option
@log_options
def worker_command(
    profile: str,
    connect: str,
    curve_secret: Path | None,
    curve_server: Path | None,
    overrides: tuple[str, ...],
    log_format: str,
    log_level: str,
) -> None:
    """Serve PROFILE as a worker of a broker (`heirloom serve --workers N`), possibly from another host."""
    logs.configure(log_level, log_format)
    if (curve_secret is None) != (curve_server is None):
        fail("error: --curve-secret and --curve-server go together", 2)
    resolved = resolve_or_exit(profile, overrides)
    from heirloom.wire.daemon import exit_process, run_server
    from heirloom.wire.local_workers import take_token

    curve = worker_curve(curve_secret, curve_server)  # first: out of the environment before any plugin runs
    take_token()  # the local worker's secret too
    system = get_kernel().system(resolved, serve_models=True)
    exit_process(run_server(system, resolved.settings["server"], connect=connect, curve=curve))


COMMANDS = [serve_command, worker_command]
