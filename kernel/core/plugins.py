"""Plugin discovery, isolated loading, hook calls, and the registry of component types.

Entry points in the ``heirloom`` group are *listed* without importing them; the :class:`~heirloom.core.catalog.Catalog`
says what each provides, so a profile imports only the plugins it uses. The kernel's own plugins (its commands, its
artifact store) are listed the same way but cannot be disabled, as pytest ships its features as ``default_plugins``.

Every hook is called through pluggy, one plugin at a time: ``tryfirst``/``trylast`` decide the order, other plugins'
hook wrappers wrap each call, and an exception is recorded against the plugin that raised it (with its distribution and
version) instead of stopping the others. ``HEIRLOOM_TRACE_PLUGINS=1`` prints every plugin import and hook call, with the
plugin and its duration, to stderr."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import attrs
import pluggy

from heirloom.core import hookspecs
from heirloom.core.catalog import NAMED_HOOKS, Catalog, PluginInfo, fingerprint
from heirloom.core.components import KIND_BASES, KINDS
from heirloom.core.errors import HeirloomError, PluginError
from heirloom.core.settings import ComponentKeys, ModelKeys
from heirloom.core.version import VERSION
from heirloom.selection import BUILTINS, SELECTING, listed_entry_points, release, shadowed_error, trace, where

REGISTER_HOOKS = {
    "source": "heirloom_register_sources",
    "model": "heirloom_register_models",
    "api": "heirloom_register_apis",
    "resources": "heirloom_register_resource_managers",
}
COMPONENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
TRACE_VARIABLE = "HEIRLOOM_TRACE_PLUGINS"


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line (pluggy's signature error spans three); ours by message alone."""
    return str(exc) if isinstance(exc, PluginError) else " ".join(f"{type(exc).__name__}: {exc}".split())


def _check_hook_names(plugin: Any, hooks: Sequence[str]) -> None:
    """PluginError for a function named like a hook that pluggy would skip or refuse: one without ``@heirloom.hookimpl``
    (never called, silently), or a marked one whose name is no hook (pluggy's error, with the closest hook's name)."""
    for attribute in dir(plugin):
        value = getattr(plugin, attribute, None)
        mark = getattr(value, "heirloom_impl", None) if callable(value) else None  # a mock answers every name
        marked = isinstance(mark, dict)  # a marked function names a hook, with any prefix (or its specname)
        if not (marked or attribute.startswith("heirloom_")) or not callable(value):
            continue
        name = (mark or {}).get("specname") or attribute
        close = difflib.get_close_matches(name, hooks, 1, 0.8) or [h for h in hooks if h == f"heirloom_{name}"]
        hint = f"; did you mean {close[0]!r}?" if close and close[0] != name else ""
        if marked and name not in hooks:
            raise PluginError(f"unknown hook {name!r}{hint} (hooks: {', '.join(hooks)})")
        if not marked and close:
            raise PluginError(f"{attribute} is not marked @heirloom.hookimpl, so it would never be called{hint}")


class PluginHost:
    """One pluggy manager and registry per kernel: no module-global state."""

    def __init__(self, *, use_entry_points: bool = True, plugins: Iterable[Any] = (), catalog_path: Path | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.use_entry_points = use_entry_points
        self.infos: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, list[tuple[str, type]]]] = {k: {} for k in KINDS}
        self.named: dict[str, dict[str, list[tuple[str, Any]]]] = {what: {} for what in NAMED_HOOKS}
        self._entry_points: dict[str, EntryPoint] = {}
        self.shadowed: list[PluginInfo] = []  # entry points another has the name of: never loaded
        self._left_out: list[EntryPoint] = []  # listed once: per unknown type, 10,000 took 76 s (checker 305 F2)
        self._catalog = Catalog(catalog_path)
        self.tracing = os.environ.get(TRACE_VARIABLE, "") not in ("", "0")
        self.chosen = " and ".join(f"{v}={os.environ[v]}" for v in SELECTING if os.getenv(v))  # as selected read them
        if self.tracing:
            self._start_tracing()
        self._list_builtins()
        if use_entry_points:
            self._list_entry_points()
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self.infos[name] = PluginInfo(name=name, module=name)
            self._load(name, plugin)

    def _list_builtins(self) -> None:
        for ep in BUILTINS:
            self._list(ep, builtin=True)

    def _list_entry_points(self) -> None:
        """Installed entry points, and modules ``HEIRLOOM_PLUGINS`` names; one whose name another has is failed."""
        listed, self._left_out, shadowed = listed_entry_points()
        for ep in listed:
            self._list(ep)
        for ep, first in shadowed:  # heirloom plugins lists it, and errors about what it provides name it
            self.shadowed.append(attrs.evolve(self._info(ep), status="failed", error=shadowed_error(ep, first)))

    def _list(self, ep: EntryPoint, builtin: bool = False) -> None:
        self._entry_points[ep.name] = ep
        self.infos[ep.name] = self._info(ep, builtin)

    def _info(self, ep: EntryPoint, builtin: bool = False) -> PluginInfo:
        """What the catalog remembers of ``ep``'s plugin (nothing if it changed since it last loaded)."""
        dist, version = release(ep.dist) if ep.dist is not None else ("heirloom", VERSION) if builtin else (None, None)
        info = PluginInfo(ep.name, ep.value, dist, version, fingerprint=fingerprint(ep), builtin=builtin)
        return self._catalog.fill(info)

    def _load(self, name: str, plugin: Any) -> None:
        """Register one plugin and run its registration hooks; record any failure."""
        info = self.infos[name]
        staged: list[tuple[str, str, type]] = []
        named: dict[str, list[tuple[str, Any]]] = {what: [] for what in NAMED_HOOKS}
        try:
            _check_hook_names(plugin, [hook for hook in dir(self.pm.hook) if hook.startswith("heirloom_")])
            self.pm.register(plugin, name=name)
            try:
                self.pm.check_pending()
                implemented = {caller.name for caller in self.pm.get_hookcallers(plugin) or []}
                registrars = {hook: self._stager(kind, staged) for kind, hook in REGISTER_HOOKS.items()}
                for what, hook in NAMED_HOOKS.items():
                    registrars[hook] = lambda n, obj, into=named[what]: into.append((str(n), obj))
                for hook_name in [hook for hook in registrars if hook in implemented]:
                    if self.call_one(hook_name, name, register=registrars[hook_name]):  # pluggy drops None results
                        raise PluginError(f"{hook_name} returned a value: call register(name, ...) for each instead")
                if missing := [f"{n!r} ({obj})" for n, obj in named["profiles"] if not Path(str(obj)).is_file()]:
                    raise PluginError(f"registers profiles whose files do not exist: {', '.join(missing)}")
            except BaseException:
                self.pm.unregister(name=name)
                raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - isolation is the point; a sys.exit too (h433 F1)
            info.status, info.error = "failed", _describe(exc) + where(exc, info.module)
            return
        info.status, info.error = "loaded", None
        info.provides = {kind: [] for kind in KINDS}
        for kind, component, cls in staged:
            cls.heirloom_registered = f"{component}, plugin {info.label}"  # how manager_name names a manager
            self.components[kind].setdefault(component, []).append((name, cls))
            info.provides[kind].append(component)
        for what, entries in named.items():
            for entry_name, obj in entries:
                self.named[what].setdefault(entry_name, []).append((name, obj))
            info.named[what] = [entry_name for entry_name, _ in entries]
        info.hooks = sorted(implemented)
        if "heirloom_register_commands" not in info.hooks:
            info.commands = []

    @staticmethod
    def _stager(kind: str, staged: list[tuple[str, str, type]]) -> Callable[[str, type], None]:
        base = KIND_BASES[kind]
        reserved = {field.name for field in attrs.fields(ModelKeys if kind == "model" else ComponentKeys)}

        def register(name: str, cls: type) -> None:
            if not isinstance(name, str) or not COMPONENT_NAME.fullmatch(name):  # match: "echo\n" passed
                raise PluginError(f"invalid {kind} name {name!r}: use ASCII lower-case letters, digits, '-', '_', '.'")
            if not (isinstance(cls, type) and attrs.has(cls) and issubclass(cls, base)):
                said = f"{kind} {name!r}: {cls!r} must be an attrs class subclassing heirloom.{base.__name__}"
                raise PluginError(said)
            if clash := sorted({field.name for field in attrs.fields(cls)} & reserved):  # the kernel takes these keys
                raise PluginError(
                    f"{kind} {name!r}: {cls.__name__} has field(s) {', '.join(clash)}, which the kernel reads "
                    f"itself in every {kind} table ({', '.join(sorted(reserved))}): rename them"
                )
            from heirloom.converter import abstract_problem, field_type_problem  # imports cattrs: once one registers

            if problem := abstract_problem(cls, base) or field_type_problem(cls):  # now, not at the first use
                raise PluginError(f"{kind} {name!r}: {problem}")
            if any(staged_kind == kind and staged_name == name for staged_kind, staged_name, _ in staged):
                raise PluginError(f"{kind} {name!r} is registered twice by this plugin: register each name once")
            staged.append((kind, name, cls))

        return register

    def load(self, name: str) -> bool:
        """Import and register the plugin ``name`` if not done yet; True if loaded."""
        info = self.infos[name]
        if info.status == "listed":
            began = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # what a plugin prints importing: stdout may be --json
                try:
                    if (ep := self._entry_points[name]).pattern.match(ep.value) is None:  # load: an AttributeError
                        raise PluginError(f"{ep.value!r} is no Python module name (HEIRLOOM_PLUGINS lists those)")
                    plugin = ep.load()
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may do anything on import
                    info.status, info.error = "failed", _describe(exc) + where(exc, info.module)
                    plugin = None
            if self.tracing:
                elapsed = (time.perf_counter() - began) * 1000
                failed = f" failed: {info.error}" if plugin is None else ""
                trace(f"import {info.module} ({info.label}) {elapsed:.3f} ms{failed}")
            if plugin is not None:
                with contextlib.redirect_stdout(sys.stderr):
                    self._load(name, plugin)
        return info.status == "loaded"

    def load_all(self) -> None:
        """Import every listed plugin (``heirloom plugins`` does this to show failures)."""
        for name in sorted(self.infos):
            self.load(name)
        self._catalog.save(self.infos)

    def ensure(
        self,
        components: Iterable[tuple[str, str]] = (),
        profiles: Iterable[str] = (),
        pretrained: Iterable[str] = (),
        hooks: Iterable[str] = (),
    ) -> None:
        """Import the plugins that provide these component types, profiles, pretrained states or implement these hooks;
        those the catalog does not know too (their contents are unknown); any still missing then: everything."""
        wanted_components, wanted_hooks = set(components), set(hooks)
        wanted_named = {"profiles": set(profiles), "pretrained": set(pretrained)}
        todo = {n for n, i in self.infos.items() if i.status == "listed" and not self._catalog.knows(i)}
        for name, info in self.infos.items():
            if info.status == "listed" and (
                any(component in info.provides[kind] for kind, component in wanted_components)
                or any(wanted & set(info.named[what]) for what, wanted in wanted_named.items())
                or wanted_hooks & set(info.hooks)
            ):
                todo.add(name)
        for name in sorted(todo):
            self.load(name)
        missing = any(c not in self.components[k] for k, c in wanted_components) or any(
            entry not in self.named[what] for what, wanted in wanted_named.items() for entry in wanted
        )
        for name in sorted(self.infos) if missing else ():  # the last resort: every plugin
            self.load(name)
        if todo or missing:
            self._catalog.save(self.infos)

    def call_one(self, hook_name: str, plugin_name: str, **kwargs: Any) -> list[Any]:
        """Call ``hook_name`` on one plugin only, through pluggy (wrappers and tracing apply)."""
        hook = getattr(self.pm.hook, hook_name)
        others = {impl.plugin for impl in self._callers(hook) if impl.plugin_name != plugin_name}
        return self.pm.subset_hook_caller(hook_name, others)(**kwargs)

    def call_each(self, hook_name: str, only: str | None = None, **kwargs: Any) -> list[BaseException]:
        """Call ``hook_name`` on every plugin (or ``only`` one) in pluggy's order, each in
        isolation: one plugin's exception is returned as a PluginError, the rest still run."""
        errors: list[BaseException] = []
        for impl in [i for i in self._callers(getattr(self.pm.hook, hook_name)) if only in (None, i.plugin_name)]:
            try:
                self.call_one(hook_name, impl.plugin_name, **kwargs)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - one plugin's hook must not break others
                errors.append(self._failed(impl.plugin_name, hook_name, exc))
        return errors

    def call_first(self, hook_name: str, **kwargs: Any) -> Any:
        """The first non-None answer of a ``firstresult`` hook, after loading its implementers, each asked in order,
        its prints to stderr; a HeirloomError is the user's, any other (a sys.exit) its plugin's (checker v34 F3)."""
        self.ensure(hooks=[hook_name])
        for impl in self._callers(getattr(self.pm.hook, hook_name)):
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    if (answer := self.call_one(hook_name, impl.plugin_name, **kwargs)) is not None:
                        return answer
            except HeirloomError:
                raise
            except (Exception, SystemExit) as exc:  # named as its plugin's, as any hook's
                raise self._failed(impl.plugin_name, hook_name, exc) from exc
        return None

    def _failed(self, plugin_name: str, hook_name: str, exc: BaseException) -> PluginError:
        label = self.infos[plugin_name].label if plugin_name in self.infos else plugin_name
        return PluginError(f"plugin {label}: {hook_name} failed: {_describe(exc)}")

    @staticmethod
    def _callers(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
        """Non-wrapper implementations in the order pluggy calls them (tryfirst first)."""
        return [impl for impl in reversed(hook.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]

    def _start_tracing(self) -> None:
        began: list[float] = []

        def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Any) -> None:
            began.append(time.perf_counter())

        def after(outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Any) -> None:
            elapsed = (time.perf_counter() - began.pop()) * 1000
            names = [impl.plugin_name for impl in impls if not (impl.hookwrapper or impl.wrapper)]
            labels = ", ".join(self.infos[n].label if n in self.infos else n for n in names) or "no plugin"
            failed = f" raised {_describe(outcome.exception)}" if outcome.exception else ""
            trace(f"{hook_name} -> {labels} {elapsed:.3f} ms{failed}")

        self.pm.add_hookcall_monitoring(before, after)

    @property
    def profiles(self) -> dict[str, list[tuple[str, Any]]]:
        """``name -> [(plugin, path)]`` of the profiles plugins ship."""
        return self.named["profiles"]

    def pretrained(self, name: str) -> tuple[Callable[[], Any], PluginInfo]:
        """What loads the state a plugin registered as ``pretrained:NAME``, and its plugin."""
        self.ensure(pretrained=[name])
        providers, known = self.named["pretrained"].get(name, []), sorted(self.named["pretrained"])
        if not providers:
            raise PluginError(f"no plugin registers pretrained:{name} (registered: {', '.join(known) or 'none'})")
        if len(providers) > 1:
            labels = " and ".join(self.infos[p].label for p, _ in providers)
            raise PluginError(f"pretrained:{name} is registered by two plugins: {labels}")
        plugin, load = providers[0]
        return load, self.infos[plugin]

    def component_type(self, kind: str, name: str) -> type | None:
        """The class registered as ``name``; None if unknown; PluginError if ambiguous."""
        providers = self.components[kind].get(name, [])
        if len(providers) > 1:
            by = f"is registered by two plugins: {' and '.join(self.infos[p].label for p, _ in providers)}"
            raise PluginError(f"{kind} type {name!r} {by}; disable one with HEIRLOOM_DISABLE_PLUGINS")
        return providers[0][1] if providers else None

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        providers = self.components[kind].get(name, [])
        return self.infos[providers[0][0]] if providers else None

    def known_names(self, kind: str) -> list[str]:
        """Every name of this kind the registry or the catalog knows, for 'did you mean'."""
        names = set(self.components[kind])
        for info in self.infos.values():
            names.update(info.provides[kind])
        return sorted(names)

    def selection(self) -> str:
        """What the environment (or a kernel without entry points) keeps from loading, for errors about what is
        missing: a test's ``heirloom_kernel(entry_points=False)`` has not even the default ``local`` resources."""
        if not self.use_entry_points:
            return (
                "; installed plugins are not loaded (entry points off): pass the module of each plugin the profile "
                "uses, 'heirloom_plugins.local_resources' for the default resources"
            )
        return f"; {self.chosen}: plugins left out by it are not loaded" if self.chosen else ""

    def left_out(self, kind: str, name: str) -> str:
        """``PLUGIN, which HEIRLOOM_DISABLE_PLUGINS=x leaves out``: the plugins left out that last provided ``name``;
        else those uninstalled since (a team's profile extending one said "did you mean 'finance-sentiment'?", h390)."""
        off = [self._info(ep) for ep in self._left_out]  # kind: a component kind, "profiles", "commands"
        labels = [i.label for i in off if name in (dict(i.provides, **i.named, commands=i.commands).get(kind) or ())]
        if labels:
            return f"{' and '.join(labels)}, which {self.chosen} leaves out"
        gone = self._catalog.gone({*self.infos, *(ep.name for ep in self._left_out)}, kind, name)
        which = "none of which is installed now (install one)" if gone[1:] else "which is not installed (install it)"
        return f"{' and '.join(gone)}, {which}" if gone and self.use_entry_points else ""  # else none is looked for

    def disabled(self) -> list[PluginInfo]:
        """The installed plugins the environment leaves out, each ``disabled`` naming the variable and what it last
        provided: ``heirloom plugins`` lists them, where an operator looks for why their types are missing."""
        infos = {ep.name: self._info(ep) for ep in self._left_out if ep.name not in self.infos}
        return [attrs.evolve(info, status="disabled", error=f"left out by {self.chosen}") for info in infos.values()]

    def failures(self) -> list[PluginInfo]:
        return [*(info for info in self.infos.values() if info.status == "failed"), *self.shadowed]

    def conflicts(self) -> dict[str, list[str]]:
        """``"kind name" -> [plugin labels]`` for names registered more than once (profiles too)."""
        return {
            f"{kind} {name}": [self.infos[p].label for p, _ in providers]
            for kind, table in [*self.components.items(), *((what[:-1], t) for what, t in self.named.items())]
            for name, providers in table.items()
            if len(providers) > 1
        }

    def command_plugins(self) -> dict[str, str]:
        """``command name -> plugin name`` as far as the catalog knows."""
        return {cmd: name for name, info in self.infos.items() for cmd in info.commands or ()}

    def add_commands(self, cli: Any, plugin_name: str) -> list[BaseException]:
        """Let one plugin add its commands to ``cli`` (the CLI's group, which notes what each plugin registers);
        remember their names (none too) for next time; a hook that raised is the plugin's error (``plugins``)."""
        if not self.load(plugin_name):
            return []
        errors, info = self.call_each("heirloom_register_commands", only=plugin_name, cli=cli), self.infos[plugin_name]
        info.error = "; ".join(map(str, errors)) or None
        added = sorted(set(cli.registered.get(plugin_name, [])))  # one another plugin added too (a clash) as well
        if added != info.commands and not errors:
            info.commands = added
            self._catalog.save(self.infos)
        return errors

    def plugins_with_commands(self) -> list[str]:
        """Plugins that implement ``heirloom_register_commands``, loaded or (per the catalog) not."""
        return [n for n, i in self.infos.items() if i.status != "failed" and "heirloom_register_commands" in i.hooks]

    def notify(self, hook_name: str, **kwargs: Any) -> list[BaseException]:
        """Call a notification hook on every plugin that implements it (imported first, though the
        system uses none of its components), each in isolation; return the errors."""
        earlier = hook_name == "heirloom_system_started"  # and at the start, one that failed earlier (v37 F3), once
        mine = [i for i in self.infos.values() if hook_name in (i.hooks or [hook_name])]
        listed = [i for i in mine if i.status == "listed" or (earlier and i.status == "failed")]
        self.ensure(hooks=[hook_name])  # a plugin that fails to load for it is said (h341 F11)
        said = "plugin {} failed to load: {}; it hears no {}"
        failed = [said.format(i.label, i.error, hook_name) for i in listed if i.status == "failed"]
        return [*map(PluginError, failed), *self.call_each(hook_name, **kwargs)]
