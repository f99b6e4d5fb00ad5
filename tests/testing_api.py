"""A plugin with routes that exercise the daemon: slow, failing, batched, typed, counted.

Daemon tests load it with ``HEIRLOOM_PLUGINS=tests.testing_api`` (no packaging needed).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import datetime
import enum
import functools
import itertools
import math
import os
import threading
import time
from typing import Any, Literal

import attrs
import numpy

import heirloom
from heirloom.wire.protocol import INVALID_ARGUMENT, RequestError


def _count_ok(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    """Refuses 7 with a RequestError of its own, and fails on 13, 98 and 99 as a validator's bug would."""
    if value == 7:
        raise RequestError(INVALID_ARGUMENT, "7 is no count this route takes", "body.count")
    if value == 13:
        raise KeyError("unlucky")
    if value in (98, 99):  # not Exceptions: they killed the daemon (or a batcher thread)
        raise KeyboardInterrupt if value == 98 else SystemExit(3)


@attrs.define
class Typed:
    """A text and how many times to repeat it."""

    text: str
    count: int = attrs.field(default=1, validator=_count_ok)


class RaisingItems(dict):
    """A plugin's own map whose ``items()`` fails (msgpack and the walk saying where both call it)
    with ``raises``: a RuntimeError by default."""

    raises: BaseException = RuntimeError("this map cannot list its items")

    def items(self) -> Any:
        raise self.raises


class ExitingItems(RaisingItems):
    raises = SystemExit(3)  # not an Exception: it stopped the daemon


class LeakingItems(RaisingItems):
    raises = FileNotFoundError(2, "No such file or directory", "/srv/secret-data/rows.db")


def unpackable(body: str) -> Any:
    """A reply msgpack cannot pack (``int``: 2**64, ``surrogate``: a lone UTF-16 surrogate,
    as a FHIR string escape can give, ``set``: a Python set deep in a map, ``cycle``: a map
    holding itself, ``version``: a model version that is no text, ``longkey``: a set under a
    100,000-character key, ``strided``: a strided view, ``raising``: a map whose items()
    raises, ``tuplekey``: a map keyed by a tuple, which packs but no client can decode, ``datekey``: a map keyed
    by a date), or one
    it can (``fine``)."""
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    if body == "version":  # its header is packed after the body was: it took the I/O thread down
        return heirloom.Versioned("fine", object())
    if body == "longkey":  # a client's text echoed as a key: the path quotes its start
        return {"k" * 100_000: {"bad": {"set"}}}
    if body == "strided":  # msgpack raises BufferError for it: it killed the daemon
        return {"m": memoryview(bytearray(8))[::2]}
    if body == "tuplekey":  # msgpack packs it, as an array no client can decode as a key: counted OK
        return {"scores": {("a", 1): 0.5}}
    if body == "datekey":  # a key of no msgpack type: said with what to send, as a value's is
        return {"by_day": {datetime.date(2026, 1, 1): 3}}
    if body in ("raising", "exiting", "leaking"):  # from inside the packer: the first two killed the daemon
        return {"outer": {"raising": RaisingItems, "exiting": ExitingItems, "leaking": LeakingItems}[body](a=1)}
    return {"int": 2**64, "surrogate": "COVID \ud800", "set": {"labels": ["a", {"b"}]}, "cycle": cycle, "fine": 2**63}[
        body
    ]


@attrs.define
class Items:
    """A list of values; each one is a batch item."""

    values: list[Any]


#: What the ``counted`` route's items() returns for a body of one of these values: a plugin's bug each.
WRONG_COUNTS = {"list": [1, 2], "negative": -5, "nan": math.nan}


def _count(body: Items) -> Any:
    """The ``counted`` route's items(): the length of ``values``, but wrong, or raising, for the body naming it."""
    if body.values == ["raise"]:
        raise ZeroDivisionError("division by zero")
    return WRONG_COUNTS.get(str(body.values[0]), len(body.values)) if body.values else 1


@attrs.define
class Point:
    x: float
    y: float


@attrs.define
class Shape:
    """Points, each structured on its own: a large body takes a while to validate. Records
    the thread that validated it (never the daemon's I/O thread for a large one)."""

    points: list[Point]
    checked_on: str = attrs.field(init=False, factory=lambda: threading.current_thread().name)


@attrs.define
class Mixed:
    """Unions of plain values, and containers of them: a boolean is no integer in any of them."""

    tag: int | str = 0
    scale: float | None = None
    limit: int | None = None
    tags: list[int | str] = attrs.Factory(list)
    at: Point | None = None
    weights: dict[str, list[int]] = attrs.Factory(dict)
    names: set[str] = attrs.Factory(set)


@attrs.define
class Vector:
    """Float32 values sent as a buffer frame."""

    values: heirloom.Buffer


class LyingResults:
    """A plugin's own container whose ``len`` says one result per input and whose iteration
    yields one fewer (it crashed the daemon) or never ends (it wedged the daemon)."""

    def __init__(self, items: list[Any], endless: bool = False):
        self.items = items
        self.endless = endless

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Any:
        return itertools.repeat(self.items[0]) if self.endless else iter(self.items[:-1])


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_LIBC.malloc.restype, _LIBC.malloc.argtypes, _LIBC.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
#: The last piece of each fragment call, never freed: it pins the heap below it.
_PINNED: list[int] = []
#: What ``hold`` keeps until the process ends.
_HELD: list[bytearray] = []


def slow_inline(ms: int) -> None:
    """Sleeps ``abs(ms)`` milliseconds on the I/O thread (an author's mistake), then raises if ``ms`` is negative."""
    time.sleep(abs(ms) / 1000)
    if ms < 0:
        raise RuntimeError("slept on the I/O thread, then failed")


def fragment(mib: int) -> int:
    """Takes ``mib`` MiB of the C heap in 64 KiB pieces (under glibc's mmap threshold), touches them,
    then frees all but the last: what a model's tokenizer leaves behind, freed but resident until
    the heap is trimmed (the piece kept pins its top). Answers how many pieces it freed."""
    pieces = [_LIBC.malloc(64 << 10) for _ in range(mib * 16)]
    for piece in pieces:
        ctypes.memset(piece, 1, 64 << 10)
    _PINNED.append(pieces.pop())
    for piece in pieces:
        _LIBC.free(piece)
    return len(pieces)


def hold(mib: int) -> int:
    """Holds ``mib`` MiB more of touched memory until the process ends (none of it given back by gc or a trim):
    a daemon within its budget at start, then past it. Answers the MiB held."""
    _HELD.extend(bytearray(b"\x01") * (1 << 20) for _ in range(mib))
    return len(_HELD)


def _note_the_exit(path: str) -> None:
    with open(path, "a") as noted:
        noted.write(f"{os.getpid()}\n")


@attrs.define
class Node:
    """A tree: a route's input class that holds itself (checker h336 F2)."""

    name: str
    children: list[Node] = attrs.Factory(list)


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Rank(enum.IntEnum):
    low = 1
    high = 2


@attrs.define
class Kinds:
    """Field types ``_routes`` states as JSON Schema says them (checker h336 F4)."""

    mode: Literal["fast", "slow"] = "fast"
    color: Color = Color.red
    rank: Rank | None = None
    pairs: dict[str, list[tuple[int, float]]] = attrs.Factory(dict)
    tags: frozenset[str] = frozenset()
    counts: tuple[int, ...] = ()


@attrs.define
class When:
    at: datetime.datetime  # no request body carries one (checker h336 F3)


@functools.cache
def chain(length: int) -> type:
    """An input class nesting ``length`` classes, each the next's ``c`` (its schema nests 2 * length + 1 levels):
    ``{"c": {"c": {"v": 1}}}`` for 3 (checker h336 F1)."""
    inner = attrs.make_class("Link0", {"v": attrs.field(type=int, default=0)})
    for level in range(1, length):
        inner = attrs.make_class(f"Link{level}", {"c": attrs.field(type=inner)})
    return inner


@attrs.define
class TestingApi(heirloom.Api):
    max_batch: int = 8
    max_wait_ms: float = 20.0
    #: Milliseconds one batch of ``batched`` takes, and more per item in it.
    batch_ms: float = 5.0
    item_ms: float = 0.0
    #: Milliseconds start takes (a slow model load), and stop (flushing what it holds).
    start_ms: float = 0.0
    stop_ms: float = 0.0
    #: An author's mistake: ``pid`` twice among the routes.
    pid_twice: bool = False
    #: Another, in one more route: "hook" (a handler by a name of heirloom.Api's, here evaluate),
    #: "input" (not an attrs class), "input_instance"/"output_instance" (an attrs instance, not its class),
    #: "payload" (max_payload = -1), "wait" (max_wait_ms NaN) or "when" (an input field no body carries).
    flaw: str = ""
    #: A route ``deep`` taking ``chain(nest)``; routes ``tree`` taking a Node (a class holding itself) and ``kinds``.
    nest: int = 0
    rich: bool = False
    #: A file each process that started this api appends its pid to when it exits (an atexit
    #: handler, as a plugin's own), after a thread that is no daemon thread has ended.
    at_exit: str = ""
    #: An author's mistake: start a thread that is no daemon thread and never ends.
    leak_thread: bool = False

    def start(self, ctx):
        super().start(ctx)
        time.sleep(self.start_ms / 1000)
        if self.leak_thread:
            threading.Thread(target=threading.Event().wait, name="a plugin's endless thread", daemon=False).start()
        if self.at_exit:
            threading.Thread(target=time.sleep, args=(0.5,), name="a plugin's own").start()
            atexit.register(_note_the_exit, self.at_exit)
        self.writes = 0
        self.ran: list[Any] = []
        self.lock = threading.Lock()
        self.log = heirloom.AppendLog(heirloom.log_path("records", ctx.project, ctx.name), quota=ctx.log_quota())

    def stop(self):
        time.sleep(self.stop_ms / 1000)
        self.log.close()

    def routes(self):
        return [
            heirloom.Route("slow", handler=self.slow, description="Sleeps body.ms milliseconds."),
            heirloom.Route("boom", handler=self.boom),
            heirloom.Route("typed", handler=self.typed, input=Typed, inline=True, max_payload=4096),
            heirloom.Route("write", handler=self.write),
            heirloom.Route("record", handler=self.log.append, description="Appends body (a map) to a durable log."),
            heirloom.Route("ran", handler=lambda body: self.ran, inline=True, description="Marks t.slow has run."),
            heirloom.Route(
                "slow_inline",
                handler=slow_inline,
                inline=True,
                description="Sleeps abs(body) ms on the I/O thread (an author's mistake), then raises if body < 0.",
            ),
            heirloom.Route("pid", handler=lambda body: os.getpid()),
            heirloom.Route("fragment", handler=fragment, description="body MiB of C heap, freed but resident."),
            heirloom.Route("hold", handler=hold, description="body MiB more held until the process ends."),
            heirloom.Route("bulk", handler=lambda body: bytes(body), description="body (a count) zero bytes."),
            heirloom.Route(
                "buffers",
                handler=lambda body: [heirloom.Buffer("uint8", (0,), b"") for _ in range(body)],
                description="body (a count) empty buffers: a large reply header, a spec each.",
            ),
            heirloom.Route(
                "environment",
                handler=lambda body: sorted(name for name in os.environ if name.startswith("HEIRLOOM_")),
                inline=True,
                description="The HEIRLOOM_ variables a subprocess this process starts would inherit.",
            ),
            *[heirloom.Route("pid", handler=lambda body: 0)] * self.pid_twice,
            *self._flawed(),
            *[heirloom.Route("deep", handler=repr, input=chain(self.nest), description="Deep.")] * bool(self.nest),
            *[heirloom.Route("tree", handler=attrs.asdict, input=Node, output=Node, description="Tree.")] * self.rich,
            *[heirloom.Route("kinds", handler=repr, input=Kinds, output=Kinds, description="Kinds.")] * self.rich,
            heirloom.Route("nobody", handler=lambda body: "asked", input=type(None), description="Takes no body."),
            heirloom.Route(
                "nobody_batched",
                handler=lambda bodies: ["asked"] * len(bodies),
                input=type(None),
                batched=True,
                description="Takes no body, batched.",
            ),
            heirloom.Route("unpackable", handler=unpackable, inline=True, description="What msgpack cannot pack."),
            heirloom.Route("unpackable_off_loop", handler=unpackable),
            heirloom.Route(
                "batched",
                handler=self.batched,
                input=Items,
                batched=True,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                items=lambda body: len(body.values),
            ),
            heirloom.Route(
                "counted",
                handler=lambda bodies: [len(body.values) for body in bodies],
                input=Items,
                batched=True,
                items=_count,
                output=list[Items],  # documentation only: accepted as declared
                description="How many values; its items() is wrong for a body naming a bug.",
            ),
            heirloom.Route(
                "total",
                handler=lambda body: float(numpy.frombuffer(body.values.data, "<f4").sum()),
                input=Vector,
                inline=True,
            ),
            heirloom.Route(
                "mixed",
                handler=lambda body: {key: repr(value) for key, value in attrs.asdict(body, recurse=False).items()},
                input=Mixed,
                inline=True,
                description="Each field of a Mixed body as Python writes it.",
            ),
            heirloom.Route(
                "shape",
                handler=lambda shapes: [{"points": len(s.points), "checked_on": s.checked_on} for s in shapes],
                input=Shape,
                batched=True,
            ),
        ]

    def _flawed(self) -> list[heirloom.Route]:
        flawed = {
            "hook": heirloom.Route("evaluate", handler=self.evaluate),
            "input": heirloom.Route("cfg", handler=len, input=int),
            "input_instance": heirloom.Route("cfg", handler=len, input=Items([1])),  # attrs.has took it
            "output_instance": heirloom.Route("cfg", handler=len, output=Items([1])),  # every _routes failed
            "payload": heirloom.Route("cfg", handler=len, max_payload=-1),
            "wait": heirloom.Route("cfg", handler=len, batched=True, max_wait_ms=math.nan),
            "long_wait": heirloom.Route("cfg", handler=len, batched=True, max_wait_ms=1e300),
            "huge_payload": heirloom.Route("cfg", handler=len, max_payload=2**70),
            "when": heirloom.Route("cfg", handler=len, input=When),
        }
        return [flawed[self.flaw]] if self.flaw else []

    def slow(self, body: dict) -> dict:
        if "mark" in body:
            self.ran.append(body["mark"])
        time.sleep(body.get("ms", 100) / 1000)
        return {"slept_ms": body.get("ms", 100)}

    def boom(self, body: Any) -> Any:
        if body == "open":  # a handler's own file: its path is the server's, not the client's
            return open("/srv/secret dir/weights.bin")  # it never opens (a space: masked whole)
        if body == "exit":  # not an Exception: no reply was sent, and the daemon did not stop at SIGTERM
            raise SystemExit(2)
        if isinstance(body, str) and body.startswith("product:"):  # a client's text quoted in an error
            raise RuntimeError(f"unknown product '{body.removeprefix('product:')}'")
        if isinstance(body, str) and body.startswith("varied:"):  # a failure quoting each request's data
            raise ValueError(f"cannot read {body.removeprefix('varied:')}")
        if isinstance(body, str) and body.startswith("elsewhere:"):  # the same words, raised at another line
            raise ValueError(f"cannot read {body.removeprefix('elsewhere:')}")
        raise RuntimeError("the boom route always fails")

    def typed(self, body: Typed) -> str:
        return body.text * body.count

    def write(self, body: Any) -> Any:
        """Counts writes; ``{"pad": n}`` adds n bytes to the reply."""
        with self.lock:
            self.writes += 1
            if isinstance(body, dict) and "pad" in body:
                return {"write": self.writes, "pad": b"x" * body["pad"]}
            return self.writes

    def batched(self, inputs: list[Items]) -> list[Any]:
        if any("explode" in item.values for item in inputs):
            raise RuntimeError("a poisoned item broke the batch")
        size = sum(len(item.values) for item in inputs)
        time.sleep((self.batch_ms + self.item_ms * size) / 1000)
        if any("dict" in item.values for item in inputs):  # an author's bugs: not a list, or too few results
            return {"batch": size}
        if any("short" in item.values for item in inputs):
            return [{"batch": size}]
        if any("array" in item.values for item in inputs):  # numpy's: one float per input, as a list would
            return numpy.full(len(inputs), float(size))
        if any("ints" in item.values for item in inputs):  # numpy's int64, which msgpack cannot pack
            return numpy.full(len(inputs), size)
        if any("lying" in item.values or "endless" in item.values for item in inputs):
            return LyingResults([{"batch": size}] * len(inputs), endless=any("endless" in i.values for i in inputs))
        return [
            RequestError(INVALID_ARGUMENT, "bad value", "body.values") if "bad" in item.values else {"batch": size}
            for item in inputs
        ]


@attrs.define
class TorchProbe(heirloom.Api):
    """Reports what the resource manager set up for a torch component: threads and device."""

    uses_torch = True

    def start(self, ctx):
        super().start(ctx)
        self.device = ctx.resources.device_for(ctx.name)

    def routes(self):
        return [heirloom.Route("probe", handler=self.probe)]

    def probe(self, body: Any) -> dict:
        import torch

        return {"threads": torch.get_num_threads(), "device": self.device}


@attrs.define
class FaultyResources(heirloom.Resources):
    """A third-party resource manager that misbehaves where ``fail`` says: raising in, or
    answering the wrong type from, one of its methods."""

    fail: str = ""
    #: with ``fail = "ready_late"``: ready() raises once this file exists (the daemon up and ready by then)
    trigger: str = ""

    def start(self, ctx: Any) -> None:
        super().start(ctx)
        if self.fail == "start":
            raise RuntimeError("deliberate failure in start")

    def ready(self) -> bool:
        if self.fail == "ready" or (self.fail == "ready_late" and os.path.exists(self.trigger)):
            raise RuntimeError("deliberate failure in ready")
        return True

    def check_profile(self, profile: Any) -> Any:
        return "not a list" if self.fail == "check_profile_type" else []

    def prepare(self, name: str, component: Any) -> None:
        if self.fail == "prepare":
            raise RuntimeError("deliberate failure in prepare")

    def device_for(self, name: str) -> Any:
        # a GPU no host of these tests has (the docs' table once let a manager answer it unchecked), or no device at all
        return {"absent_device": "cuda:99", "device_type": "gpu0"}.get(self.fail, "cpu")

    def admit(self) -> Any:
        if self.fail == "admit":
            raise RuntimeError("deliberate failure in admit")
        return "yes" if self.fail == "admit_type" else True

    def release(self) -> None:
        if self.fail == "release":
            raise RuntimeError("deliberate failure in release")

    def usage(self) -> Any:
        if self.fail == "slow_usage":
            time.sleep(0.4)  # querying a GPU or a cgroup, slowly
        if self.fail == "usage":
            raise RuntimeError("deliberate failure in usage")
        if self.fail == "usage_deep":  # one process serves it; a broker would refuse the heartbeat carrying it
            return functools.reduce(lambda inner, _: {"in": inner}, range(70), {"fine": True})
        if self.fail == "usage_memory":  # sizes /metrics reads as MiB, of no number
            return {"resident_mb": "lots", "memory_budget_mb": math.nan}
        return {"unencodable": object()} if self.fail == "usage_type" else {"fine": True}

    def daemon_in_flight_limit(self) -> Any:
        if self.fail == "limit":
            raise RuntimeError("deliberate failure in daemon_in_flight_limit")
        return "lots" if self.fail == "limit_type" else None

    def client_limits(self) -> Any:
        return {"requests_per_s": 5} if self.fail == "client_limits_type" else None

    def storage_quota_mb(self, area: str) -> Any:
        if self.fail == "quota" and area == "artifacts":  # the logs' quota is asked at start: this is later
            raise RuntimeError("deliberate failure in storage_quota_mb")
        return "100" if self.fail == "quota_type" and area == "artifacts" else None

    def run_fit(self, task: Any) -> Any:
        if self.fail == "run_fit":
            raise RuntimeError("deliberate failure in run_fit")
        if self.fail == "run_fit_here":  # fits where the manager trains: here, in the task it was given
            return task()
        return {"weights": [1.0]} if self.fail == "run_fit_type" else None

    def retention(self) -> Any:
        if self.fail == "retention":
            raise RuntimeError("deliberate failure in retention")
        return -1 if self.fail == "retention_value" else None


@attrs.define
class PlacingResources(FaultyResources):
    """FaultyResources placing ``serve``'s workers itself (so every serve of it has a broker), or failing to."""

    def place_workers(self, argv: list[str]) -> Any:
        if self.fail == "place_workers":
            raise RuntimeError("deliberate failure in place_workers")
        return 5 if self.fail == "place_workers_type" else None


@heirloom.hookimpl
def heirloom_register_resource_managers(register):
    register("faulty", FaultyResources)
    register("faulty-placing", PlacingResources)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("testing", TestingApi)
    register("torch-probe", TorchProbe)
