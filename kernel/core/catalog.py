"""What the kernel knows about each plugin, and the cache that spares imports.

The catalog (one JSON file per Python environment) remembers what each plugin provided the last time it was imported:
component types, named things (profiles, pretrained states, consoles, data sets), commands and the hooks it implements.
It is keyed by a fingerprint of the plugin's distribution, version and module file, so a profile imports only the
plugins it uses, and a new, upgraded or edited plugin is imported again to learn what it offers."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.components import KINDS
from heirloom.core.paths import cache_dir
from heirloom.files import write_atomic
from heirloom.selection import release

CATALOG_VERSION = 5
#: The hooks a plugin that failed and never loaded may implement, so import again to ask: a store, listeners, names.
UNKNOWN_HOOKS = ["heirloom_open_store", "heirloom_system_started", "heirloom_system_stopping"]
UNKNOWN_HOOKS += ["heirloom_register_datasets", "heirloom_register_consoles"]  # each asked for by name
#: Things plugins register by name besides component types, and the hook that registers each.
NAMED_HOOKS = {
    "profiles": "heirloom_register_profiles",
    "pretrained": "heirloom_register_pretrained",
    "consoles": "heirloom_register_consoles",
    "datasets": "heirloom_register_datasets",
}


@attrs.define
class PluginInfo:
    """What the kernel knows about one plugin, loaded or not."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "listed"  # listed (not imported) | loaded | failed
    error: str | None = None
    provides: dict[str, list[str]] = attrs.field(factory=lambda: {kind: [] for kind in KINDS})
    #: Profiles, pretrained states, consoles, data sets it registers, by name (``NAMED_HOOKS``).
    named: dict[str, list[str]] = attrs.field(factory=lambda: {what: [] for what in NAMED_HOOKS})
    commands: list[str] | None = None  # None until its commands hook ran ([]: it adds none; not imported to ask)
    #: Names of the hooks it implements.
    hooks: list[str] = attrs.field(factory=list)
    fingerprint: str = ""
    #: One of the kernel's own plugins: always loaded, never disabled by the environment.
    builtin: bool = False

    @property
    def label(self) -> str:
        """``name (distribution version)``, for error messages."""
        return f"{self.name} ({self.distribution} {self.version})" if self.distribution else self.name

    def to_json(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in ("name", "distribution", "version", "status", "builtin")}
        data["provides"] = {kind: sorted(names) for kind, names in self.provides.items()}
        data |= {what: sorted(names) for what, names in self.named.items()} | {"commands": sorted(self.commands or [])}
        if self.error:  # why it failed to load, or its commands hook raised
            data["error"] = self.error
        return data


def fingerprint(ep: EntryPoint) -> str:
    """Changes when the plugin's distribution, version or entry module file changes."""
    try:
        origin = getattr(importlib.util.find_spec(ep.module), "origin", None)
        stamp = os.stat(origin).st_mtime_ns if origin and os.path.exists(origin) else 0
    except Exception:  # noqa: BLE001 - a broken package still gets listed
        stamp = -1
    dist = "==".join(release(ep.dist)) if ep.dist is not None else "-"
    return f"{dist}|{ep.value}|{stamp}"


class Catalog:
    """The on-disk cache of what plugins provide (a read-only cache only costs time)."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / f"plugins-{hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]}.json"
        self.entries: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        plugins = data.get("plugins") if isinstance(data, dict) and data.get("version") == CATALOG_VERSION else None
        return plugins if isinstance(plugins, dict) else {}

    def knows(self, info: PluginInfo) -> bool:
        return bool(info.fingerprint) and self.entries.get(info.name, {}).get("fingerprint") == info.fingerprint

    def fill(self, info: PluginInfo) -> PluginInfo:
        """Copy what the catalog remembers into a listed plugin's info, if still valid."""
        if self.knows(info):
            cached = self.entries[info.name]
            info.provides = {k: list(cached["provides"].get(k, [])) for k in KINDS}
            info.named = {what: list(cached.get("named", {}).get(what, [])) for what in NAMED_HOOKS}
            info.commands, info.hooks = cached.get("commands"), list(cached.get("hooks", []))  # commands None: unknown
        return info

    def gone(self, listed: set[str], kind: str, name: str) -> list[str]:
        """``acme (heirloom-acme 0.3.1)`` for each plugin not ``listed`` now (uninstalled) that provided ``name`` when
        last imported: a component type of ``kind``, or a profile, command... (``profiles``, ``commands``)."""
        found = []
        for plugin, entry in self.entries.items():
            provided = {**entry.get("provides", {}), **entry.get("named", {}), "commands": entry.get("commands")}
            if plugin not in listed and name in (provided.get(kind) or ()):
                dist = str(entry.get("fingerprint", "")).partition("|")[0].replace("==", " ")
                found.append(f"{plugin} ({dist})" if dist not in ("", "-") else plugin)
        return found

    def save(self, infos: dict[str, PluginInfo]) -> None:
        """Remember loaded plugins; a failed one keeps what it last provided, under its fingerprint now (h446 F1)."""
        kept = ("fingerprint", "provides", "named", "commands", "hooks")
        for name, info in infos.items():
            if info.fingerprint and info.status == "loaded":
                self.entries[name] = {key: getattr(info, key) for key in kept}
            elif info.fingerprint and info.status == "failed":
                last = self.entries.get(name, {"provides": {}, "commands": [], "hooks": UNKNOWN_HOOKS})
                self.entries[name] = {**last, "fingerprint": info.fingerprint}
        payload = {"version": CATALOG_VERSION, "plugins": self.entries}
        if not self.path.parent.parent.is_dir():  # no HEIRLOOM_HOME yet: a mistyped one is not made by a read (F13)
            return
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(payload, indent=1, sort_keys=True).encode())
