"""heirloom's pytest plugin, for plugin authors (entry point ``pytest11``: active once heirloom
is installed, as pytest-django's or pytest-asyncio's are).

Fixtures:

- ``heirloom_home``: a temporary ``HEIRLOOM_HOME`` (store, feedback logs, plugin catalog).
- ``heirloom_kernel``: ``heirloom_kernel(*plugins, entry_points=True)`` builds an isolated
  :class:`heirloom.Kernel` with your plugin modules registered directly (no install).
- ``heirloom_store``: a temporary artifact store, also exported as ``HEIRLOOM_STORE``.
- ``heirloom_daemon``: ``heirloom_daemon(profile, *serve_args, plugins=(...))`` runs
  ``heirloom serve`` in a subprocess and returns a :class:`RunningDaemon` with a connected
  ``client``; it is stopped with SIGTERM at teardown and must exit 0.

Contract checks, each a plain function that raises ``AssertionError`` naming the broken
rule (the built-in plugins' tests run them too):

- :func:`check_source`: records stream, the same on every call; the fingerprint is stable.
- :func:`check_model`: no weights means not ready; fit, predict one output per input (one a reply can carry), evaluate
  returns a Report; the state survives the store, predicts the same and warm-starts a fit.
- :func:`check_api`: on a real daemon loop and socket, every route documented, bad bodies refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import pytest

from heirloom.core.components import REF_KEY, Api, Model, Report, Source, State
from heirloom.core.errors import HeirloomError
from heirloom.core.kernel import Kernel
from heirloom.core.settings import ServerSettings
from heirloom.core.system import System
from heirloom.profile_toml import to_toml as to_toml  # heirloom.testing.to_toml, for tests that write profiles
from heirloom.store.artifacts import ArtifactStore
from heirloom.testing_diffs import first_difference
from heirloom.testing_systems import (
    CHECKED,
    RECORDS,
    fresh_predictions,
    importable,
    plugin_modules,
    records_tables,
    stored_once,
    system_of,
)
from heirloom.wire.client import Client, RemoteError
from heirloom.wire.routing import api_routes
from heirloom.wire.sendable import unpackable_at
from heirloom.wire.server import Server

#: The component's method a contract check is calling, which an error it raises names.
_STEP: contextvars.ContextVar[str] = contextvars.ContextVar("heirloom_check_step", default="")
P = ParamSpec("P")
R = TypeVar("R")

#: A fresh process's round trip that predicts otherwise (h374 F1: the same process's fresh instance saw it).
FORGOTTEN = (
    "a fresh process that load(state)s the version, as a daemon and heirloom eval do, predicts otherwise: fit "
    "keeps something outside the instance (a class attribute, a module global, a cache) that state() leaves out, "
    "or predict depends on the process (the order of a set of strings, which PYTHONHASHSEED varies; a setting the "
    "test changed)"
)
#: Bodies no attrs input class accepts: not a map, and a map with a key no class has.
BAD_BODIES: tuple[Any, ...] = (["not", "a", "map"], {"heirloom_check_unknown_key": 1})
NO_TRAINED_MODEL = (
    "check_api serves no trained model (its models are built, not fitted or loaded, and it takes no serve_models): "
    "test a route over a model with heirloom_daemon after heirloom train (docs/PLUGINS.md, 'Testing your plugin')"
)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def heirloom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary ``HEIRLOOM_HOME``, so a test never touches the user's store or logs."""
    home = tmp_path / "heirloom-home"
    monkeypatch.setenv("HEIRLOOM_HOME", str(home))
    for variable in ("HEIRLOOM_STORE", "HEIRLOOM_DISABLE_PLUGINS", "HEIRLOOM_LOAD_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    return home


@pytest.fixture
def heirloom_kernel(heirloom_home: Path) -> Callable[..., Kernel]:
    """``heirloom_kernel(my_plugin, entry_points=True)``: an isolated Kernel with these plugin
    modules (objects with hookimpls, or module names to import) registered;
    ``entry_points=False`` ignores installed plugins, the ``local`` resource manager too."""

    def build(*plugins: Any, entry_points: bool = True) -> Kernel:
        return Kernel(plugins=plugin_modules(plugins), use_entry_points=entry_points)

    return build


@pytest.fixture
def heirloom_store(heirloom_home: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    """An empty artifact store; ``HEIRLOOM_STORE`` points at it for commands and daemons."""
    path = heirloom_home / "store"
    monkeypatch.setenv("HEIRLOOM_STORE", str(path))
    return ArtifactStore(path)


@attrs.define
class RunningDaemon:
    """``heirloom serve`` in a subprocess, with a connected client."""

    process: subprocess.Popen[bytes]
    address: str
    client: Client
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a drain), then the exit code; killed if it outlives ``timeout``."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()  # -SIGKILL


@pytest.fixture
def heirloom_daemon(tmp_path: Path, heirloom_home: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """``heirloom_daemon(profile, *serve_args, plugins=(), env=None, ready=True, timeout=60)``.

    ``plugins`` are importable module names loaded without packaging (``HEIRLOOM_PLUGINS``);
    ``ready=False`` waits for ``_health`` only (a profile whose models are not trained yet).
    It listens on ``ipc://{tmp_path}/heirloom-N.sock`` (``.address``, what ``.client`` uses), passed as
    ``--bind``, so a profile's ``[server] bind`` is not used; a ``--bind`` in ``serve_args`` adds an endpoint.
    Every daemon started is stopped at teardown, and the test errors if one exits non-zero."""
    started: list[RunningDaemon] = []
    counter = itertools.count()

    def start(
        profile: str | Path,
        *serve_args: str,
        plugins: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ready: bool = True,
        timeout: float = 60.0,
    ) -> RunningDaemon:
        index = next(counter)
        address = f"ipc://{tmp_path}/heirloom-{index}.sock"
        log_path = tmp_path / f"heirloom-daemon-{index}.log"
        environment = {**os.environ, **(env or {})}
        if plugins:
            environment["HEIRLOOM_PLUGINS"] = ",".join([*plugins, environment.get("HEIRLOOM_PLUGINS", "")]).strip(",")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "heirloom", "serve", str(profile), "--bind", address, *serve_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        daemon = RunningDaemon(process, address, Client(address, timeout=10), log_path)
        started.append(daemon)
        _wait_until_up(daemon, "_ready" if ready else "_health", timeout)
        return daemon

    yield start
    failures = [(d, code) for d in started if (code := d.stop()) != 0]
    if failures:
        pytest.fail("\n".join(f"daemon exited {code}:\n{d.log()}" for d, code in failures), pytrace=False)


def _wait_until_up(daemon: RunningDaemon, route: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise AssertionError(f"heirloom serve exited {daemon.process.returncode}:\n{daemon.log()}")
        with contextlib.suppress(RemoteError):
            reply = daemon.client.call(route, timeout=1.0)
            if route == "_health" or reply.get("ready"):
                return
            models = daemon.client.call("_stats", timeout=1.0).get("models", {})
            unserved = [f"{name}: {m['error']}" for name, m in models.items() if m["version"] is None and m["error"]]
            if unserved:  # nothing in the store to serve: it would wait out the timeout
                raise AssertionError(
                    f"heirloom serve cannot get ready ({'; '.join(unserved)}): train the profile first, "
                    f"or start it with ready=False:\n{daemon.log()}"
                )
        time.sleep(0.1)
    raise AssertionError(f"heirloom serve did not answer {route} within {timeout:g}s:\n{daemon.log()}")


def _contract_check(check: Callable[P, R]) -> Callable[P, R]:
    """``check`` raising only ``AssertionError``, as PLUGINS.md says: what the component (or the profile built
    from its config) raised otherwise (a HeirloomError, a KeyError) becomes one naming it, chained to it."""

    @functools.wraps(check)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _STEP.set("")
        try:
            return check(*args, **kwargs)
        except AssertionError:
            raise
        except Exception as exc:
            said = exc if isinstance(exc, HeirloomError) else f"{type(exc).__name__}: {exc}"
            step = f"{_STEP.get()} raised " if _STEP.get() else ""  # a warm start's KeyError read as fit's (h374 F2)
            raise AssertionError(f"{check.__name__}: {step}{said}") from exc
        finally:
            _STEP.reset(token)

    return checked


# -- sources --------------------------------------------------------------------------------
@_contract_check
def check_source(
    cls: type[Source],
    config: dict[str, Any] | None = None,
    *,
    tables: dict[str, Any] | None = None,
    plugins: Sequence[Any] = (),
) -> dict[str, int]:
    """Check the source contract for ``cls`` built from ``config`` (its profile table).

    ``tables`` are other profile tables it needs (the sources a union reads), of types that
    installed plugins or ``plugins`` register. Returns the number of records per split
    (``all`` for ``records(None)``)."""
    assert issubclass(cls, Source) and attrs.has(cls), f"{cls!r} must be an attrs class subclassing heirloom.Source"
    counts: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    with system_of(cls, config, tables, plugins) as system:
        source = system.component(CHECKED, "source")
        _STEP.set(f"{cls.__name__}.fingerprint()")
        fingerprint = source.fingerprint()
        assert isinstance(fingerprint, str) and fingerprint, "fingerprint() must return a non-empty str"
        for split in [*source.splits(), None]:
            _STEP.set(f"{cls.__name__}.records({split!r})")
            stream = source.records(split)
            assert isinstance(stream, Iterator), (
                f"records({split!r}) returned a {type(stream).__name__}: sources stream (yield) their records"
            )
            first, second = list(stream), list(source.records(split))
            assert first == second, f"records({split!r}) gave other records the second time: a source must replay"
            for record in first:
                assert isinstance(record, dict) or attrs.has(type(record)), (
                    f"records({split!r}) yielded a {type(record).__name__}: records are dicts or attrs objects"
                )
            counts[str(split) if split else "all"] = len(first)
            seen[str(split)] = {json.dumps(_plain(record), sort_keys=True, default=repr) for record in first}
        _check_apart(seen)
        _STEP.set(f"{cls.__name__}.fingerprint()")
        assert source.fingerprint() == fingerprint, "fingerprint() changed between two calls on the same data"
    with system_of(cls, config, tables, plugins) as system:
        again = system.component(CHECKED, "source").fingerprint()
        assert again == fingerprint, "a new instance on the same data and config has another fingerprint"
    return counts


def _plain(record: Any) -> Any:
    return attrs.asdict(record) if attrs.has(type(record)) else record


def _check_apart(seen: dict[str, set[str]]) -> None:
    """A held-out split whose every record is in another split: a source that ignores ``split``
    (its test records trained on, its scores not held out). Single shared records can be real
    duplicates in the data, so only a split repeated whole is refused."""
    for held, other in (("test", "train"), ("validation", "train"), ("test", "validation")):
        if seen.get(held) and other in seen:
            assert not seen[held] <= seen[other], (
                f"every record of records({held!r}) is also in records({other!r}): each split must hold its own "
                "records (validation carved from train, never from test), or the scores are not held out"
            )


# -- models ---------------------------------------------------------------------------------
@_contract_check
def check_model(
    cls: type[Model],
    config: dict[str, Any] | None,
    data: dict[str, Sequence[Any]] | Sequence[Any],
    *,
    inputs: Sequence[Any] | None = None,
    needs_weights: bool = True,
) -> Report:
    """Check the model contract for ``cls`` built from ``config``, on ``data``.

    ``data`` is ``{"train": records, "test": records}`` (or one list for both); the model's
    source references that ``config`` leaves unset (its ``data`` field) point at them.
    ``inputs`` is what ``predict`` gets (default: the test records). ``needs_weights=False``
    for a model that is ready without training. Returns the evaluation report."""
    assert issubclass(cls, Model) and attrs.has(cls), f"{cls!r} must be an attrs class subclassing heirloom.Model"
    splits = dict(data) if isinstance(data, dict) else {"train": list(data), "test": list(data)}
    token = f"{id(splits):x}"
    RECORDS[token] = {name: list(records) for name, records in splits.items()}
    config = dict(config or {})
    for field in attrs.fields(cls):
        kind, many = field.metadata.get(REF_KEY, (None, False))
        if kind == "source" and field.name not in config:
            config[field.name] = ["data"] if many else "data"
    tables = records_tables(token)
    batch = list(inputs) if inputs is not None else list(RECORDS[token]["test"])
    try:
        with system_of(cls, config, tables) as system:
            model = system.component(CHECKED, "model")
            _STEP.set(f"{cls.__name__}.ready() before fit")
            if needs_weights:
                assert not model.ready(), (
                    "ready() is True before fit or load: a served model gets its weights from the store, and "
                    "_ready must stay false while the store has none (pass needs_weights=False if it needs none)"
                )
            records = system.component("data", "source")
            _STEP.set(f"{cls.__name__}.fit(train records)")
            model.fit(records.records("train"))
            _STEP.set(f"{cls.__name__}.ready() after fit")
            assert model.ready(), "ready() is False after fit"
            _STEP.set(f"{cls.__name__}.predict(inputs)")
            outputs = model.predict(batch)
            assert len(outputs) == len(batch), f"predict gave {len(outputs)} outputs for {len(batch)} inputs"
            unsent = unpackable_at(outputs).replace("reply", "predict(inputs)", 1)  # the daemon's own check
            assert unsent == "predict(inputs)", (
                f"{unsent} is no value a reply can carry (msgpack): an api sending it answers INTERNAL 'reply not "
                "encodable'; return plain Python values (numpy's float32: .item(); an array: .tolist())"
            )
            _STEP.set(f"{cls.__name__}.evaluate(test records)")
            report = model.evaluate(records.records("test"))
            assert isinstance(report, Report), f"evaluate returned a {type(report).__name__}, not heirloom.Report"
            assert isinstance(report.text, str), "Report.text must be a str"
            json.dumps(report.metrics)  # stored with the version: must be JSON
            _STEP.set(f"{cls.__name__}.state()")
            state = model.state()
            assert isinstance(state, State), f"state() returned a {type(state).__name__}, not heirloom.State"
        _STEP.set(f"the artifact store, writing and reading what {cls.__name__}.state() returned,")
        with stored_once(state, cls.state_format) as (stored, folder, ref), system_of(cls, config, tables) as system:
            fresh = system.component(CHECKED, "model")
            _STEP.set(f"{cls.__name__}.load(state) on a fresh instance, then predict(inputs)")
            fresh.load(stored)
            _STEP.set(f"{cls.__name__}.ready() after load(state), then predict(inputs)")
            assert fresh.ready(), "ready() is False after load(state)"
            assert (again := fresh.predict(batch)) == outputs, first_difference(outputs, again)
            _STEP.set(f"{cls.__name__}.load(state) in a fresh process, as a daemon loads it, then predict(inputs)")
            answers = fresh_predictions(cls, config, RECORDS[token], folder, ref, batch) if importable(cls) else None
            assert answers in (None, outputs), f"{FORGOTTEN}: {first_difference(outputs, answers)}"
        with system_of(cls, config, tables) as system:
            child = system.component(CHECKED, "model")
            _STEP.set(f"{cls.__name__}.fit(train records, parent=its own state): a warm start")
            child.fit(system.component("data", "source").records("train"), parent=stored)
            assert len(child.predict(batch)) == len(batch), "a warm start from its own state does not predict"
    finally:
        RECORDS.pop(token, None)
    return report


# -- apis -----------------------------------------------------------------------------------
@_contract_check
def check_api(
    cls: type[Api],
    config: dict[str, Any] | None = None,
    *,
    tables: dict[str, Any] | None = None,
    bad_inputs: dict[str, Iterable[Any]] | None = None,
    good_inputs: dict[str, Iterable[Any]] | None = None,
    plugins: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """Check the api contract for ``cls`` served by a real daemon loop on an ipc socket.

    ``tables`` are the other profile tables it needs (``{"models": {"m": {...}}}``), of types
    that installed plugins or ``plugins`` (modules or module names) register.
    ``bad_inputs`` maps a route (without the api prefix) to bodies it must refuse with
    INVALID_ARGUMENT, for routes that validate in their handler; ``good_inputs`` to bodies
    it must answer OK (a handler that raises, or returns what msgpack cannot send, fails
    the check; so does a resource manager in ``tables`` that refuses them). Returns ``_routes``."""
    assert issubclass(cls, Api) and attrs.has(cls), f"{cls!r} must be an attrs class subclassing heirloom.Api"
    with system_of(cls, config, tables, plugins) as system:
        api_routes(f"apis.{CHECKED} ({cls.__name__})", system.component(CHECKED, "api"))  # its mistake, at once
        with _serving(system) as client:
            routes = [r for r in client.call("_routes")["routes"] if r["name"].startswith(f"{CHECKED}.")]
            assert routes, "routes() returned no route"
            for route in routes:
                undescribed = f"route {route['name']} has no description (Route(description=...))"
                assert route["description"].strip(), undescribed
                refused = list(BAD_BODIES) if route["input"].get("type") == "object" else []
                refused += list((bad_inputs or {}).get(route["name"].removeprefix(f"{CHECKED}."), []))
                for body in refused:
                    try:
                        reply = client.call(route["name"], body)
                    except RemoteError as error:
                        assert error.code == "INVALID_ARGUMENT", (
                            f"{route['name']} answered {error.code} to the bad body {body!r}: {error.message}"
                        )
                    else:
                        raise AssertionError(f"{route['name']} accepted the bad body {body!r} and answered {reply!r}")
            names = {route["name"].removeprefix(f"{CHECKED}.") for route in routes}
            for name, bodies in (good_inputs or {}).items():
                assert name in names, f"good_inputs names {name!r}, not a route of the api ({', '.join(sorted(names))})"
                for body in bodies:
                    try:
                        client.call(f"{CHECKED}.{name}", body)
                    except RemoteError as error:
                        refusal = f"{error.code} {error.message}"
                        if error.code == "UNAVAILABLE" and (tables or {}).get("models"):  # built, never fitted
                            refusal += f"; {NO_TRAINED_MODEL}"
                        raise AssertionError(f"{name} refused the good body {body!r}: {refusal}") from None
    return routes


@contextlib.contextmanager
def _serving(system: System) -> Iterator[Client]:
    """The daemon's own I/O loop serving ``system`` on a private ipc socket, and a client."""
    with tempfile.TemporaryDirectory(prefix="heirloom-check-") as folder:
        address = f"ipc://{folder}/check.sock"
        server = Server(system, ServerSettings(bind=[address], grace=5.0))
        server.start_system()
        loop = threading.Thread(target=server.run, name="heirloom-check-server", daemon=True)
        loop.start()
        try:
            with Client(address, timeout=10, retries=0) as client:
                server.wait_started(60)
                while loop.is_alive() and not server.mounted:  # the routes mount on the loop's next turn
                    time.sleep(0.01)
                assert server.mounted, f"check_api: the daemon failed to start: {server.start_error}"  # not a 10 s wait
                yield client
        finally:
            server.request_drain()
            loop.join(10)
            server.close()
