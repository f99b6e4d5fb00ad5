"""``heirloom call``: one request to a daemon, its reply printed as JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import attrs
import click

from heirloom.cli.common import EXIT_DECLINED, fail
from heirloom.cli.options import ADDRESS, SECONDS, existing_file
from heirloom.wire.auth import CurveClient
from heirloom.wire.client import DEFAULT_ADDRESS, Client, RemoteError
from heirloom.wire.protocol import Buffer


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


@click.command("call")
@click.argument("route")
@click.argument("body", required=False)
@click.option(
    "--connect", type=ADDRESS, default=DEFAULT_ADDRESS, show_default=True, metavar="ADDR", help="The daemon's address."
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=SECONDS,
    help="Seconds before giving up (sent to the daemon as the deadline).",
)
@click.option(
    "--idempotency-key",
    help="Makes a write safe to retry: running the same call again with the same key gets the first "
    "reply from the daemon's memory instead of writing twice.",
)
@click.option(
    "--full",
    is_flag=True,
    help='Print the whole reply, {"version", "queue_ms", "compute_ms", "body"}: which model version '
    "answered, and how long it queued and computed.",
)
@existing_file("--curve-secret", "This client's .key_secret file (CurveZMQ).")
@existing_file("--curve-server", "The server's public .key file (CurveZMQ).")
def call_command(
    route: str,
    body: str | None,
    connect: str,
    timeout: float,
    idempotency_key: str | None,
    full: bool,
    curve_secret: Path | None,
    curve_server: Path | None,
) -> None:
    """Call ROUTE on a daemon with BODY (JSON, default null) and print the reply as JSON.

    On an error reply it prints CODE: message to stderr and exits 1 (2 for bad usage).
    `_ready` answering not ready exits 3 after printing the reply, so `heirloom call _ready`
    is a readiness probe. Example: heirloom call echo.echo '{"hello": 1}'
    """
    try:
        payload = json.loads(body) if body is not None else None
    except json.JSONDecodeError as exc:
        fail(f"error: BODY is not valid JSON: {exc}", 2)
    if (curve_secret is None) != (curve_server is None):
        fail("error: --curve-secret and --curve-server go together", 2)
    curve = CurveClient(curve_secret, curve_server) if curve_secret and curve_server else None
    with Client(connect, timeout=timeout, curve=curve, routing_id=_retry_identity(idempotency_key, curve)) as client:
        try:
            reply = client.request(route, payload, idempotency_key=idempotency_key)
        except RemoteError as exc:
            fail(f"{exc.code}: {exc.message}" + (f" (field: {exc.field})" if exc.field else ""))
        shown = attrs.asdict(reply, recurse=False) if full else reply.body
        click.echo(json.dumps(_jsonable(shown), indent=2, ensure_ascii=False))
        if route == "_ready" and isinstance(reply.body, dict) and reply.body.get("ready") is not True:
            fail(f"not ready: {_not_ready(reply.body, client)}", EXIT_DECLINED)


def _not_ready(body: dict[str, Any], client: Client) -> str:
    """Why a daemon is not ready, from its ``_ready`` reply (and, for a model, the reason
    ``_stats`` gives: no trained version, a version it cannot load)."""
    if body.get("draining"):
        return "draining (stopping)"
    if isinstance(workers := body.get("workers"), list):
        ready = sum(isinstance(w, dict) and w.get("ready") is True for w in workers)
        why: set[str] = set()  # what the workers' models wait for, once for all of them
        for worker in workers:
            models = worker.get("models") if isinstance(worker, dict) else None
            for name in models if isinstance(models, dict) else ():
                if said := _model_error(models, name):
                    why.add(f"models.{name}{said}")
        reasons = f" ({'; '.join(sorted(why))})" if why else ""
        return f"{ready} of {body.get('expected_workers', '?')} workers ready{reasons}"
    waiting = [name for name, ready in (body.get("components") or {}).items() if ready is not True]
    if not waiting:
        return "starting"
    try:
        stats = client.call("_stats")
    except RemoteError:  # the probe's answer stands without the reasons
        stats = {}
    models = stats.get("models") if isinstance(stats, dict) else None
    return "waiting for " + "; ".join(f"{name}{_model_error(models, name)}" for name in waiting)


def _model_error(models: Any, component: str) -> str:
    """``: why`` for a served model in ``_stats``'s ``models``, else nothing."""
    entry = models.get(component.removeprefix("models.")) if isinstance(models, dict) else None
    error = entry.get("error") if isinstance(entry, dict) else None
    return f": {error}" if isinstance(error, str) and error else ""


def _retry_identity(key: str | None, curve: CurveClient | None) -> bytes | None:
    """A key belongs to one client: with Curve that is the key pair, which a rerun shares;
    otherwise the connection, new in every run, so a rerun with a key takes an identity
    made from it (two runs with one key at the same moment: the second waits out its
    timeout, since a daemon serves one connection per identity)."""
    if key is None or curve is not None:
        return None
    return b"heirloom-call-" + hashlib.sha256(key.encode()).hexdigest()[:32].encode()


COMMANDS = [call_command]
