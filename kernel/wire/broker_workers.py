"""The workers a broker knows, and their heartbeats read as untrusted input.

A worker is another process, maybe on another host running another heirloom version, and
without Curve on the worker endpoint anything that reached it: a heartbeat that is not the
map ``builtin_routes.worker_status`` sends is refused with a reason, never a crash of the
broker every client depends on.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import attrs
import zmq

from heirloom.core.components import Route
from heirloom.core.settings import NAME_PATTERN
from heirloom.limits import nests_deeper, shortened
from heirloom.wire.builtin_routes import KERNEL_ROUTES
from heirloom.wire.inputs import MAX_SCHEMA_DEPTH
from heirloom.wire.protocol import (
    CODE_OF_BYTE,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    RequestError,
    decoding_error,
    packb,
    unpackb,
)
from heirloom.wire.routing import ROUTE_NAME

#: The most routes one worker may announce (a rogue's 400,000 names grew the broker by 92 MB).
MAX_HEARTBEAT_ROUTES = 1_000
#: The levels of a heartbeat above a route's input or output schema: the status map, its ``routes`` array, a route.
HEARTBEAT_LEVELS = 3
#: How deep a heartbeat may nest: its routes' schemas nest as deep as the routes' types (the medical routes' 17
#: levels; a limit of 16 kept every medical worker out, checker h331), at most MAX_SCHEMA_DEPTH (a route nesting
#: deeper fails the start, one process or worker alike), and 1,000 broke ``_ready``, which packs it again.
MAX_HEARTBEAT_DEPTH = MAX_SCHEMA_DEPTH + HEARTBEAT_LEVELS
#: The largest heartbeat read (a worker of 50 routes sends a few KB): the broker keeps each
#: worker's last one, so with ``MAX_WORKERS`` this bounds what peers can make it hold.
MAX_HEARTBEAT_BYTES = 2 << 20
#: The most values (arrays, maps, strings, numbers) a heartbeat may hold: 2 MiB of one-byte empty
#: maps took 6 s to check (a worker of 1,000 routes sends tens of thousands).
MAX_HEARTBEAT_VALUES = 200_000
#: The maps of a heartbeat that ``_ready`` and ``_stats`` show per worker, and their largest size.
SHOWN = ("resources", "models", "storage", "not_ready")
MAX_SHOWN_BYTES = 16 << 10
#: Lines a minute the broker logs about workers on other hosts joining and leaving (past them, a count):
#: its own local workers' are all logged.
WORKER_LINES_PER_MINUTE = 60
#: The heartbeat keys the broker reads, and the types they must have when present.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "pid": int,
    "ready": bool,
    "draining": bool,
    "heartbeat": (int, float),
    "routes": list,
    "apis": list,
    "resources": dict,
    "models": dict,
    "storage": dict,
    "not_ready": dict,
    "metrics": dict,
}


class Worker:
    """A connected worker as the broker sees it."""

    __slots__ = (
        "connection",
        "identity",
        "in_flight",
        "last_seen",
        "local",
        "pid",
        "ready",
        "served",
        "silence",
        "status",
    )

    def __init__(self, identity: bytes):
        self.identity = identity
        #: The how-manieth connection the broker took in (``_ready`` shows it): two workers on two hosts may
        #: have one pid, and a peer may claim another's; the connection tells them apart.
        self.connection = next(_CONNECTIONS)
        self.pid = 0
        #: One of the broker's own processes (its heartbeats carry their secret): only such a
        #: worker's pid is killed when it falls silent, or reaped.
        self.local = False
        self.ready = False
        #: It has been ready: a GONE it sends then is no start failure, whatever its message.
        self.served = False
        self.last_seen = 0.0
        #: Seconds of silence after which it is dead: three of its heartbeats or the broker's.
        self.silence = 0.0
        self.status: dict[str, Any] = {}
        #: Requests this worker is handling (a count: the broker's ``forwarded`` holds their
        #: tags, scanned only when a worker dies, so the hot path does no set operations).
        self.in_flight = 0

    def update(self, status: dict[str, Any], local: bool, broker_beat: float) -> None:
        """Take in a heartbeat's ``status`` (read by ``read_heartbeat``): a draining worker is not ready."""
        self.pid = status.get("pid") or 0
        self.local = local
        self.ready = bool(status.get("ready")) and not status.get("draining")
        self.served |= self.ready
        self.silence = allowed_silence(broker_beat, status.get("heartbeat"), local and not self.ready)
        self.status = status
        self.last_seen = time.monotonic()


_CONNECTIONS = itertools.count(1)
#: Workers a broker keeps track of at once (a new one past them is ignored, said once a minute).
MAX_WORKERS = 128
#: Requests the broker queues for one worker (its socket's send high-water mark) past what the
#: network and the worker's own queue hold: past them a request is RESOURCE_EXHAUSTED at once
#: (back-pressure from a healthy worker that falls behind, not its loss).
WORKER_QUEUE = 1000

#: Heartbeats a worker may miss before it is dropped; one of the broker's own processes that is
#: starting (not ready), STARTING_PATIENCE times as many: thirteen daemons starting at once on 2
#: cores starved workers importing torch past 3 s; killed and respawned, they took 109 s to be
#: ready. (A peer on the worker endpoint gets no more: unready fakes would hold the slots.)
MISSED_HEARTBEATS, STARTING_PATIENCE = 3, 10
#: The longest heartbeat interval a worker may claim (a peer claiming 3,000 s held a slot 2.5 h).
MAX_CLAIMED_HEARTBEAT = 60.0


def allowed_silence(broker_beat: float, claimed: Any, starting: bool) -> float:
    """Seconds a worker may stay silent: MISSED_HEARTBEATS of its heartbeat interval (as it claims
    it, within MAX_CLAIMED_HEARTBEAT) or the broker's, whichever is longer; more while ``starting``."""
    own = min(float(claimed), MAX_CLAIMED_HEARTBEAT) if claimed is not None and 0 < claimed else 0.0
    return MISSED_HEARTBEATS * max(broker_beat, own) * (STARTING_PATIENCE if starting else 1)


#: The admin route that changes how many workers a placing resource manager keeps.
SCALE_ROUTE = "_scale"
#: What a route's full name may be, as the kernel names routes (``api.method``: an api's component
#: name, which may hold dots, a dot, a route name, which holds none): a heartbeat naming 1,000 routes of
#: 4,000 characters each made one did-you-mean take 13 s, and a route ``echo`` joined where one process
#: has none such.
FULL_ROUTE_NAME = re.compile(rf"(?:{NAME_PATTERN.pattern})\.(?:{ROUTE_NAME.pattern})")


def worker_argv(profile_ref: str, address: str, log_format: str, overrides: tuple[str, ...], grace: float) -> list[str]:
    """``heirloom worker`` arguments that connect a worker to a broker at ``address``."""
    argv = [
        "worker",
        profile_ref,
        "--connect",
        address,
        "--log-format",
        log_format,
        "--log-level",  # the broker's own, as `serve --log-level` set it
        logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    ]
    for override in overrides:
        argv += ["--set", override]
    return [*argv, "--set", f"server.grace={grace}"]  # serve --grace reaches the workers too


def read_heartbeat(frame: bytes) -> dict[str, Any]:
    """A heartbeat's status map; ValueError saying what is wrong with it."""
    if len(frame) > MAX_HEARTBEAT_BYTES:
        raise ValueError(f"the heartbeat is {len(frame)} bytes; at most {MAX_HEARTBEAT_BYTES} are read")
    try:  # one array or map longer than the whole may hold is refused by its header, before any is made
        status = unpackb(frame, max_array_len=MAX_HEARTBEAT_VALUES, max_map_len=MAX_HEARTBEAT_VALUES)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types; each is a bad frame
        if f"_len({MAX_HEARTBEAT_VALUES})" in str(exc):  # our cap, not a length past the frame's end
            raise ValueError(f"the heartbeat is refused: an array or map holds over {MAX_HEARTBEAT_VALUES}") from None
        raise ValueError(decoding_error("heartbeat", exc)) from None
    if not isinstance(status, dict):
        raise ValueError(f"the heartbeat is a {type(status).__name__}, not a map")
    if too_big := nests_deeper(status, MAX_HEARTBEAT_DEPTH, MAX_HEARTBEAT_VALUES):  # _ready and _stats pack parts
        raise ValueError(f"the heartbeat is refused: {too_big}")
    # nil is absent ("routes": nil); a key the broker does not read is not kept (a peer's made it hold 150 MB)
    status = {key: value for key, value in status.items() if value is not None and (key in _FIELDS or key == "local")}
    for key, kind in _FIELDS.items():
        value = status.get(key)
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise ValueError(f"heartbeat.{key} is a {type(value).__name__}")
    if (pid := status.get("pid")) is not None and pid < 1:
        raise ValueError(f"heartbeat.pid is {pid}; a process id is at least 1")
    if (beat := status.get("heartbeat")) is not None and not (math.isfinite(beat) and beat > 0):
        raise ValueError(f"heartbeat.heartbeat is {beat!r}; an interval is a positive number of seconds")
    routes = status.get("routes") or []
    if len(routes) > MAX_HEARTBEAT_ROUTES:
        raise ValueError(f"heartbeat.routes lists {len(routes)} routes; at most {MAX_HEARTBEAT_ROUTES} are read")
    if (bad := next((i for i, route in enumerate(routes) if not _describes_route(route)), None)) is not None:
        name = routes[bad].get("name") if isinstance(routes[bad], dict) else None
        said = f"name {name[:120]!r}" if isinstance(name, str) else f"a {type(routes[bad]).__name__}"
        raise ValueError(
            f"heartbeat.routes holds an entry that is not a route description: routes[{bad}] ({said}) needs a full"
            " route name (api.method) and a boolean admin; a max_payload, when given, is an integer of at least 1"
        )
    if routes:  # what a worker leaves out is the documented default: a route sent without max_payload had no limit
        status["routes"] = [{**ROUTE_DEFAULTS, **{k: v for k, v in r.items() if v is not None}} for r in routes]
    if taken := [route["name"] for route in routes if route["name"] in KERNEL_ROUTES or route["name"] == SCALE_ROUTE]:
        raise ValueError(f"heartbeat.routes names the broker's own route {taken[0]}")  # it would take it over
    for key in SHOWN:  # _ready and _stats copy each worker's: 40 peers' 1.8 MB maps made every _ready 73 MB
        if key in status and len(packb(status[key])) > MAX_SHOWN_BYTES:
            status[key] = {"omitted": f"over {MAX_SHOWN_BYTES} bytes"}
    return status


#: A ``_routes`` entry of a route that declares nothing but its name and ``admin`` (both required in a heartbeat's).
ROUTE_DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "batched": False,
    "max_batch": 1,
    "max_wait_ms": 0.0,
    "max_payload": attrs.fields(Route).max_payload.default,
    "inline": False,
    "admin": False,
    "input": {},
    "output": {},
    "model": None,
}


def _describes_route(route: Any) -> bool:
    """Whether ``route`` has what the broker reads of a route's description (``Endpoint.describe``):
    a name, ``admin``, and a ``max_payload`` (when given) it can enforce."""
    name = route.get("name") if isinstance(route, dict) else None
    limit = route.get("max_payload", 1) if isinstance(route, dict) else None
    return (
        isinstance(name, str)
        and FULL_ROUTE_NAME.fullmatch(name) is not None
        and isinstance(route.get("admin"), bool)
        and (limit is None or (type(limit) is int and limit >= 1))
    )


def describe_workers(workers: list[Worker], placed: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """``_ready``'s and ``_stats``' ``workers``: each worker's state, where it runs (local, or
    ``placed`` by a resource manager) and what its last heartbeat said."""
    now = time.monotonic()
    return [
        {
            **placed.get(w.pid, {}),
            "pid": w.pid,
            "connection": w.connection,
            "ready": w.ready,
            "in_flight": w.in_flight,
            "local": w.local,
            "last_seen_ms": round((now - w.last_seen) * 1000, 1),
            "resources": w.status.get("resources", {}),
            "models": w.status.get("models", {}),
            **({"not_ready": w.status["not_ready"]} if "not_ready" in w.status else {}),
        }
        for w in workers
    ]


def start_failure(frame: bytes) -> tuple[dict[str, Any], str]:
    """``(message, line)`` of what a worker's GONE message after a failed start says (untrusted,
    like a heartbeat: any frame gives a line, never an error; the message {} when unreadable)."""
    try:
        said = unpackb(frame)
    except Exception:  # noqa: BLE001 - msgpack raises several types; each is a bad frame
        said = None
    if not isinstance(said, dict):
        return {}, "a worker could not start (its message saying why was unreadable)"
    pid = said.get("pid") if type(said.get("pid")) is int else None
    return said, f"worker pid {'?' if pid is None else pid} could not start: {shortened(str(said.get('error')))}"


def names_another(worker: Worker | None, pid: Any, workers: Collection[Worker]) -> bool:
    """Whether a GONE message naming ``pid`` names a worker its connection (``worker``, None when
    it never sent a heartbeat) did not register, or one ready on another connection: a peer naming
    a healthy worker's pid had the broker log 85,000 start failures of that worker in 4 s, and one
    heartbeating that pid first, its failed start in ``_ready``. (Pids are not unique across hosts:
    a connection that registered none may name one no other connection registered.)"""
    if type(pid) is not int:
        return False  # names none: the line says "worker pid ?"
    if worker is not None and worker.pid != pid:
        return True
    return any(other.pid == pid and other is not worker and (worker is None or other.ready) for other in workers)


def not_sent(worker: Worker, exc: zmq.ZMQError) -> RequestError:
    """The answer to a request the broker could not hand to ``worker``, refused at once where a
    ROUTER socket would have dropped it in silence: its queue is full (EAGAIN: back-pressure from
    a healthy worker behind, such as one on another host under load), or it is gone since its
    last heartbeat (EHOSTUNREACH)."""
    if exc.errno == zmq.EAGAIN:
        held = f"{worker.in_flight} requests in flight to it"
        return RequestError(
            RESOURCE_EXHAUSTED,
            f"the broker's queue for worker pid {worker.pid} is full ({held}); retry",
            retry_after_ms=100,
        )
    return RequestError(UNAVAILABLE, f"worker pid {worker.pid} cannot be reached ({exc}); retry", retry_after_ms=100)


#: What a worker's control messages (an empty first frame) may say: each command frame its raw ASCII bytes.
WORKER_COMMANDS = (b"HEARTBEAT", b"GONE")


def misread(frames: list[bytes], tag_bytes: int) -> str:
    """Why a message on the worker endpoint (``frames``, after the peer's routing id) is neither a control
    message the broker reads nor a reply: said once per peer, to whoever writes a worker in another language."""
    first = frames[0]
    if first in WORKER_COMMANDS:
        return f"a {first.decode()} without the empty frame a control message starts with"
    if len(first) == tag_bytes + 1 and first[tag_bytes:] not in CODE_OF_BYTE:
        return f"its status byte {first[tag_bytes]} is none of the status codes (docs/PROTOCOL.md, Status codes)"
    if len(first) == tag_bytes + 1:
        return f"a reply of {len(frames)} frames, not 3 or more (the tag and status byte, a header, a body)"
    if first:  # a reply: the request's tag and one status byte
        return f"its first frame is {len(first)} bytes, neither empty (a control message) nor {tag_bytes + 1} (a reply)"
    if len(frames) < 2:
        return "a control message (an empty frame) with no command after it"
    command = frames[1]
    if command == b"HEARTBEAT":
        return "a HEARTBEAT without its status frame (a msgpack map)"
    try:
        packed = unpackb(command)
    except Exception:  # noqa: BLE001 - msgpack raises several types; each is no msgpack string
        packed = None
    raw = " or ".join(c.decode() for c in WORKER_COMMANDS)
    if isinstance(packed, str) and packed.encode() in WORKER_COMMANDS:
        return f"its command is the msgpack string {packed!r}: a command is its raw ASCII bytes, not msgpack"
    return f"its command {command[:40]!r} is none a worker sends ({raw}, raw ASCII bytes)"


def described_routes(ready: list[Worker], admin_routes: Collection[str]) -> dict[str, dict[str, Any]]:
    """What ``_routes`` lists: every route a ready worker serves, as the first ready one describes
    it, admin where any of them or the broker's own ``[server] admin_routes`` says so (a worker
    started without the setting, or first in a rolling upgrade, opened it to every client key)."""
    routes, admin = {}, set(admin_routes)
    for route in (route for worker in reversed(ready) for route in worker.status.get("routes", [])):
        routes[route["name"]] = route
        if route["admin"]:
            admin.add(route["name"])
    return {name: {**route, "admin": True} if name in admin else route for name, route in routes.items()}


def served_routes(worker: Worker) -> list[str]:
    """The names of the routes ``worker`` said it serves in its last heartbeat."""
    return [route["name"] for route in worker.status.get("routes", [])]


def routes_differing(worker: Worker, ready: list[Worker]) -> str | None:
    """What to say when ``worker`` or else the other ready workers serve routes the others do not
    (another profile or version?), naming the first ten; None when they serve the same."""
    theirs = set(served_routes(worker))
    others = {name for peer in ready if peer is not worker for name in served_routes(peer)}
    if not others or theirs == others:
        return None
    return (
        f"worker pid {worker.pid} serves other routes than the other ready workers (another profile or version?): "
        f"each route goes only to workers that serve it; differing: {', '.join(sorted(theirs ^ others)[:10])}"
    )


class Departed:
    """The connections that said GONE in the last ``seconds``, whose heartbeats are ignored until
    then: a peer joining and leaving in a loop (a ready heartbeat, GONE, 2,000 times a loop) cost
    the broker a join and a leave each, and its local workers' routes fell from 6,242 requests
    a second to under 100. A worker that said GONE is exiting; one started again with the same
    identity joins a heartbeat interval later."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._at: OrderedDict[bytes, float] = OrderedDict()  # identity -> when it said GONE, oldest first

    def add(self, identity: bytes) -> None:
        now = time.monotonic()
        while self._at and now - next(iter(self._at.values())) >= self.seconds:
            self._at.popitem(last=False)
        self._at[identity] = now
        self._at.move_to_end(identity)

    def __contains__(self, identity: bytes) -> bool:
        at = self._at.get(identity)
        return at is not None and time.monotonic() - at < self.seconds
