"""``; did you mean 'x'?``: the closest of the valid names to a mistyped one, for the error naming it.

It imports nothing of heirloom, so the converter (which the kernel's layers import) offers it too."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the choice closest to ``name`` in any case (difflib's), "" for none close."""
    folded = {choice.casefold(): choice for choice in reversed(list(choices))}  # PREDICT: predict, not labels
    return "".join(f"; did you mean {folded[c]!r}?" for c in difflib.get_close_matches(name.casefold(), folded, 1))


def abbreviates(name: str, choices: Iterable[str]) -> str:
    """``; did you mean 'production'?`` for a name of 3 letters or more that begins the choices (``prod``), which
    no spelling rule finds close; each one when several do (``prod-eu`` beside ``production``: v17 F4); in any case
    (``Prod``, ``PRODUCTION``: v23 F4)."""
    folded = name.casefold()
    found = sorted(c for c in choices if len(name) > 2 and c != name and c.casefold().startswith(folded))
    return f"; did you mean {' or '.join(map(repr, found))}?" if found else ""


def toml_beside(name: str, skip: Path | None = None) -> list[str]:
    """The ``.toml`` files in the folder of the file ``name`` names (the working folder for a bare name), as
    ``name`` would write them: the closest is a mistyped profile path's (``mien.toml`` beside ``mine.toml``); for
    an ``extends`` entry (``skip``: the extending file) the names of those beside that file, as the entry would
    write them, not ``skip`` itself (``selfn.toml`` for its own ``extends = ["selfn"]``: a cycle, checker 305 F7).
    Paths are compared by ``os.path.realpath``: ``Path.resolve`` raised on a symbolic link loop (checker h325 F14)."""
    beside = skip is not None and "/" not in name
    folder = skip.parent if beside and skip is not None else Path(name).parent
    try:
        found = [path for path in folder.glob("*.toml") if skip is None or Path(os.path.realpath(path)) != skip]
    except OSError:  # a folder it may not read
        return []
    return sorted(path.stem if beside else str(path) for path in found)


def extends_hint(parent: str, folder: Path, is_name: Callable[[str], bool]) -> str:
    """More for an ``extends`` entry that found nothing, in ``folder``'s file: the form that would have
    (``sub/B.toml`` for ``sub/B``, ``minimal`` for ``minimal.toml``), or that ``${VAR}`` is not read there."""
    if "${" in parent:
        return "; extends is not interpolated (${VAR} is read in values only): write the name or path itself"
    if not parent.endswith(".toml") and "/" in parent and (folder / f"{parent}.toml").is_file():
        return f"; did you mean {parent + '.toml'!r}? (a path names the file, .toml too)"
    return name_hint(parent, is_name, ": a path is looked up next to this file only")


def name_hint(ref: str, is_name: Callable[[str], bool], why: str = "") -> str:
    """``; did you mean 'minimal'?`` for ``minimal.toml`` that is no file where ``minimal`` names a profile (a
    file beside it was proposed, checker 305 F12), else ""."""
    if ref.endswith(".toml") and "/" not in ref and is_name(name := ref.removesuffix(".toml")):
        return f"; did you mean {name!r}? (a profile name, without .toml{why})"
    return ""


def dotted_name_hint(parts: list[str], names: Any) -> str:
    """``; did you mean 'models."sent.v2".epochs'?`` for the key ``models.sent.v2.epochs`` where a component
    is named ``sent.v2`` in ``names`` (a dict; in a dotted key, a name holding a dot goes in quotes), else ""."""
    for name in names if isinstance(names, dict) else ():
        if "." in name and parts[1 : 2 + name.count(".")] == name.split("."):
            rest = "".join(f".{part}" for part in parts[2 + name.count(".") :])
            return f"; did you mean '{parts[0]}.{json.dumps(name)}{rest}'? (a name holding a dot goes in quotes)"
    return ""


def whole_value_hint(parts: list[str], names: Any) -> str:
    """``dotted_name_hint``'s, else for a ``--set`` of a list's item (``models.m.char_ngrams.0``), that a
    list is set whole: it read as a table's key, "not a table or extends" alone."""
    if hint := dotted_name_hint(parts, names):
        return hint
    if len(parts) > 3 and parts[-1].isdigit():
        key = ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part) for part in parts[:-1])
        return f"; {parts[-1]} is a list's index: set the list whole ({key}=[..., ...])"
    return ""


def no_such_component(table: str, name: str, names: Iterable[str], hint: str = "") -> str:
    """What a key or ``enabled = false`` naming no component of ``table`` (one of ``names``) says, alike for a
    file and ``--set``: a typo of an inherited name would otherwise make (or drop) nothing, unsaid."""
    names = list(names)
    return f"no such component{hint or did_you_mean(name, names)} ({table}: {', '.join(names) or 'none'})"


def no_component_to_change(name: str, group: dict[str, Any], disabled: dict[str, str] | None = None) -> str:
    """For a table without ``use`` named like a component of ``group`` (a profile's table of them), or of
    ``disabled`` (those an ``enabled = false`` dropped, each with its file: checker h325 F8): a typo of the one
    it meant to change, else "" (then its ``use`` is what is missing)."""
    hint = did_you_mean(name, _defined(group))
    if not hint and (close := difflib.get_close_matches(name, list(disabled or {}), 1)):
        hint = f"; did you mean {close[0]!r}? (disabled by enabled = false in {(disabled or {})[close[0]]})"
    return hint and f"no component {name!r} to change{hint} (a new component needs `use`)"


def disabled_by(disabled: dict[str, str], key: str) -> str:
    """``models.clf is disabled (by enabled = false in FILE)`` where ``disabled`` (a profile's components an
    ``enabled = false`` dropped, by dotted key) holds ``key``, else "": a command naming one said "no such"."""
    return f"{key} is disabled (by enabled = false in {disabled[key]})" if key in disabled else ""


def undefined(table: str, name: str, group: dict[str, Any]) -> str:
    """What ``enabled = false`` on ``group[name]`` says where no file defined that component (its table has no
    ``use``): "" when one did."""
    defined = _defined(group)
    return "" if name in defined else no_such_component(table, name, defined)


def _defined(group: dict[str, Any]) -> list[str]:
    """The names in a profile's table of components (``models``) of those a file defined: they have a ``use``."""
    return [name for name, component in group.items() if isinstance(component, dict) and "use" in component]
