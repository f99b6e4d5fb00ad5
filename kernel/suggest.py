"""``; did you mean 'x'?``: the closest of the valid names to a mistyped one, for the error naming it.

It imports nothing of heirloom, so the converter (which the kernel's layers import) offers it too."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    folded = {choice.casefold(): choice for choice in reversed(list(choices))}  # PREDICT: predict, not labels
    return "".join(f"; did you mean {folded[c]!r}?" for c in difflib.get_close_matches(name.casefold(), folded, 1))


def extends_hint(parent: str, folder: Path, is_name: Callable[[str], bool]) -> str:
    """More for an ``extends`` entry that found nothing, in ``folder``'s file: the form that would have
    (``sub/B.toml`` for ``sub/B``, ``minimal`` for ``minimal.toml``), or that ``${VAR}`` is not read there."""
    if "${" in parent:
        return "; extends is not interpolated (${VAR} is read in values only): write the name or path itself"
    if not parent.endswith(".toml") and "/" in parent and (folder / f"{parent}.toml").is_file():
        return f"; did you mean {parent + '.toml'!r}? (a path names the file, .toml too)"
    if parent.endswith(".toml") and "/" not in parent and is_name(name := parent.removesuffix(".toml")):
        return f"; did you mean {name!r}? (a profile name, without .toml: a path is looked up next to this file only)"
    return ""


def dotted_name_hint(parts: list[str], names: Any) -> str:
    """``; did you mean 'models."sent.v2".epochs'?`` for the key ``models.sent.v2.epochs`` where a component
    is named ``sent.v2`` in ``names`` (a dict; in a dotted key, a name holding a dot goes in quotes), else ""."""
    for name in names if isinstance(names, dict) else ():
        if "." in name and parts[1 : 2 + name.count(".")] == name.split("."):
            rest = "".join(f".{part}" for part in parts[2 + name.count(".") :])
            return f"; did you mean '{parts[0]}.{json.dumps(name)}{rest}'? (a name holding a dot goes in quotes)"
    return ""
