"""Serving stored models: each model serves one stored version, swapped live when it moves.

A model table's ``serve`` key selects the version (a number or an alias; default the latest). Apis reach
models through a :class:`~heirloom.core.components.ModelHandle` and read ``(model, version)`` once per
request or batch, so a swap is a single reference assignment: requests that already hold the old model
finish on it. A new version is loaded into a fresh instance and checked ready before the swap; a failed
load keeps the old version, says why, and stops the instance it loaded. A watcher thread looks for moved
versions every ``reload_interval`` seconds, or at once when asked (the daemon's ``_reload``). The store is
anything with ``resolve(ref)`` and ``load(artifact)``: the core never imports it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from heirloom.core.components import Model, ModelHandle, State
from heirloom.core.errors import HeirloomError, RefError, described

if TYPE_CHECKING:
    from heirloom.core.schema import ComponentSpec

log = logging.getLogger("heirloom.serving")
#: Seconds ``stop`` waits for a refresh in progress (a model being loaded) to finish.
WATCHER_JOIN_TIMEOUT = 5.0


class StoredVersion(Protocol):
    """What serving reads of a stored version: its ref, content digest and model type."""

    ref: str
    digest: str
    model_type: str


class VersionStore(Protocol):
    """The part of an artifact store that serving uses (``heirloom.store.ArtifactStore``)."""

    def resolve(self, ref: str) -> StoredVersion:
        """The version a ref names; raises HeirloomError when it names nothing."""

    def load(self, ref: StoredVersion, reads: int | None = None) -> State:
        """The verified state of a version; HeirloomError if stored in a state format above ``reads``."""


Start = Callable[["ComponentSpec"], Model]
Vet = Callable[[tuple[str, Model]], list[str]]
Adopt = Callable[[str, Model, Model], None]
Whose = Callable[["ComponentSpec"], str]
Bound = Callable[["ComponentSpec", Callable[[], None], str], None]


class ModelServing:
    """Loads the served version of each model of a system and keeps it current."""

    def __init__(
        self, project: str, store: VersionStore, start_model: Start, vet: Vet, adopt: Adopt, bound: Bound, whose: Whose
    ):
        """``start_model(spec)`` starts a fresh instance; ``vet((name, model))`` says what the apis' ``check`` finds
        wrong with serving it; ``adopt(name, old, new)``: the system's ``old`` is stopped, ``new`` is its to stop;
        ``bound(spec, action, what)`` runs a ``load`` within the start timeout (a hung one froze every swap);
        ``whose(spec)`` names the model and its plugin, for the log of a load that failed."""
        self.project, self.store, self.start_model = project, store, start_model
        self.vet, self.adopt, self.bound, self.whose = vet, adopt, bound, whose
        self.handles: dict[str, ModelHandle] = {}
        self.errors: dict[str, str] = {}
        self._failed: dict[str, str] = {}  # the digest of the version each model could not load
        self.digests: dict[str, str] = {}  # of the version each model serves (``status``, ``/metrics``)
        self._specs: dict[str, ComponentSpec] = {}
        self._retired: list[tuple[str, Model]] = []
        self._spawned: dict[int, Model] = {}  # by id: attrs models with equal settings compare equal
        self._check_now = threading.Event()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def attach(self, spec: ComponentSpec, model: Model) -> ModelHandle:
        """Give a freshly started model its stored weights (if any) and a handle."""
        handle = self.handles[spec.name] = ModelHandle(spec.name, model)
        self._specs[spec.name] = spec
        try:
            artifact = self.store.resolve(served_ref(self.project, spec))
        except RefError:  # not trained yet, no such alias; a damaged index fails the start (checker h391 F2)
            handle.unavailable = self.errors[spec.name] = nothing_served(self.store, self.project, spec)
            log.warning("%s serves nothing yet: %s", spec.name, handle.unavailable)
            return handle
        try:
            self._load(spec, model, artifact)
        except Exception as exc:  # which version would not load; a plugin bug's type too
            raise HeirloomError(f"could not load {artifact.ref}: {described(exc)}") from exc
        handle.swap(model, artifact.ref)
        self.digests[spec.name] = artifact.digest
        log.info("serving %s", artifact.ref)
        return handle

    def refresh(self, retry: bool = True) -> dict[str, str]:
        """Swap in every model whose served ref now points at another version (a version that
        failed to load is tried again only with ``retry``); returns ``{model: new version}``."""
        self._stop_retired()
        changed: dict[str, str] = {}
        for name, handle in self.handles.items():
            spec = self._specs[name]
            try:
                artifact = self.store.resolve(served_ref(self.project, spec))
            except HeirloomError as exc:  # why, as the store is now: "run heirloom train" once trained was stale
                handle.unavailable = nothing_served(self.store, self.project, spec) if handle.version is None else None
                if self.errors.get(name) != (said := handle.unavailable or str(exc)):  # once, not at each look
                    log.warning("%s: %s", name, said)  # a store moved away or unreadable: _stats alone said it
                self.errors[name] = said
                continue
            if (artifact.ref, artifact.digest) == (handle.version, self.digests.get(name)):  # restores reuse refs
                if self.errors.pop(name, None) is not None:  # the warning's end said too (checker h454 F2)
                    log.info("%s: its ref names the version it serves again, %s: mended", name, handle.version)
                self._failed.pop(name, None)  # promoted again, a failed version is tried (and said) again
                continue
            if not retry and self._failed.get(name) == artifact.digest:  # _reload retries it (a mended store)
                continue
            model, failed = None, f"could not load {artifact.ref}"
            try:
                model = self.start_model(spec)
                self._spawned[id(model)] = model
                self._load(spec, model, artifact)
                if not model.ready():
                    raise HeirloomError(f"{artifact.ref} loaded but the model does not report ready")
                if problems := self.vet((name, model)):  # loaded, but a setting of an api cannot serve it
                    failed = f"did not swap to {artifact.ref}, an api's check refused it"
                    raise HeirloomError("; ".join(problems))
            except Exception as exc:  # noqa: BLE001 - a bad version must never replace a good one
                said = self.errors[name] = f"{failed}: {described(exc)}; still serving {handle.version or 'nothing'}"
                handle.unavailable = said if handle.version is None else None  # requests said "promote it": just run
                self._failed[name] = artifact.digest
                log.error("%s: %s", self.whose(spec), said)  # whose load it was, its plugin too (checker h356 F4)
                self._retired += [(name, model)] if model is not None else []  # stopped at the next refresh: 5 refused
                continue  # swaps of a 100 MB model kept 5 copies until the daemon stopped
            log.info("now serving %s, digest %.12s (was %s)", artifact.ref, artifact.digest, handle.version or "none")
            self._retired.append((name, handle.swap(model, artifact.ref)))
            self.digests[name] = artifact.digest
            self.errors.pop(name, None)
            self._failed.pop(name, None)  # loaded: the same version named again later is loaded again
            changed[name] = artifact.ref
        return changed

    def _load(self, spec: ComponentSpec, model: Model, artifact: StoredVersion) -> None:
        if (stored := artifact.model_type) != spec.use:  # another type's weights: the plugin might even load them
            raise HeirloomError(f"{artifact.ref} is of model type {stored}; models.{spec.name} uses {spec.use}")
        state = self.store.load(artifact, reads=model.state_format)
        self.bound(spec, lambda: model.load(state), "load")

    def status(self) -> dict[str, dict[str, Any]]:
        """``{model: {"version", "digest", "error"}}``: what each model serves and why not."""
        return {
            name: {"version": h.version, "digest": self.digests.get(name), "error": self.errors.get(name)}
            for name, h in list(self.handles.items())
        }

    def watch(self, interval: float) -> None:
        """Refresh every ``interval`` seconds (0: only on :meth:`check_now`) on a thread."""
        if self._watcher is None and self.handles:
            self._watcher = threading.Thread(target=self._watch, args=(interval,), name="heirloom-models", daemon=True)
            self._watcher.start()

    def check_now(self) -> list[str]:
        """Ask the watcher to look at the store now; returns the models it will check."""
        self._check_now.set()
        return sorted(self.handles)

    def _watch(self, interval: float) -> None:
        while not self._stopping.is_set():
            asked = self._check_now.wait(interval or None)  # _reload asked: retry what failed too
            self._check_now.clear()
            if self._stopping.is_set():
                return
            try:
                self.refresh(retry=asked)
            except Exception:
                log.exception("checking the artifact store for new model versions failed")

    def _stop_retired(self) -> None:
        """Stop models swapped out at the previous refresh: their requests have finished. The system's own too, the
        one serving in its place becoming the system's (it kept the first version's weights until the end)."""
        retired, self._retired = self._retired, []
        for name, model in retired:
            if self._spawned.pop(id(model), None) is None:
                self.adopt(name, model, self._spawned.pop(id(self.handles[name].model), self.handles[name].model))
            self._stop(model)

    def stop(self) -> None:
        """End the watcher; stop every instance this object started and kept (the system stops its own)."""
        self._stopping.set()
        self._check_now.set()
        if self._watcher is not None:
            self._watcher.join(WATCHER_JOIN_TIMEOUT)
        for model in self._spawned.values():
            self._stop(model)
        self._spawned, self._retired = {}, []

    @staticmethod
    def _stop(model: Model) -> None:
        try:
            model.stop()
        except Exception as exc:  # teardown of one old version must not stop serving
            kind = f"{type(model).__module__}.{type(model).__qualname__}"  # whose stop(): the plugin's module
            log.error("stopping a replaced model (%s) failed: %s", kind, described(exc), exc_info=exc)


def served_ref(project: str, spec: ComponentSpec) -> str:
    """``project/model[@serve]``: the stored version a model table serves (default: the latest)."""
    serve = getattr(spec.keys, "serve", None)
    return f"{project}/{spec.name}@{serve}" if serve else f"{project}/{spec.name}"


def nothing_served(store: VersionStore, project: str, spec: ComponentSpec) -> str:
    """Why ``spec`` serves nothing, and what to run: train, or promote a version."""
    base, serve = f"{project}/{spec.name}", getattr(spec.keys, "serve", None)
    try:
        latest = store.resolve(base)
    except RefError:
        return f"{base} has no trained version yet (run heirloom train on this profile)"
    except HeirloomError as exc:  # a damaged or unreadable store: training would not mend it
        return str(exc)
    if serve is not None and not serve.isdigit():
        try:
            store.resolve(f"{base}@{serve}")
        except HeirloomError as exc:  # names the aliases it has, and a close one or the promote that sets it
            return str(exc)
        why = f"no version of {base} has alias {serve!r}"  # it moved since: a promote sets it again
        return f"{why}; latest: {latest.ref}. To serve {serve!r}: heirloom models promote {latest.ref} {serve}"
    return f"{base} has no version {serve} (latest: {latest.ref})"
