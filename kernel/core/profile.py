"""Profiles: TOML files that name components and wire them, resolved into one tree.

Resolution: load the file, resolve its ``extends`` chain (names or relative paths),
deep-merge parents then child (later wins; a table whose ``use`` changes is replaced, not
merged; ``project`` is never inherited), apply ``--set`` overrides, drop components with ``enabled = false``, and
interpolate ``${VAR}`` / ``${data}``. Every leaf value remembers the file that set it.
Validation against component schemas happens in :mod:`heirloom.core.schema`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.components import KINDS, TABLES
from heirloom.core.errors import Problem, ProfileError
from heirloom.core.paths import data_root

SINGLE_COMPONENT_TABLES = {"resources"}  # one resource manager per system: [resources]
OVERRIDE_SOURCE = "--set"
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@attrs.frozen
class SetValue:
    """A ``--set`` value kept as text until the schema says what type it must be."""

    text: str


@attrs.define
class RawProfile:
    """A merged, not yet validated profile: the tree and where each leaf came from."""

    name: str
    file: str
    data: dict[str, Any]
    provenance: dict[str, str]
    files: list[str]


def display_path(path: Path | str) -> str:
    """A path relative to the working directory when under it (shorter messages)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def profile_name(path: Path) -> str:
    return path.name.removesuffix(".toml")


ProfileLookup = Callable[[str], "Path | None"]


class ProfileLoader:
    """Finds profile files by name or path and resolves ``extends`` chains."""

    def __init__(self, registered: ProfileLookup | None = None):
        self._registered = registered or (lambda name: None)

    def search_dirs(self) -> list[Path]:
        dirs = [Path(p) for p in os.environ.get("HEIRLOOM_PROFILE_PATH", "").split(os.pathsep) if p]
        return [*dirs, Path.cwd() / "profiles"]

    def find(self, ref: str, relative_to: Path | None = None) -> Path | None:
        """A path for ``ref``: a ``.toml`` path, else a name in the search path or a plugin."""
        if ref.endswith(".toml") or "/" in ref or os.sep in ref:
            candidate = Path(ref) if relative_to is None else relative_to / ref
            return candidate if candidate.is_file() else None
        dirs = ([relative_to] if relative_to is not None else []) + self.search_dirs()
        for directory in dirs:
            candidate = directory / f"{ref}.toml"
            if candidate.is_file():
                return candidate
        return self._registered(ref)

    def load(self, ref: str, overrides: Iterable[str] = ()) -> RawProfile:
        """Resolve ``ref`` and its ``extends`` chain into one merged tree, or raise."""
        path = self.find(ref)
        if path is None:
            raise ProfileError(
                [
                    Problem(
                        ref,
                        "",
                        "no such profile file or profile name (searched: "
                        + ", ".join(display_path(d) for d in self.search_dirs())
                        + " and plugin profiles)",
                    )
                ]
            )
        problems: list[Problem] = []
        data: dict[str, Any] = {}
        provenance: dict[str, str] = {}
        files: list[str] = []
        self._merge_file(path, data, provenance, files, problems, chain=[])
        _apply_overrides(data, provenance, overrides, problems)
        _drop_disabled(data, provenance)
        _interpolate(data, provenance, problems, [])
        if problems:
            raise ProfileError(problems)
        return RawProfile(
            name=profile_name(path), file=display_path(path), data=data, provenance=provenance, files=files
        )

    def _merge_file(
        self, path: Path, data: dict, provenance: dict, files: list[str], problems: list[Problem], chain: list[Path]
    ) -> None:
        label = display_path(path)
        resolved = path.resolve()
        if resolved in chain:
            cycle = " -> ".join(display_path(p) for p in [*chain, resolved])
            problems.append(Problem(label, "extends", f"extends cycle: {cycle}"))
            return
        try:
            tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            problems.append(Problem(label, "", f"invalid TOML: {exc}"))
            return
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(label, "", f"cannot read: {exc}"))
            return
        if chain:
            # a project's name (its artifact namespace) is its own: never inherited, so a new
            # project that extends "finance" stores its models under its own name
            tree.pop("project", None)
        parents = tree.pop("extends", [])
        if isinstance(parents, str):
            parents = [parents]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            problems.append(Problem(label, "extends", f"expected a profile name or a list of names, got {parents!r}"))
            parents = []
        for parent in parents:
            parent_path = self.find(parent, relative_to=path.parent)
            if parent_path is None:
                problems.append(
                    Problem(
                        label,
                        "extends",
                        f"no profile named {parent!r} (looked next to "
                        f"{label}, in {', '.join(display_path(d) for d in self.search_dirs())} "
                        "and plugin profiles)",
                    )
                )
                continue
            self._merge_file(parent_path, data, provenance, files, problems, [*chain, resolved])
        _merge(data, tree, provenance, label, [])
        files.append(label)


def _merge(base: dict, overlay: dict, provenance: dict[str, str], label: str, path: list[str]) -> None:
    """Deep-merge ``overlay`` into ``base``; record ``label`` as provenance of each leaf."""
    for key, value in overlay.items():
        here = [*path, key]
        swaps_type = isinstance(value, dict) and "use" in value and isinstance(base.get(key), dict)
        if swaps_type and _is_component_table(here) and value["use"] != base[key].get("use"):
            _forget(provenance, here)  # swapping the component type replaces the table
            base[key] = {}
        if isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                _forget(provenance, here)
                base[key] = {}
            _merge(base[key], value, provenance, label, here)
            if not value:
                provenance[".".join(here)] = label
        else:
            _forget(provenance, here)
            base[key] = value
            provenance[".".join(here)] = label


def _is_component_table(path: list[str]) -> bool:
    if len(path) == 1 and path[0] in SINGLE_COMPONENT_TABLES:
        return True
    return len(path) == 2 and path[0] in TABLES.values() and path[0] not in SINGLE_COMPONENT_TABLES


def _forget(provenance: dict[str, str], path: list[str]) -> None:
    prefix = ".".join(path)
    for key in [k for k in provenance if k == prefix or k.startswith(prefix + ".")]:
        del provenance[key]


def _apply_overrides(data: dict, provenance: dict, overrides: Iterable[str], problems: list[Problem]) -> None:
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            problems.append(Problem(OVERRIDE_SOURCE, key, f"expected KEY.PATH=VALUE, got {item!r}"))
            continue
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(Problem(OVERRIDE_SOURCE, key, f"{part!r} is a value, not a table"))
                break
            node = child
        else:
            _forget(provenance, parts)
            node[parts[-1]] = SetValue(text)
            provenance[key.strip()] = OVERRIDE_SOURCE


def _drop_disabled(data: dict, provenance: dict) -> None:
    """Remove components whose merged table says ``enabled = false``."""
    for kind in KINDS:
        table_name = TABLES[kind]
        table = data.get(table_name)
        if not isinstance(table, dict):
            continue
        if table_name in SINGLE_COMPONENT_TABLES:
            if _disabled(table.get("enabled")):
                del data[table_name]
                _forget(provenance, [table_name])
            continue
        for name in [n for n, t in table.items() if isinstance(t, dict) and _disabled(t.get("enabled"))]:
            del table[name]
            _forget(provenance, [table_name, name])


def _disabled(value: Any) -> bool:
    if isinstance(value, SetValue):
        return value.text.strip().lower() in ("false", "0", "no")
    return value is False


def _interpolate(node: Any, provenance: dict, problems: list[Problem], path: list[str]) -> Any:
    if isinstance(node, dict):
        for key in list(node):
            node[key] = _interpolate(node[key], provenance, problems, [*path, str(key)])
        return node
    if isinstance(node, list):
        return [_interpolate(item, provenance, problems, path) for item in node]
    if isinstance(node, SetValue):
        return SetValue(_substitute(node.text, provenance, problems, path))
    if isinstance(node, str):
        return _substitute(node, provenance, problems, path)
    return node


def _substitute(text: str, provenance: dict, problems: list[Problem], path: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name == "data":
            root = data_root()
            if root is not None:
                return str(root)
        elif name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        key = ".".join(path)
        what = (
            "HEIRLOOM_DATA is not set (it points at the data folder)"
            if name == "data"
            else (f"environment variable {name} is not set")
        )
        problems.append(Problem(provenance.get(key, "?"), key, f"cannot interpolate ${{{name}}}: {what}"))
        return match.group(0)

    return _VAR.sub(replace, text)
