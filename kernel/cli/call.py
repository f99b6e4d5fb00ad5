"""``heirloom call``: one request to a daemon, its reply printed as JSON."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import attrs
import click

from heirloom.cli.common import EXIT_DECLINED, EXIT_INVALID, echo_json, fail, terminal_safe
from heirloom.cli.options import ADDRESS, SECONDS, existing_file
from heirloom.core.errors import HeirloomError
from heirloom.limits import nests_deeper
from heirloom.wire.auth import CurveClient, load_keypair, load_server_key
from heirloom.wire.client import DEFAULT_ADDRESS, Client, NoReply, RemoteError
from heirloom.wire.protocol import MAX_NESTING, Buffer, packb
from heirloom.wire.sendable import unsendable
from heirloom.wire.unanswered import silence_hint


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can print it. ``map``, not comprehensions: one frame per level of nesting
    (a comprehension is a second one), so a reply nested as deep as a body may be prints."""
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, Buffer):
        return {"dtype": value.dtype, "shape": list(value.shape), "$base64": base64.b64encode(value.data).decode()}
    if isinstance(value, dict):
        return dict(zip(map(str, value), map(_jsonable, value.values()), strict=True))
    if isinstance(value, (list, tuple)):
        return list(map(_jsonable, value))
    if isinstance(value, float) and not math.isfinite(value):  # strict JSON has none: protobuf's JSON words
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
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
    help="Seconds before giving up (sent to the daemon as the deadline); with no reply by then, _health is "
    "asked (for up to 1 s more) to tell a route slower than that from a daemon that does not answer; not "
    "after _health or _ready, so a probe's --timeout is its whole budget.",
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
    """Call ROUTE on a daemon with BODY (JSON, default null) and print the reply as JSON
    (strict JSON: a float that is not finite prints as the string "NaN", "Infinity" or
    "-Infinity"; bytes as {"$base64": ...}; a control, bidi or other invisible character in a
    string as its \\u escape, so a reply quoting a customer's text cannot drive the terminal).

    BODY travels as msgpack: its integers must fit 64 bits (-2^63 to 2^64-1; write a larger
    number as a float, 1e30), its strings be Unicode without lone surrogates (\\ud800), and
    its arrays and objects nest at most 500 levels; anything else is refused (exit 2).

    On an error reply it prints CODE: message to stderr and exits 1 (2 for bad usage).
    `_ready` answering not ready exits 3 after printing the reply, so `heirloom call _ready`
    is a readiness probe. Example: heirloom call echo.echo '{"hello": 1}'
    """
    payload = _payload(body) if body is not None else None
    if (curve_secret is None) != (curve_server is None):
        fail("error: --curve-secret and --curve-server go together", EXIT_INVALID)
    curve = CurveClient(curve_secret, curve_server) if curve_secret and curve_server else None
    keys = {"--curve-secret": (load_keypair, curve_secret), "--curve-server": (load_server_key, curve_server)}
    for option, (load, key) in keys.items() if curve else ():
        try:  # each key named by its option, not blamed on --connect when the client loads them
            load(key)
        except HeirloomError as exc:
            fail(f"error: {option}: {exc}", EXIT_INVALID)
    try:
        client = Client(connect, timeout=timeout, curve=curve, routing_id=_retry_identity(idempotency_key, curve))
    except HeirloomError as exc:  # an address ZeroMQ refuses (an ipc:// path too long for a socket)
        fail(f"error: --connect: {exc}", EXIT_INVALID)
    with client:
        try:
            reply = client.request(route, payload, idempotency_key=idempotency_key)
        except NoReply as exc:  # our own wait ran out: a slow route, or a daemon stuck or gone?
            fail(f"{exc.code}: {_slow_route(client, route, timeout, silence_hint(curve)) or exc.message}")
        except RemoteError as exc:
            named = exc.field and not exc.message.startswith(exc.field)  # most messages lead with their field
            fail(f"{exc.code}: {exc.message}" + (f" (field: {exc.field})" if named else ""))
        shown = attrs.asdict(reply, recurse=False) if full else reply.body
        try:
            echo_json(terminal_safe(json.dumps(_jsonable(shown), indent=2, ensure_ascii=False)))
        except RecursionError:  # a reply nested near msgpack's 1,024 levels (a stray worker's heartbeat in _ready)
            fail(f"error: the reply nests too deep to print as JSON (route {route})")
        if route == "_ready" and isinstance(reply.body, dict) and reply.body.get("ready") is not True:
            fail(f"not ready: {_not_ready(reply.body, client)}", EXIT_DECLINED)


#: The probes: answered by the daemon's I/O loop, so no reply to one already says the daemon does not answer,
#: and an orchestrator's probe timeout set to ``--timeout`` must not be overrun by asking ``_health`` again.
PROBES = ("_health", "_ready")
#: A ``_health`` slower than this was held behind a route answered on the daemon's I/O thread (it takes about 1 ms).
HELD_MS = 100


def _slow_route(client: Client, route: str, timeout: float, silence: str) -> str | None:
    """When ROUTE gave no reply within ``timeout``: that the daemon answers ``_health`` (asked for at most
    a second), so the route is what is slow, or that it is silent too (``silence``: what to check); None for a
    probe, whose ``timeout`` is its whole budget."""
    if route in PROBES:
        return None
    began = time.perf_counter()
    try:
        client.request("_health", timeout=1.0)  # a second, whatever --timeout was: 1e-9 made a healthy daemon silent
    except NoReply:  # silent too: a timeout too short to connect said only to raise it (v25 F1)
        held = f"{silence} (or a route answered on the daemon's I/O thread, this or another, holds it: its log says)"
        return f"no reply from {client.address} within {timeout:g} s, nor to _health within 1 s: {held}"
    except RemoteError as exc:  # refused (a Curve key it does not authorise): that, not silence (v26 F1)
        return f"no reply from {client.address} within {timeout:g} s, and _health answered {exc.code}: {exc.message}"
    took = (time.perf_counter() - began) * 1000
    answered = f"the daemon at {client.address} answers (_health in {took:.0f} ms)"
    if took > HELD_MS:  # answered at once unless held: an instant route was told it was slow (checker v44 F2)
        held = "a route answered on its I/O thread (this or another: its log names it) held it"
        return f"{route} did not reply within {timeout:g} s, and {answered}, late: {held}; or raise --timeout"
    return f"{route} did not reply within {timeout:g} s, but {answered}: the route is slower than that; raise --timeout"


def _payload(body: str) -> Any:
    """BODY read as JSON, or exit 2 naming what in it msgpack cannot carry (a traceback from
    the packer said neither what nor where)."""
    too_deep = f"error: BODY nests arrays and objects deeper than {MAX_NESTING} levels, the most this client packs"
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        fail(f"error: BODY is not valid JSON: {exc}", EXIT_INVALID)
    except RecursionError:  # deeper than Python's JSON reader goes: far past MAX_NESTING
        fail(too_deep, EXIT_INVALID)
    except ValueError:  # Python reads no integer of over 4,300 digits from text
        fail("error: BODY: an integer of over 4,300 digits does not fit msgpack's 64 bits", EXIT_INVALID)
    if nests_deeper(payload, MAX_NESTING):
        fail(too_deep, EXIT_INVALID)
    try:
        packb(payload)  # the common case, at C speed: the walk below runs only to say where it fails
    except (UnicodeEncodeError, OverflowError):
        fail(f"error: BODY cannot be sent: {unsendable(payload, 'body')}", EXIT_INVALID)
    return payload


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
            why.update(f"worker pid {worker.get('pid')}: {said}" for said in _worker_not_ready(worker))
        if isinstance(failure := body.get("start_failure"), str):
            why.add(failure)
        missing = body.get("missing_routes") if isinstance(body.get("missing_routes"), list) else []
        said = f"no ready worker serves this profile's {', '.join(map(str, missing[:10]))}" if missing else ""
        why.update([said] * bool(said and not ready))
        reasons = f" ({'; '.join(sorted(why))})" if why else ""
        count = f"{ready} of {body.get('expected_workers', '?')} workers ready{reasons}"
        return f"{said}; {count}" if said and ready else count  # "1 of 1 workers ready" alone read as ready
    waiting = [name for name, ready in (body.get("components") or {}).items() if ready is not True]
    if not waiting:
        return "starting"
    try:
        stats = client.call("_stats")
    except RemoteError:  # the probe's answer stands without the reasons
        stats = {}
    models = stats.get("models") if isinstance(stats, dict) else None
    return "waiting for " + "; ".join(f"{name}{_model_error(models, name)}" for name in waiting)


def _worker_not_ready(worker: Any) -> list[str]:
    """What a ``_ready`` workers entry says keeps that worker not ready besides its models: a component's
    ready() that raises (``not_ready``), its resource manager's reason (``resources.not_ready``: past its
    memory budget)."""
    if not isinstance(worker, dict):
        return []
    raised = worker.get("not_ready") if isinstance(worker.get("not_ready"), dict) else {}
    resources = worker.get("resources") if isinstance(worker.get("resources"), dict) else {}
    return [str(said) for said in [*raised.values(), resources.get("not_ready")] if said]


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
