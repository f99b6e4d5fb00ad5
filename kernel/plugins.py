"""Plugin discovery, isolated loading and the registry of component types.

Entry points in the ``heirloom`` group are *listed* without importing them. A catalog
(cached per environment) remembers what each plugin provided the last time it was
imported, keyed by a fingerprint of its distribution, version and module file, so a
profile only imports the plugins it uses. A plugin the catalog does not know (new,
upgraded, edited, or failing last time) is imported to learn what it provides.

Each plugin is imported and registered in isolation: an exception is recorded against
that plugin (with its distribution and version) and the plugin is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import sys
import traceback
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import attrs
import pluggy

from heirloom import hookspecs
from heirloom.components import KIND_BASES, KINDS
from heirloom.errors import PluginError
from heirloom.fsutil import write_atomic
from heirloom.paths import cache_dir

ENTRY_POINT_GROUP = "heirloom"
CATALOG_VERSION = 2
REGISTER_HOOKS = {
    "source": "heirloom_register_sources",
    "model": "heirloom_register_models",
    "api": "heirloom_register_apis",
    "resources": "heirloom_register_resource_managers",
}
#: Things plugins register by name besides component types: what each hook registers.
NAMED_HOOKS = {"profiles": "heirloom_register_profiles", "pretrained": "heirloom_register_pretrained"}
COMPONENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _empty_provides() -> dict[str, list[str]]:
    return {kind: [] for kind in KINDS}


def _empty_named() -> dict[str, list[str]]:
    return {what: [] for what in NAMED_HOOKS}


@attrs.define
class PluginInfo:
    """What the kernel knows about one plugin, loaded or not."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "listed"  # listed (not imported) | loaded | failed
    error: str | None = None
    provides: dict[str, list[str]] = attrs.field(factory=_empty_provides)
    #: Profiles and pretrained states it registers, by name (see ``NAMED_HOOKS``).
    named: dict[str, list[str]] = attrs.field(factory=_empty_named)
    commands: list[str] = attrs.field(factory=list)
    fingerprint: str = ""

    @property
    def label(self) -> str:
        """``name (distribution version)``, for error messages."""
        if self.distribution:
            return f"{self.name} ({self.distribution} {self.version})"
        return self.name

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "provides": {kind: sorted(names) for kind, names in self.provides.items()},
        }
        if self.status == "failed":
            data["error"] = self.error
        return data


def _env_list(variable: str) -> set[str]:
    return {item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()}


def _selected(ep: EntryPoint) -> bool:
    """Apply ``HEIRLOOM_DISABLE_PLUGINS`` / ``HEIRLOOM_LOAD_PLUGINS`` (names or distributions)."""
    names = {ep.name}
    if ep.dist is not None:
        names.add(ep.dist.name)
    allowed = _env_list("HEIRLOOM_LOAD_PLUGINS")
    if allowed and not names & allowed:
        return False
    return not names & _env_list("HEIRLOOM_DISABLE_PLUGINS")


def _fingerprint(ep: EntryPoint) -> str:
    """Changes when the plugin's distribution, version or entry module file changes."""
    try:
        spec = importlib.util.find_spec(ep.module)
        origin = spec.origin if spec else None
        stamp = os.stat(origin).st_mtime_ns if origin and os.path.exists(origin) else 0
    except Exception:  # noqa: BLE001 - a broken package still gets listed
        stamp = -1
    dist = f"{ep.dist.name}=={ep.dist.version}" if ep.dist is not None else "-"
    return f"{dist}|{ep.value}|{stamp}"


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class PluginHost:
    """One pluggy manager and registry per kernel: no module-global state."""

    def __init__(
        self,
        *,
        use_entry_points: bool = True,
        plugins: Iterable[Any] = (),
        catalog_path: Path | None = None,
    ):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, list[tuple[str, type]]]] = {k: {} for k in KINDS}
        self.named: dict[str, dict[str, list[tuple[str, Any]]]] = {what: {} for what in NAMED_HOOKS}
        self._entry_points: dict[str, EntryPoint] = {}
        self._catalog_path = catalog_path
        self._catalog: dict[str, dict[str, Any]] = self._read_catalog()
        if use_entry_points:
            self._list_entry_points()
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self.infos[name] = PluginInfo(name=name, module=name)
            self._load(name, plugin)

    # -- discovery and catalog ---------------------------------------------------------
    def _list_entry_points(self) -> None:
        """Installed entry points, plus modules named in ``HEIRLOOM_PLUGINS`` (for plugin
        development and tests: no packaging needed, like ``PYTEST_PLUGINS``)."""
        named = [m.strip() for m in os.environ.get("HEIRLOOM_PLUGINS", "").split(",") if m.strip()]
        extra = [EntryPoint(name=module, value=module, group=ENTRY_POINT_GROUP) for module in named]
        for ep in [*entry_points(group=ENTRY_POINT_GROUP), *extra]:
            if ep.name in self._entry_points or not _selected(ep):
                continue
            self._entry_points[ep.name] = ep
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=ep.dist.name if ep.dist is not None else None,
                version=ep.dist.version if ep.dist is not None else None,
                fingerprint=_fingerprint(ep),
            )
            cached = self._catalog.get(ep.name)
            if cached and cached.get("fingerprint") == info.fingerprint:
                info.provides = {k: list(cached["provides"].get(k, [])) for k in KINDS}
                info.named = {what: list(cached.get("named", {}).get(what, [])) for what in NAMED_HOOKS}
                info.commands = list(cached.get("commands", []))
            self.infos[ep.name] = info

    def _default_catalog_path(self) -> Path:
        key = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
        return cache_dir() / f"plugins-{key}.json"

    def _read_catalog(self) -> dict[str, dict[str, Any]]:
        path = self._catalog_path or self._default_catalog_path()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CATALOG_VERSION:
            return {}
        plugins = data.get("plugins")
        return plugins if isinstance(plugins, dict) else {}

    def _write_catalog(self) -> None:
        for name, info in self.infos.items():
            if name in self._entry_points and info.status == "loaded":
                self._catalog[name] = {
                    "fingerprint": info.fingerprint,
                    "provides": info.provides,
                    "named": info.named,
                    "commands": info.commands,
                }
            elif info.status == "failed":
                self._catalog.pop(name, None)
        payload = {"version": CATALOG_VERSION, "plugins": self._catalog}
        path = self._catalog_path or self._default_catalog_path()
        with contextlib.suppress(OSError):  # a read-only cache only costs start-up time
            write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())

    def _known_to_catalog(self, name: str) -> bool:
        cached = self._catalog.get(name)
        return bool(cached) and cached.get("fingerprint") == self.infos[name].fingerprint

    # -- loading -----------------------------------------------------------------------
    def _load(self, name: str, plugin: Any) -> None:
        """Register one plugin and run its registration hooks; record any failure."""
        info = self.infos[name]
        staged: list[tuple[str, str, type]] = []
        named: dict[str, list[tuple[str, Any]]] = {what: [] for what in NAMED_HOOKS}
        try:
            self.pm.register(plugin, name=name)
            try:
                self.pm.check_pending()
                for kind, hook_name in REGISTER_HOOKS.items():
                    for impl in self._impls(hook_name, name):
                        impl.function(register=self._stager(kind, staged))
                for what, hook_name in NAMED_HOOKS.items():
                    for impl in self._impls(hook_name, name):
                        impl.function(register=lambda n, obj, into=named[what]: into.append((str(n), obj)))
            except BaseException:
                self.pm.unregister(name=name)
                raise
        except Exception as exc:  # noqa: BLE001 - isolation is the point
            info.status, info.error = "failed", _describe(exc)
            return
        info.status, info.error = "loaded", None
        info.provides = _empty_provides()
        for kind, component, cls in staged:
            self.components[kind].setdefault(component, []).append((name, cls))
            info.provides[kind].append(component)
        for what, entries in named.items():
            for entry_name, obj in entries:
                self.named[what].setdefault(entry_name, []).append((name, obj))
            info.named[what] = [entry_name for entry_name, _ in entries]
        info.commands = [] if not self._impls("heirloom_register_commands", name) else info.commands

    def _impls(self, hook_name: str, plugin_name: str) -> list[Any]:
        hook = getattr(self.pm.hook, hook_name)
        return [impl for impl in hook.get_hookimpls() if impl.plugin_name == plugin_name]

    @staticmethod
    def _stager(kind: str, staged: list[tuple[str, str, type]]):
        base = KIND_BASES[kind]

        def register(name: str, cls: type) -> None:
            if not isinstance(name, str) or not COMPONENT_NAME.match(name):
                raise PluginError(f"invalid {kind} name {name!r}: use lower-case, digits, '-', '_', '.'")
            if not (isinstance(cls, type) and attrs.has(cls) and issubclass(cls, base)):
                raise PluginError(
                    f"{kind} {name!r}: {cls!r} must be an attrs class subclassing heirloom.{base.__name__}"
                )
            staged.append((kind, name, cls))

        return register

    def load(self, name: str) -> bool:
        """Import and register the entry point ``name`` if not done yet; True if loaded."""
        info = self.infos[name]
        if info.status == "listed":
            try:
                plugin = self._entry_points[name].load()
            except Exception as exc:  # noqa: BLE001 - a plugin may raise anything on import
                info.status, info.error = "failed", _describe(exc)
            else:
                self._load(name, plugin)
        return info.status == "loaded"

    def load_all(self) -> None:
        """Import every listed plugin (``heirloom plugins`` does this to show failures)."""
        for name in sorted(self.infos):
            self.load(name)
        self._write_catalog()

    def ensure(
        self,
        components: Iterable[tuple[str, str]] = (),
        profiles: Iterable[str] = (),
        pretrained: Iterable[str] = (),
    ) -> None:
        """Import the plugins that provide these component types, profiles, pretrained states.

        Plugins the catalog does not know are imported too (their contents are unknown);
        if something is still missing afterwards, everything is imported as a last resort.
        """
        wanted_components = set(components)
        wanted_named = {"profiles": set(profiles), "pretrained": set(pretrained)}
        todo = {n for n, i in self.infos.items() if i.status == "listed" and not self._known_to_catalog(n)}
        for name, info in self.infos.items():
            if info.status != "listed":
                continue
            if any(component in info.provides[kind] for kind, component in wanted_components):
                todo.add(name)
            if any(wanted & set(info.named[what]) for what, wanted in wanted_named.items()):
                todo.add(name)
        for name in sorted(todo):
            self.load(name)
        missing = any(c not in self.components[k] for k, c in wanted_components) or any(
            entry not in self.named[what] for what, wanted in wanted_named.items() for entry in wanted
        )
        if missing:
            for name in sorted(self.infos):
                self.load(name)
        if todo or missing:
            self._write_catalog()

    # -- queries -----------------------------------------------------------------------
    @property
    def profiles(self) -> dict[str, list[tuple[str, Any]]]:
        """``name -> [(plugin, path)]`` of the profiles plugins ship."""
        return self.named["profiles"]

    def pretrained(self, name: str) -> tuple[Any, PluginInfo]:
        """The state a plugin registered as ``pretrained:NAME`` (loaded now) and its plugin."""
        self.ensure(pretrained=[name])
        providers = self.named["pretrained"].get(name, [])
        known = sorted(self.named["pretrained"])
        if not providers:
            raise PluginError(f"no plugin registers pretrained:{name} (registered: {', '.join(known) or 'none'})")
        if len(providers) > 1:
            labels = " and ".join(self.infos[p].label for p, _ in providers)
            raise PluginError(f"pretrained:{name} is registered by two plugins: {labels}")
        plugin, load = providers[0]
        return load(), self.infos[plugin]

    def component_type(self, kind: str, name: str) -> type | None:
        """The class registered as ``name``; None if unknown; PluginError if ambiguous."""
        providers = self.components[kind].get(name, [])
        if len(providers) > 1:
            labels = " and ".join(self.infos[p].label for p, _ in providers)
            raise PluginError(
                f"{kind} type {name!r} is registered by two plugins: {labels}; "
                "disable one with HEIRLOOM_DISABLE_PLUGINS"
            )
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

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.status == "failed"]

    def conflicts(self) -> dict[str, list[str]]:
        """``"kind name" -> [plugin labels]`` for names registered more than once."""
        return {
            f"{kind} {name}": [self.infos[p].label for p, _ in providers]
            for kind, table in self.components.items()
            for name, providers in table.items()
            if len(providers) > 1
        }

    # -- commands and notifications ----------------------------------------------------
    def command_plugins(self) -> dict[str, str]:
        """``command name -> plugin name`` as far as the catalog knows."""
        return {cmd: name for name, info in self.infos.items() for cmd in info.commands}

    def add_commands(self, cli: Any, plugin_name: str) -> list[BaseException]:
        """Let one plugin add its commands to ``cli``; remember their names for next time."""
        if not self.load(plugin_name):
            return []
        before = set(cli.commands)
        errors = self._call_isolated("heirloom_register_commands", {"cli": cli}, only=plugin_name)
        info = self.infos[plugin_name]
        added = sorted(set(cli.commands) - before)
        if added != info.commands:
            info.commands = added
            self._write_catalog()
        return errors

    def plugins_with_commands(self) -> list[str]:
        return [
            n for n, i in self.infos.items() if i.status == "loaded" and self._impls("heirloom_register_commands", n)
        ]

    def notify(self, hook_name: str, **kwargs: Any) -> list[BaseException]:
        """Call a notification hook on every plugin, each in isolation; return the errors."""
        return self._call_isolated(hook_name, kwargs)

    def _call_isolated(self, hook_name: str, kwargs: dict[str, Any], only: str | None = None) -> list[BaseException]:
        errors: list[BaseException] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if only is not None and impl.plugin_name != only:
                continue
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - one plugin's hook must not break others
                label = self.infos[impl.plugin_name].label if impl.plugin_name in self.infos else impl.plugin_name
                errors.append(PluginError(f"plugin {label}: {hook_name} failed: {_describe(exc)}"))
        return errors
