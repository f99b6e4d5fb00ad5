"""The four kinds of component and the contract each one honours.

A component type is an attrs class that subclasses one of the bases below; its attrs fields are its configuration schema
(a profile table is structured into it, extra keys forbidden). The kernel instantiates it from the profile, calls
``start(ctx)`` in dependency order and ``stop()`` in reverse. Runtime state lives in ordinary attributes set in
``start`` (the bases have no ``__slots__``, so slotted attrs subclasses can)."""

from __future__ import annotations

import abc
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from heirloom.core.errors import ForeignState

if TYPE_CHECKING:
    from heirloom.core.placement import WorkerPool
    from heirloom.core.quota import StorageQuota
    from heirloom.core.system import System

KINDS = ("source", "model", "api", "resources")
#: The profile table that holds each kind's components.
TABLES = {"source": "sources", "model": "models", "api": "apis", "resources": "resources"}
REF_KEY = "heirloom_ref"


def ref(kind: str, *, many: bool = False, **kwargs: Any) -> Any:
    """An attrs field naming another component of ``kind`` (a dependency edge).

    ``data: str = ref("source")`` makes ``data = "news"`` in the profile a reference to ``[sources.news]``: it must
    exist, it starts first, and ``ctx.get(self.data)`` returns it. ``many=True`` takes a list of names."""
    if kind not in KINDS:
        raise ValueError(f"ref kind must be one of {KINDS}, not {kind!r}")
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata[REF_KEY] = (kind, many)
    return attrs.field(metadata=metadata, **kwargs)


def at_least(low: float) -> Any:
    """An attrs validator: the value must be ``>= low`` (the message names the field, so
    ``profile check`` reports ``models.x.epochs: 'epochs' must be >= 1, got 0``)."""
    return _bounded(low, ">=", operator.ge)


def above(low: float) -> Any:
    """An attrs validator: the value must be ``> low`` (``'l2' must be > 0, got 0.0``)."""
    return _bounded(low, ">", operator.gt)


def _bounded(low: float, sign: str, holds: Callable[[Any, float], bool]) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not holds(value, low):  # NaN fails every comparison
            raise ValueError(f"'{attribute.name}' must be {sign} {low}, got {value!r}")
        if not math.isfinite(value):  # no setting means "infinite": a typo or an overflow
            raise ValueError(f"'{attribute.name}' must be a finite number, got {value!r}")

    check.bound, check.compare_op = low, sign  # type: ignore[attr-defined]  # read as attrs' ge/gt are, for _routes
    return check


def references(component: Any) -> list[tuple[str, str, str]]:
    """``(field, kind, target)`` for every reference field set on a component instance."""
    values = {f.name: getattr(component, f.name) for f in attrs.fields(type(component))}
    return declared_references(type(component), values)


def declared_references(cls: type, config: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``(field, kind, target)`` of each reference field of ``cls`` that ``config`` (a table) sets."""
    found = []
    for field in attrs.fields(cls):
        if (spec := field.metadata.get(REF_KEY)) is None or (value := config.get(field.name)) is None:
            continue
        kind, many = spec
        for target in value if many and isinstance(value, list | tuple) else [value]:
            found.append((field.name, kind, target))
    return found


@attrs.define
class Context:
    """What a component receives at start: its identity and access to its dependencies."""

    name: str
    kind: str
    system: System

    def get(self, name: str, kind: str | None = None) -> Any:
        """The started component ``name`` (one this component references)."""
        return self.system.component(name, kind)

    def model(self, name: str) -> ModelHandle:
        """A handle on model ``name``: read ``handle.current`` per request to get
        ``(model, version)``; it follows hot swaps when a served alias moves."""
        return self.system.model(name)

    @property
    def resources(self) -> Resources:
        return self.system.resources

    @property
    def project(self) -> str:
        return self.system.profile.project

    def log_quota(self) -> StorageQuota:
        """The project's quota on durable logs: pass it to every :class:`~heirloom.AppendLog`
        the component opens (``AppendLog(path, quota=ctx.log_quota())``)."""
        return self.system.log_quota


class Progress(Protocol):
    """Progress reporting for long work (fit, evaluate); the CLI renders it as a bar."""

    def start(self, description: str, total: float | None = None) -> None: ...
    def advance(self, amount: float = 1) -> None: ...
    def log(self, message: str) -> None: ...


class NullProgress:
    """Progress that goes nowhere: the default when nobody is watching."""

    def start(self, description: str, total: float | None = None) -> None: ...
    def advance(self, amount: float = 1) -> None: ...
    def log(self, message: str) -> None: ...


class Component(abc.ABC):
    """Lifecycle shared by every kind. ``ctx`` is set by ``start``."""

    kind: ClassVar[str]
    #: Set True if the component uses torch: the resource manager then applies thread and
    #: device settings to torch before ``start``. Kernels never import torch themselves.
    uses_torch: ClassVar[bool] = False

    def start(self, ctx: Context) -> None:
        """Acquire what the component needs (load weights, open files). Default: keep ctx."""
        self.ctx = ctx

    def stop(self) -> None:  # noqa: B027 - optional override, not abstract
        """Release everything ``start`` acquired. Must be safe after a partial start."""

    def ready(self) -> bool:
        """True once started and warm (the daemon's ``_ready`` asks every component)."""
        return True


class Source(Component):
    """Yields records for a split; reports a content fingerprint for lineage. The three roles of data (ITERATION.md):
    ``train`` is what a model fits on; ``validation`` (optional) is what ``heirloom train`` scores every version on so
    that ``heirloom models promote --if-better`` can choose between versions; ``test`` is only for reporting. A source
    offering ``validation`` lists it in :meth:`splits` and derives it deterministically from the training data (never
    from ``test``), so two versions trained on the same data are scored on the same validation records."""

    kind = "source"
    #: Where a reader learns how its validation split is made (``heirloom train``'s saturation warning says it);
    #: None: it says nothing (a union's split is its parts').
    validation_docs: ClassVar[str | None] = None

    @abc.abstractmethod
    def records(self, split: str | None = None) -> Iterator[Any]:
        """Stream records (dicts or attrs objects) of ``split`` (one of :meth:`splits`) or all: never hold a whole
        corpus in memory twice."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A content hash of the underlying data (changes when the data changes)."""

    def splits(self) -> list[str]:
        """The splits it yields: ``train``, ``test`` and, if carved out of its training data, ``validation``."""
        return ["train", "test"]

    def stats(self) -> dict[str, Any]:
        """Counts for ``heirloom data stats``; default: records per split."""
        return {"records": {split: sum(1 for _ in self.records(split)) for split in self.splits()}}


@attrs.frozen
class State:
    """A model's trained state: named tensors plus JSON-serialisable metadata."""

    tensors: dict[str, Any]
    metadata: dict[str, Any]

    def expect_format(self, expected: str, model_type: str, what: str = "state") -> None:
        """Refuse, as ``ForeignState``, a state whose ``format`` metadata is not ``expected``."""
        if (found := self.metadata.get("format")) != expected:
            raise ForeignState(f"the {what} was not written by {model_type} (format {found!r}, expected {expected!r})")


@attrs.frozen
class Report:
    """An evaluation: machine-readable metrics and a printable text report."""

    metrics: dict[str, Any]
    text: str


class Model(Component):
    """Something trained: fit, batched predict, evaluate, and a portable state."""

    kind = "model"
    #: Bump when older code would misread your ``state()``: a higher stored format is refused.
    state_format: ClassVar[int] = 1

    @abc.abstractmethod
    def fit(self, data: Iterable[Any], parent: State | None = None, progress: Progress | None = None) -> None:
        """Train on ``data``; ``parent`` is an inherited state to warm-start from.

        A model may also accept a keyword argument ``validation`` (an iterable of records): ``heirloom train`` then
        passes the source's validation split, which the model may use to choose hyper-parameters or stop early, but must
        never train on, because the same records score the fitted version for promotion."""

    @abc.abstractmethod
    def predict(self, batch: list[Any]) -> list[Any]:
        """One output per input, computed as a batch."""

    @abc.abstractmethod
    def evaluate(self, data: Iterable[Any]) -> Report:
        """Metrics on held-out ``data``."""

    @abc.abstractmethod
    def state(self) -> State:
        """The trained state, to store as an artifact."""

    @abc.abstractmethod
    def load(self, state: State) -> None:
        """Replace the current weights by ``state``."""


class ModelHandle:
    """The model an api should use now and the version it serves. A hot swap is one reference assignment, so a request
    that read ``current`` keeps the model it got; apis read ``(model, version)`` once per request or batch."""

    __slots__ = ("_current", "name", "unavailable")

    def __init__(self, name: str, model: Model, version: str | None = None):
        self.name = name
        self._current = (model, version)
        #: Why no stored version is served (None once one is), for the api's UNAVAILABLE reply.
        self.unavailable: str | None = None

    @property
    def current(self) -> tuple[Model, str | None]:
        """``(model, version)`` read together: use both from one read."""
        return self._current

    @property
    def model(self) -> Model:
        return self._current[0]

    @property
    def version(self) -> str | None:
        return self._current[1]

    def swap(self, model: Model, version: str | None) -> Model:
        """Serve ``model`` from now on; returns the model it replaces."""
        old, self._current, self.unavailable = self._current[0], (model, version), None
        return old


@attrs.frozen
class Route:
    """One callable method of an api, served as ``<api name>.<name>``.

    ``input`` is an attrs class the request body is structured into (unknown keys and wrong types are INVALID_ARGUMENT
    naming the field); None accepts any msgpack value, type(None) nil only. Batched routes get a list of inputs and
    return one result per input; ``items`` counts the items in one input so max batch is measured in items, not
    requests. Inline routes are cheap and run on the I/O loop; the others run on worker threads. ``admin`` routes answer
    only clients whose Curve key is an admin key (when the daemon uses Curve). ``model`` names the profile model the
    route serves one prediction per body from: HTTP gateways offer such a route as an Open Inference Protocol model.
    ``output`` is an attrs class describing one reply, or a union of them for a route that answers in more than one form
    (``A | B``; the one-body form first, which gateways read): documentation only, ``_routes`` shows its schema."""

    name: str
    handler: Callable[[Any], Any]
    input: type | None = None
    batched: bool = False
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_payload: int = 1 << 20
    inline: bool = False
    items: Callable[[Any], int] | None = None
    description: str = ""
    admin: bool = False
    model: str | None = None
    output: Any = None


#: The largest value of each route limit: beyond them a batcher could not wait (time_t overflowed
#: and the route never answered again) or msgpack not send the limit in ``_routes`` or a heartbeat.
ROUTE_LIMITS = {"max_batch": 1 << 20, "max_payload": 1 << 40, "max_wait_ms": 60_000}
#: The most MiB a size setting may name (1 PiB): past 2**53 bytes no exact float, past 2**63 no msgpack int (h386).
MIB_LIMIT = 1 << 30


def mebibytes(zero_allowed: bool = False) -> list[Any]:
    """attrs validators of a size in MiB: above 0 (at least 0 where ``zero_allowed``), at most ``MIB_LIMIT``."""
    return [at_least(0) if zero_allowed else above(0), attrs.validators.le(MIB_LIMIT)]


def route_limit(name: str) -> list[Any]:
    """attrs validators of an api setting that becomes its route's ``name`` limit: the bounds the route takes."""
    return [at_least(0) if name == "max_wait_ms" else above(0), attrs.validators.le(ROUTE_LIMITS[name])]


@attrs.frozen
class Versioned:
    """A route result tagged with the model version that produced it (sent in the reply)."""

    value: Any
    version: str | None


class Api(Component):
    """Declares the routes a daemon serves."""

    kind = "api"

    @abc.abstractmethod
    def routes(self) -> list[Route]:
        """The routes of this api (called after ``start``)."""

    def feedback_log(self, project: str, name: str) -> Path | None:
        """The :class:`heirloom.FeedbackLog` this api records corrections in, or None.

        ``heirloom feedback`` lists, exports and amends that log, so it is called on an api that was constructed but not
        started, with the profile's project and the api's component name. Default: the api records no feedback."""
        return None

    def check(self, models: Mapping[str, Model]) -> list[tuple[str, str]]:
        """``(field, problem)`` for every setting that cannot work with these trained models.

        ``models`` maps the names of the models this api references to instances holding their stored (served)
        version; a model without one is absent. ``heirloom profile check`` reports each with its file and key path."""
        return []

    def evaluate(self, data: Iterable[Any]) -> Report:
        """Optional: checks of the api's own on held-out ``data`` (the test split of its ``data`` source). An api type
        that implements it is evaluated by ``heirloom eval`` beside the models; one that does not is skipped."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation")


class Resources(Component):
    """Plans and enforces threads, device, memory and admission for a system."""

    kind = "resources"

    @abc.abstractmethod
    def prepare(self, name: str, component: Component) -> None:
        """Apply settings for ``component`` before it starts (e.g. torch threads)."""

    @abc.abstractmethod
    def device_for(self, name: str) -> str:
        """The device a component should compute on: ``cpu`` or ``cuda:N``."""

    @abc.abstractmethod
    def admit(self) -> bool:
        """Take an in-flight slot; False refuses (RESOURCE_EXHAUSTED), so does ResourceExhaustedError naming the limit.
        Like ``release``, from the daemon's I/O thread only, once per request of every route but the kernel's: cheap."""

    @abc.abstractmethod
    def release(self) -> None:
        """Return an in-flight slot taken by ``admit``."""

    @abc.abstractmethod
    def usage(self) -> dict[str, Any]:
        """Current usage for ``_stats``: threads, device, in-flight, memory."""

    def daemon_in_flight_limit(self) -> int | None:
        """Requests the whole daemon may have in flight, all worker processes together; None for no daemon-wide limit.
        Asked before ``start``, of the configured instance: with ``serve --workers N`` the broker enforces it (each
        worker's ``admit`` still applies inside that worker)."""
        return None

    def check_memory(self, what: str) -> None:
        """Raise :class:`ResourceExhaustedError` (saying how much is used and allowed) when
        ``what`` (e.g. ``training sentiment``) may not go on within the memory budget. The
        kernel calls it before ``fit`` starts and as training reports progress."""

    def storage_quota_mb(self, area: str) -> int | None:
        """The most MiB this system's project may keep in ``area``: ``"artifacts"`` (its versions' blobs in the artifact
        store) or ``"logs"`` (its durable logs, every :class:`~heirloom.AppendLog` opened with ``ctx.log_quota()``);
        None: no quota. The kernel enforces it: a write past it is refused whole."""
        return None

    def retention(self) -> int | None:
        """Retention: after each train keep the newest N versions of each of the project's
        models (aliased versions and ancestors of kept ones always stay); None keeps all."""
        return None

    def client_limits(self) -> ClientLimits | None:
        """Per-client rate limits the daemon enforces where clients connect (the broker with
        ``--workers N``); None: none. Asked before ``start``, of the configured instance."""
        return None

    def run_fit(self, task: Callable[[], State]) -> State | None:
        """Run ``task`` (picklable: it builds the model from the profile, fits it, and returns
        its state) where this manager trains, and return the state; the calling process alone
        then scores it and writes the store. None (the default): fit here, in this process."""
        return None

    def place_workers(self, argv: list[str]) -> WorkerPool | None:
        """Place ``serve``'s workers yourself: start a :class:`~heirloom.WorkerPool` whose workers each run ``python -m
        heirloom`` with ``argv`` (a ``worker`` command that connects to the broker), or return None to let the broker
        spawn local processes (``[server] workers``). Called once, in the broker's process, before ``start``."""
        return None


def manager_name(resources: Resources) -> str:
    """How errors and logs name a resource manager: ``resources (TYPE, plugin P (DIST V))`` as its start errors do."""
    cls = type(resources)
    marked = vars(cls).get("heirloom_registered")  # set by its plugin's host; a subclass of one is not that class
    return f"resources ({marked})" if marked else f"{cls.__module__}.{cls.__qualname__}"


@attrs.frozen
class ClientLimits:
    """Token buckets per client (its Curve key, else its connection): a request takes one request token and its size in
    byte tokens; a client out of either is refused RESOURCE_EXHAUSTED with ``retry_after_ms``. 0 turns a limit off."""

    #: Sustained requests per second, and bytes per second, one client may send.
    requests_per_s: float = 0.0
    bytes_per_s: float = 0.0
    #: Bucket size in seconds of the rate: how long a burst above it may last.
    burst_s: float = 1.0


KIND_BASES: dict[str, type[Component]] = {"source": Source, "model": Model, "api": Api, "resources": Resources}

PATH_KEY = "heirloom_path"


def path_field(*, must_exist: bool = True, **kwargs: Any) -> Any:
    """A path from the profile, relative to the file that set it; with ``must_exist`` a missing one
    is an error naming the key. TOML has no null: ``""`` unsets an optional one (default None)."""
    return attrs.field(metadata={**(kwargs.pop("metadata", None) or {}), PATH_KEY: must_exist}, **kwargs)


def path_fields(cls: type) -> dict[str, bool]:
    """``{field name: must_exist}`` for the :func:`path_field` fields of an attrs class."""
    return {f.name: f.metadata[PATH_KEY] for f in attrs.fields(cls) if PATH_KEY in f.metadata}
