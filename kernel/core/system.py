"""Systems: a profile's components started in dependency order and stopped in reverse, no failure skipping a stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from heirloom.core.components import TABLES, Api, Component, Context, Model, ModelHandle, Resources, references
from heirloom.core.errors import HeirloomError, LifecycleError, described
from heirloom.core.quota import StorageQuota, quota_mb
from heirloom.core.schema import ComponentSpec, ResolvedProfile
from heirloom.core.serving import ModelServing, VersionStore
from heirloom.profile_toml import dotted

if TYPE_CHECKING:
    from heirloom.core.plugins import PluginHost

log = logging.getLogger("heirloom.core.system")


def run_with_timeout(action: Callable[[], None], timeout: float, what: str, setting: str) -> None:
    """Run ``action`` on a helper thread; raise if it fails or outlives ``timeout``. A thread cannot be killed: on
    timeout it is abandoned (daemon) and the caller goes on tearing down, which is what a stuck ``start`` needs."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=target, name=f"heirloom:{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise LifecycleError(f"{what} did not finish within {timeout:g}s (raise {setting})")
    if failure:
        raise failure[0]


def dependency_closure(specs: list[ComponentSpec], wanted: set[tuple[str, str]]) -> list[ComponentSpec]:
    """The components in ``wanted``, what they depend on, and the resource manager, in order."""
    by_key = {(s.kind, s.name): s for s in specs}
    if unknown := sorted(f"{kind} {name!r}" for kind, name in wanted if (kind, name) not in by_key):
        raise HeirloomError(f"the profile has no {', '.join(unknown)}")
    needed, todo = {("resources", "resources")}, list(wanted)
    while todo:
        key = todo.pop()
        if key not in needed:
            needed.add(key)
            todo.extend(by_key[key].depends)
    return [s for s in specs if (s.kind, s.name) in needed]


class System:
    """The running form of a profile. Use as a context manager or call start/stop."""

    def __init__(
        self,
        profile: ResolvedProfile,
        plugins: PluginHost,
        only: set[tuple[str, str]] | None = None,
        store: VersionStore | None = None,
    ):
        """``store``: serve each model's stored version from it (training passes None)."""
        self.profile, self.plugins = profile, plugins
        self.specs = profile.components if only is None else dependency_closure(profile.components, only)
        parts = (self.start_component, self._served_model_problems, self._adopt, self.within_start_timeout, self.whose)
        self.serving = ModelServing(profile.project, store, *parts) if store else None
        self.state = "built"
        self._components: dict[tuple[str, str], Component] = {}
        self._started: list[tuple[ComponentSpec, Component]] = []
        self._log_quota: StorageQuota | None = None
        self.unready: dict[str, str] = {}  # profile key -> why its component's ready() raised, while it does

    def component(self, name: str, kind: str | None = None) -> Any:
        """The component called ``name`` (of ``kind`` when names collide across kinds): with ``kind``, a lookup
        (each component's start asks for the resources: a scan made 10,000 apis start in 40 s, h365)."""
        if kind is not None and (found := self._components.get((kind, name))) is not None:
            return found
        matches = [c for (k, n), c in tuple(self._components.items()) if n == name and kind in (None, k)]
        if len(matches) != 1:
            raise HeirloomError(f"no single started component named {name!r}" + (f" of kind {kind}" if kind else ""))
        return matches[0]

    @property
    def log_quota(self) -> StorageQuota:
        """The project's durable-log quota, shared by every log its components open."""
        if self._log_quota is None:
            self._log_quota = StorageQuota("logs", self.profile.project, quota_mb(self.resources, "logs"))
        return self._log_quota

    @property
    def resources(self) -> Resources:
        return self.component("resources", "resources")

    def components(self, kind: str | None = None) -> dict[str, Any]:
        """``name -> component`` of the started components (of one kind if given)."""
        return {n: c for (k, n), c in tuple(self._components.items()) if kind in (None, k)}

    def apis(self) -> dict[str, Api]:
        return self.components("api")

    def model(self, name: str) -> ModelHandle:
        """The handle apis use to reach model ``name`` (it follows hot swaps)."""
        if self.serving is not None and name in self.serving.handles:
            return self.serving.handles[name]
        handle = ModelHandle(name, self.component(name, "model"))
        handle.unavailable = "this system loads no stored version (build it with serve_models=True)"
        return handle

    def readiness(self, strict: bool = False) -> dict[str, bool]:
        """``{"models.sentiment": bool, ...}``: each ``ready()`` (a served model's needs a stored version); one that
        raises (a daemon died of it) is not ready, logged once (``unready``); with ``strict`` (at start) an error."""
        result, specs = {}, {(s.kind, s.name): s for s in self.specs}
        for (kind, name), component in tuple(self._components.items()):  # a start may add one meanwhile
            handle, spec = self.serving and kind == "model" and self.serving.handles.get(name), specs[kind, name]
            try:
                result[spec.key] = handle.version is not None and handle.model.ready() if handle else component.ready()
                self.unready.pop(spec.key, None)
            except Exception as exc:  # a plugin's bug, reported as its component's (its traceback at debug)
                result[spec.key], said = False, f"{self.whose(spec)}: ready() raised {described(exc)}"
                if self.unready.get(spec.key) != said:
                    log.error("%s; it counts as not ready", said, exc_info=log.isEnabledFor(logging.DEBUG))
                self.unready[spec.key] = said
        if strict and self.unready:
            raise LifecycleError("; ".join(self.unready.values()))
        return result

    def ready(self) -> bool:
        """True when running and every component reports ready (started and warm)."""
        return self.state == "running" and all(self.readiness().values())

    def start(self) -> System:
        if self.state != "built":
            raise LifecycleError(f"system {self.profile.name!r} is {self.state}; build a new one to start again")
        self.state = "starting"
        for spec in self.specs:
            began = time.perf_counter()
            try:
                self._components[(spec.kind, spec.name)] = component = self.start_component(spec)
                if spec.kind == "model" and self.serving is not None:
                    self.serving.attach(spec, component)
            except BaseException as exc:
                self._components.pop((spec.kind, spec.name), None)
                errors, self.state = self._stop_started(), "failed"  # those started stop at a Ctrl-C too (h417 F1)
                if not isinstance(exc, Exception):
                    raise
                log.debug("%s failed to start", spec.key, exc_info=exc)  # a plugin bug's traceback; the error says why
                said = self.profile.raw.hide_secrets(spec.key, described(exc))  # a plugin's words: h411 F1
                raise LifecycleError(f"{self.whose(spec)} failed to start: {said}", errors) from exc
            self._started.append((spec, component))
            log.info("started %s (%s) in %.2fs", spec.key, spec.use, time.perf_counter() - began)
        if problems := self._served_model_problems():
            versions = ", ".join(h.version for h in self.serving.handles.values() if h.version)  # what to roll back
            errors, self.state = self._stop_started(), "failed"
            raise LifecycleError(f"cannot serve {versions or 'the profile'}: " + "; ".join(problems), errors)
        self.state = "running"
        for error in self.plugins.notify("heirloom_system_started", system=self):
            log.warning("%s", error)
        return self

    def whose(self, spec: ComponentSpec) -> str:
        """How errors name a component: ``models.m (toy-model, plugin P (DIST V))``, the plugin whose code it runs."""
        return f"{spec.key} ({spec.use}, plugin {getattr(self.plugins.provider(spec.kind, spec.use), 'label', '?')})"

    def _served_model_problems(self, swap: tuple[str, Model] | None = None) -> list[str]:
        """What each api's ``check`` finds wrong with the versions it would serve (``swap``'s in its name's place)."""
        if self.serving is None:
            return []
        served = {n: h.model for n, h in self.serving.handles.items() if h.version} | dict([swap] if swap else [])
        problems, raw = [], self.profile.raw  # each with the name of the file that set it (_stats shows no paths)
        for name, api in [(name, component) for (kind, name), component in self._components.items() if kind == "api"]:
            models = {t: served[t] for _, ref_kind, t in references(api) if ref_kind == "model" and t in served}
            for field, why in api_check(api, models):
                file = raw.provenance.get(key := dotted([TABLES["api"], name, field]), raw.file).rpartition("/")[2]
                problems.append(f"{file}: {key}: {raw.hide_secrets(key, why)}")  # as schema errors quote ${VAR}
        return problems

    def start_component(self, spec: ComponentSpec) -> Component:
        """A new instance of ``spec``, prepared by the resource manager and started."""
        component = self.profile.instantiate(spec)
        if spec.kind == "resources":
            self._components[(spec.kind, spec.name)] = component  # the others' prepare needs it
        else:
            try:
                self.resources.prepare(spec.name, component)
            except Exception as exc:  # the manager's bug, not the component's: say whose
                manager = self.whose(next(s for s in self.specs if s.kind == "resources"))
                raise LifecycleError(f"the resource manager {manager}: prepare() raised {described(exc)}") from exc
        self.within_start_timeout(spec, lambda: component.start(Context(spec.name, spec.kind, self)), "start")
        return component

    def within_start_timeout(self, spec: ComponentSpec, action: Callable[[], None], what: str) -> None:
        """Run ``action`` (``spec``'s start, or the load of its stored version) bounded by its start timeout."""
        timeout = spec.keys.start_timeout or self.profile.settings["system"].start_timeout
        setting = f"{spec.key}.start_timeout or [system] start_timeout"
        run_with_timeout(action, timeout, f"{what} of {spec.key} ({spec.use})", setting)

    def _adopt(self, name: str, old: Model, new: Model) -> None:
        """``new`` serves in the place of model ``name``'s ``old`` (which serving stops): stop it in that turn."""
        self._components[("model", name)] = new
        self._started = [(spec, new if component is old else component) for spec, component in self._started]

    def stop(self) -> None:
        """Stop every started component in reverse order; raise one error listing all failures."""
        if self.state not in ("running", "starting"):
            return
        self.state = "stopping"
        for error in self.plugins.notify("heirloom_system_stopping", system=self):  # a notification: it fails nothing
            log.error("%s", error)
        if self.serving is not None:
            self.serving.stop()
        errors, self.state = self._stop_started(), "stopped"
        if errors:
            raise LifecycleError(f"system {self.profile.name!r} stopped with {len(errors)} error(s)", errors)

    def _stop_started(self) -> list[BaseException]:
        errors: list[BaseException] = []
        timeout = self.profile.settings["system"].stop_timeout
        while self._started:
            spec, component = self._started.pop()
            try:
                run_with_timeout(component.stop, timeout, f"stop of {spec.key} ({spec.use})", "[system] stop_timeout")
                log.info("stopped %s (%s)", spec.key, spec.use)
            except Exception as exc:  # noqa: BLE001 - everything already started must stop
                log.error("%s", said := f"{self.whose(spec)} failed to stop: {described(exc)}")
                errors.append(LifecycleError(said))
        self._components.clear()
        return errors

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            self.stop()
        except LifecycleError as teardown:  # after a failure inside, that one is what to fix: it goes on
            if kind is None:
                raise
            log.error("%s", teardown)


def api_check(api: Api, models: dict[str, Any]) -> list[tuple[str, str]]:
    """``api.check(models)``; an exception it raises, or a return of another shape, is a problem naming it (a plugin's
    bug, logged whole): not a crash of profile check, nor of serve's start, nor a hot swap's blamed on the model."""
    try:
        return field_pairs(api, "check", api.check(models))
    except Exception as exc:  # any bug of a plugin's check: not a crash of profile check, nor serve's bare 'm'
        log.warning("%s.check raised", type(api).__name__, exc_info=True)
        bug = f"{type(api).__name__}.check, heirloom.Api's hook (no route handler), raised {type(exc).__name__}: {exc}"
        return [("use", f"{bug} (a plugin bug? models with no stored version are absent: it had {sorted(models)})")]


def field_pairs(component: object, hook: str, answer: Any) -> list[tuple[str, str]]:
    """``answer``, what ``component``'s optional ``hook`` returned, as ``(field, problem)`` pairs; anything else (a str,
    whose 2-letter items read as pairs; one pair; None) is one problem at ``use`` naming the class and the value."""
    found = list(answer) if isinstance(answer, Iterable) and not isinstance(answer, str | bytes) else None
    if found is not None and all(isinstance(pair, tuple | list) and len(pair) == 2 for pair in found):
        return [(str(field), str(problem)) for field, problem in found]
    wrong = f"returned a {type(answer).__name__} ({answer!r:.80}), not [(field, problem), ...]"
    return [("use", f"{type(component).__name__}.{hook} {wrong} (a plugin bug?)")]
