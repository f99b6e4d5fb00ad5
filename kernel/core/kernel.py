"""The Kernel: one plugin host plus profile resolution; the entry point for everything."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from heirloom.core.consoles import Console
from heirloom.core.errors import PluginError
from heirloom.core.plugins import PluginHost
from heirloom.core.profile import ProfileLoader, RawProfile, display_path
from heirloom.core.schema import ResolvedProfile, validate
from heirloom.core.serving import VersionStore
from heirloom.core.system import System
from heirloom.suggest import abbreviates, did_you_mean, name_hint, toml_beside


class Kernel:
    """Isolated plugin state: build as many as you like (tests do). ``plugins`` registers extra plugin objects
    directly (modules or instances with hookimpls); ``use_entry_points=False`` ignores installed plugins entirely."""

    def __init__(self, *, plugins: Iterable[Any] = (), use_entry_points: bool = True, catalog_path: Path | None = None):
        self.plugins = PluginHost(use_entry_points=use_entry_points, plugins=plugins, catalog_path=catalog_path)
        self.loader = ProfileLoader(registered=self._registered_profile, missing=self._missing_profile)

    def _registered_profile(self, name: str) -> Path | None:
        self.plugins.ensure(profiles=[name])
        entries = self.plugins.profiles.get(name, [])
        if len(entries) > 1:  # which one a name means must not depend on which plugin loaded first
            labels = " and ".join(self.plugins.infos[plugin].label for plugin, _ in entries)
            raise PluginError(f"profile {name!r}: registered by {labels}; disable one (HEIRLOOM_DISABLE_PLUGINS)")
        return Path(str(entries[0][1])) if entries else None

    def _missing_profile(self, name: str, skip: Path | None = None) -> str:
        """More about a profile name nothing provides: the failed or left-out plugin that shipped it, else a
        close name, the plugins that failed and those the environment left out."""
        if "/" in name or name.endswith(".toml"):
            found = name_hint(name, lambda ref: self.loader.find(ref) is not None)  # minimal.toml: 'minimal'
            return found or did_you_mean(name, toml_beside(name, skip))
        if skip is None and Path(f"{name}.toml").is_file():  # ./B.toml: the command line looks no name up here
            return f"; did you mean {name + '.toml'!r}? (a file in this folder is named by its path)"
        if shipped_by := [info for info in self.plugins.failures() if name in info.named.get("profiles", [])]:
            failed = "; ".join(f"{i.label}: {i.error}" for i in shipped_by)
            return f"; it comes from a plugin that failed to load: {failed}"
        if left_out := self.plugins.left_out("profiles", name):
            return f"; it comes from {left_out}"
        names = [e["name"] for e in self.available_profiles()]  # all plugins
        close = did_you_mean(name, names + toml_beside(name, skip)) or abbreviates(name, names)  # finance (h429 F5)
        failed = "; ".join(f"{info.label}: {info.error}" for info in self.plugins.failures())
        return close + (f"; these plugins failed to load: {failed}" if failed else "") + self.plugins.selection()

    def load_profile(self, ref: str, overrides: Iterable[str] = ()) -> RawProfile:
        """Merge ``ref`` (a path or a name) with its ancestors and overrides."""
        return self.loader.load(ref, overrides)

    def resolve(self, ref: str, overrides: Iterable[str] = ()) -> ResolvedProfile:
        """Load and validate ``ref``; raises ProfileError listing every problem."""
        return validate(self.load_profile(ref, overrides), self.plugins)

    def system(
        self,
        ref: str | ResolvedProfile,
        overrides: Iterable[str] = (),
        only: set[tuple[str, str]] | None = None,
        serve_models: bool = False,
    ) -> System:
        """A system for ``ref``, built but not started. ``only`` (``{(kind, name)}``) limits it to those
        components and their dependencies, e.g. one source for ``heirloom data show``. ``serve_models``
        loads each model's served version from the artifact store and follows it (``serve``, ``eval``)."""
        profile = ref if isinstance(ref, ResolvedProfile) else self.resolve(ref, overrides)
        return System(profile, self.plugins, only, store=self.store(profile) if serve_models else None)

    def store(self, profile: ResolvedProfile | None = None, create: bool = True) -> Any:
        """The artifact store a profile uses (``HEIRLOOM_STORE``, else ``[store] path``, else
        ``$HEIRLOOM_HOME/store``), opened by the ``heirloom_open_store`` hook: the kernel's
        store plugin answers unless another plugin answers first (``create``: see the hook)."""
        path = profile.settings["store"].path if profile is not None else None
        store: VersionStore | None = self.plugins.call_first("heirloom_open_store", path=path, create=create)
        if not all(callable(getattr(store, method, None)) for method in ("resolve", "load")):  # a str (v35 F1)
            opened = "no plugin opened one" if store is None else f"heirloom_open_store answered {type(store).__name__}"
            raise PluginError(f"no artifact store: {opened} (is a store plugin broken? heirloom plugins lists them)")
        return store

    def consoles(self) -> dict[str, Console]:
        """Web consoles registered by plugins (``heirloom_register_consoles``), by name."""
        self.plugins.ensure(hooks=["heirloom_register_consoles"])
        return {name: entries[0][1] for name, entries in sorted(self.plugins.named["consoles"].items())}

    def available_profiles(self) -> list[dict[str, Any]]:
        """Profiles found in the search path and registered by plugins (imports all plugins), each with
        the files of its name it ``shadows`` (later in the lookup: only a file of that name extends one)."""
        found: dict[str, dict[str, dict[str, str]]] = {}  # by real path (./profiles may be the plugin's folder)
        for directory in self.loader.search_dirs():  # in lookup order: the first is the one a name means
            for path in [p for p in sorted(directory.glob("*.toml")) if p.is_file()] if directory.is_dir() else []:
                entry = {"path": display_path(path), "origin": display_path(directory)}
                found.setdefault(path.stem, {}).setdefault(os.path.realpath(path), entry)
        self.plugins.load_all()
        for name, ((plugin, path), *_) in sorted(self.plugins.profiles.items()):
            entry = {"path": str(path), "origin": f"plugin {self.plugins.infos[plugin].label}"}
            found.setdefault(name, {}).setdefault(os.path.realpath(str(path)), entry)
        listed = sorted((name, *entries.values()) for name, entries in found.items())
        return [{"name": name, **one, "shadows": [o["path"] for o in rest]} for name, one, *rest in listed]
