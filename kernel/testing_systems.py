"""The systems ``heirloom.testing``'s checks build around one component, and ``check_model``'s round trip in a
fresh Python process, as a daemon loads a stored version.

A fresh instance in the test's own process sees what ``fit`` left outside the instance (a class attribute, a module
global, a cache), so a ``state()`` that forgets it passed ``check_model`` while ``heirloom eval`` and every daemon
answered otherwise (checker h374 F1). The child process imports the model class by its module and name, builds it
from the same config and records, loads the stored version from the same artifact store, and predicts the same
inputs; what it answers comes back pickled, between two processes of the same test run (nothing here is received
from a client).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.components import TABLES, Source, State
from heirloom.core.hookspecs import hookimpl
from heirloom.core.kernel import Kernel
from heirloom.core.system import System
from heirloom.profile_toml import to_toml
from heirloom.store.artifacts import ArtifactStore

#: The name the checked component has in the profile a check builds.
CHECKED = "checked"
#: The source type serving the records a check was given.
RECORDS_SOURCE = "heirloom-testing-records"
#: The records of each check in progress, by its token.
RECORDS: dict[str, dict[str, list[Any]]] = {}

#: How long the child may take: importing the plugin (torch), loading, predicting the check's inputs.
TIMEOUT_S = 300


@attrs.define
class RecordsSource(Source):
    """The records a check was given, served as a source (train/test)."""

    token: str

    def records(self, split: str | None = None) -> Iterator[Any]:
        splits = RECORDS[self.token]
        yield from (r for name in ([split] if split else list(splits)) for r in splits[name])

    def fingerprint(self) -> str:
        return f"records-{self.token}"


class UnderTest:
    """A plugin object registering the component types a check builds systems from."""

    def __init__(self, components: dict[str, type]):
        self.components = components

    def _register(self, kind: str, register: Callable[[str, type], None]) -> None:
        for name, cls in self.components.items():
            if cls.kind == kind:
                register(name, cls)

    @hookimpl
    def heirloom_register_sources(self, register: Callable[[str, type], None]) -> None:
        register(RECORDS_SOURCE, RecordsSource)
        self._register("source", register)

    @hookimpl
    def heirloom_register_models(self, register: Callable[[str, type], None]) -> None:
        self._register("model", register)

    @hookimpl
    def heirloom_register_apis(self, register: Callable[[str, type], None]) -> None:
        self._register("api", register)


def plugin_modules(plugins: Sequence[Any]) -> list[Any]:
    """Plugin objects: modules (or objects with hookimpls) as given, module names imported."""
    return [importlib.import_module(p) if isinstance(p, str) else p for p in plugins]


@contextlib.contextmanager
def system_of(
    cls: type, config: dict[str, Any] | None, tables: dict[str, Any] | None = None, plugins: Sequence[Any] = ()
) -> Iterator[System]:
    """A started system holding ``cls`` (as ``checked``), built from a real profile file;
    ``plugins`` (modules or module names) register the types ``tables`` use, uninstalled."""
    use = f"checked-{cls.kind}"
    profile: dict[str, Any] = {"project": "heirloom-check", **(tables or {})}
    profile.setdefault(TABLES[cls.kind], {})[CHECKED] = {"use": use, **(config or {})}
    with tempfile.TemporaryDirectory(prefix="heirloom-check-") as folder:
        path = Path(folder) / "check.toml"
        path.write_text(to_toml(profile))
        kernel = Kernel(plugins=[UnderTest({use: cls}), *plugin_modules(plugins)])
        with kernel.system(str(path)) as system:
            yield system


def records_tables(token: str) -> dict[str, Any]:
    """The profile tables of a source named ``data`` serving the records registered under ``token``."""
    return {"sources": {"data": {"use": RECORDS_SOURCE, "token": token}}}


def importable(cls: type) -> bool:
    """Whether a fresh process can import ``cls`` by its module and qualified name (not one defined in a function,
    nor in a script run as ``__main__``)."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return False
    try:
        return _named(cls.__module__, cls.__qualname__) is cls
    except (ImportError, AttributeError):
        return False


@contextlib.contextmanager
def stored_once(state: State, state_format: int) -> Iterator[tuple[State, Path, str]]:
    """``state`` written to a real artifact store (safetensors + JSON) and read back: ``(what was read, the store's
    folder, the version's ref)``, the store kept until the block ends, for a fresh process to load from too."""
    with tempfile.TemporaryDirectory(prefix="heirloom-check-store-") as folder:
        store = ArtifactStore(Path(folder))
        artifact = store.put("heirloom-check", CHECKED, state, model_type=CHECKED, state_format=state_format)
        yield store.load(artifact, reads=state_format), Path(folder), artifact.ref


def fresh_predictions(
    cls: type, config: dict[str, Any], records: dict[str, list[Any]], store: Path, ref: str, batch: list[Any]
) -> list[Any] | None:
    """What a fresh process's instance of ``cls`` predicts for ``batch`` once it loaded ``ref`` from the artifact
    store at ``store``, or None where none can be asked (records or inputs that do not pickle)."""
    job = {
        "module": cls.__module__,
        "name": cls.__qualname__,
        "config": config,
        "records": records,
        "store": str(store),
        "ref": ref,
        "reads": getattr(cls, "state_format", 1),
        "batch": batch,
    }
    with tempfile.TemporaryDirectory(prefix="heirloom-check-fresh-") as folder:
        asked, answered = Path(folder) / "job.pickle", Path(folder) / "answer.pickle"
        try:
            asked.write_bytes(pickle.dumps(job))
        except Exception:  # noqa: BLE001 - a lambda in a record: the round trip stays in this process
            return None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path or os.getcwd() for path in sys.path)}
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(asked), str(answered)],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:  # the class or its plugin failed to import, the system to start: its traceback
            said = done.stderr.strip().splitlines()[-20:]
            raise AssertionError("in a fresh process, as a daemon loads a version:\n" + "\n".join(said))
        answer = pickle.loads(answered.read_bytes())
        if "failed" in answer:  # named as the test's own process names a step that raised (v18 F3)
            raise AssertionError(
                f"check_model: {cls.__name__}.{answer['step']} in a fresh process, as a daemon loads the version, "
                f"{answer['failed']}"
            )
        return answer["answers"]


def _named(module: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _main(asked: str, answered: str) -> None:
    """The child: build the model as the check did, load the stored version, predict, pickle the answers."""
    job = pickle.loads(Path(asked).read_bytes())
    cls = _named(job["module"], job["name"])
    RECORDS["fresh"] = job["records"]
    tables = records_tables("fresh")
    with system_of(cls, job["config"], tables) as system:
        model, step = system.component(CHECKED, "model"), "load(state)"
        try:
            model.load(ArtifactStore(Path(job["store"])).load(job["ref"], reads=job["reads"]))
            step = "ready() after load(state)"
            ready = model.ready()
            step = "predict(inputs)" if ready else step
            answer: dict[str, Any] = {"answers": model.predict(job["batch"])} if ready else {"failed": "returned False"}
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - said by the test's process, with its step (v19 F3)
            answer = {"failed": f"raised {type(exc).__name__}: {exc}"}
        try:
            said = pickle.dumps({**answer, "step": step})
        except Exception as exc:  # noqa: BLE001 - answers the test's process could send, this one cannot pickle
            failed = f"returned what does not pickle ({type(exc).__name__}: {exc})"
            said = pickle.dumps({"failed": failed, "step": step})
        Path(answered).write_bytes(said)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
