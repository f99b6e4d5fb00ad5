"""Serving stored models: each model serves one stored version, swapped live when it moves.

A model table's ``serve`` key selects the version (a number or an alias; default the
latest). Apis reach models through a :class:`ModelHandle` and read ``(model, version)``
once per request or batch, so a swap is a single reference assignment: requests that
already hold the old model finish on it. A new version is loaded into a fresh instance
and checked ready before the swap; a failed load keeps the old version and says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from heirloom.errors import HeirloomError

if TYPE_CHECKING:
    from heirloom.artifacts import ArtifactStore
    from heirloom.components import Model
    from heirloom.schema import ComponentSpec
    from heirloom.system import System

log = logging.getLogger("heirloom.serving")


class ModelHandle:
    """The model an api should use right now and the version it serves."""

    __slots__ = ("_current", "name")

    def __init__(self, name: str, model: Model, version: str | None = None):
        self.name = name
        self._current = (model, version)

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
        old = self._current[0]
        self._current = (model, version)
        return old


class ModelServing:
    """Loads the served version of each model of a system and keeps it current."""

    def __init__(self, system: System, store: ArtifactStore):
        self.system = system
        self.store = store
        self.handles: dict[str, ModelHandle] = {}
        self.errors: dict[str, str] = {}
        self._specs: dict[str, ComponentSpec] = {}
        self._retired: list[Model] = []
        self._spawned: list[Model] = []

    def ref_of(self, spec: ComponentSpec) -> str:
        """``project/model[@serve]``: what this model serves."""
        serve = getattr(spec.keys, "serve", None)
        base = f"{self.system.profile.project}/{spec.name}"
        return f"{base}@{serve}" if serve else base

    def attach(self, spec: ComponentSpec, model: Model) -> ModelHandle:
        """Give a freshly started model its stored weights (if any) and a handle."""
        handle = self.handles[spec.name] = ModelHandle(spec.name, model)
        self._specs[spec.name] = spec
        try:
            artifact = self.store.resolve(self.ref_of(spec))
        except HeirloomError as exc:
            self.errors[spec.name] = str(exc)
            log.warning("%s serves nothing yet: %s (run heirloom train)", spec.name, exc)
            return handle
        model.load(self.store.load(artifact))
        handle.swap(model, artifact.ref)
        log.info("serving %s", artifact.ref)
        return handle

    def refresh(self) -> dict[str, str]:
        """Swap in every model whose served ref now points at another version.

        Returns ``{model: new version}`` for the models that changed.
        """
        self._stop_retired()
        changed: dict[str, str] = {}
        for name, handle in self.handles.items():
            spec = self._specs[name]
            try:
                artifact = self.store.resolve(self.ref_of(spec))
            except HeirloomError as exc:
                self.errors[name] = str(exc)
                continue
            if artifact.ref == handle.version:
                continue
            try:
                model = self.system.start_component(spec)
                self._spawned.append(model)
                model.load(self.store.load(artifact))
                if not model.ready():
                    raise HeirloomError(f"{artifact.ref} loaded but the model does not report ready")
            except Exception as exc:  # noqa: BLE001 - a bad version must never replace a good one
                self.errors[name] = f"could not load {artifact.ref}: {exc}; still serving {handle.version}"
                log.error("%s", self.errors[name])
                continue
            previous = handle.version
            self._retired.append(handle.swap(model, artifact.ref))
            self.errors.pop(name, None)
            changed[name] = artifact.ref
            log.info("now serving %s (was %s)", artifact.ref, previous)
        return changed

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: {"version": h.version, "error": self.errors.get(name)} for name, h in self.handles.items()}

    def _stop_retired(self) -> None:
        """Stop models swapped out at the previous refresh: their requests have finished."""
        retired, self._retired = self._retired, []
        for model in retired:
            if model in self._spawned:
                self._spawned.remove(model)
                self._stop(model)

    def stop(self) -> None:
        """Stop every instance this object started (the system stops the original ones)."""
        for model in self._spawned:
            self._stop(model)
        self._spawned.clear()
        self._retired.clear()

    @staticmethod
    def _stop(model: Model) -> None:
        try:
            model.stop()
        except Exception as exc:  # noqa: BLE001 - teardown of one old version must not stop serving
            log.error("stopping a replaced model failed: %s", exc)
