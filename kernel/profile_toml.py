"""Profile values written as TOML: a profile dict, for a profile file built in code (heirloom.testing's checks
build their systems from one: ``heirloom.testing.to_toml`` is this function), and the key paths and values
errors quote, written as the file would write them (checker 277 F17: Python's repr was no TOML)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ITEM = re.compile(r"(\[\d+\])+$")  # a list's item: [1], or l2_search[1] as attrs names one; a key holding [ is none


def to_toml(data: dict[str, Any]) -> str:
    """A profile dict as TOML: top-level scalars, then one ``[table.name]`` per component."""
    lines = [f"{dotted([k])} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for table, content in data.items():
        if not isinstance(content, dict):
            continue
        nested = {name: body for name, body in content.items() if isinstance(body, dict)}
        flat = {key: value for key, value in content.items() if key not in nested and value is not None}
        if flat:
            lines += [f"[{dotted([table])}]", *(f"{dotted([k])} = {_value(v)}" for k, v in flat.items())]
        for name, body in nested.items():
            lines.append(f"[{dotted([table, name])}]")
            lines += [f"{dotted([k])} = {_value(v)}" for k, v in body.items() if v is not None]
    return "\n".join(lines) + "\n"


def written(value: Any, text: Callable[[str], str] | None = None) -> str:
    """A value as a profile would write it, for ``profile show`` and errors: ``true``, ``[1, true]``, ``{a = 1}``,
    ``1979-05-27``, a text in TOML's ``'...'`` (``"a\\u0000b"`` where it holds what only TOML's escapes write, not
    Python's ``'a\\x00b'``) or as ``text`` quotes it, and ``not set`` for a value an extending file unset (TOML has
    no null: checker 305 F4)."""
    if value is None:
        return "not set"
    if isinstance(value, str | Path):
        return (text or toml_text)(str(value))
    try:
        return _value(value)
    except (TypeError, AttributeError):  # no TOML value (a map with a number for a key, from msgpack)
        return repr(value)


def as_written(value: Any, text: Callable[[str], str] | None = None, limit: int = 80) -> str:
    """:func:`written`, cut at ``limit`` (an error quotes the value it refuses, which may be long); the converter
    gives ``text``: ``reprlib.repr`` where a long one would hide its end."""
    said = written(value, text)
    return said if len(said) <= limit else f"{said[: limit - 3]}..."


def toml_text(text: str) -> str:
    """``text`` as a TOML string: a literal one, ``'...'``, when it can be, else a basic one with TOML's escapes."""
    return f"'{text}'" if "'" not in text and text.isprintable() else _escaped(json.dumps(text, ensure_ascii=False))


def dotted(parts: Iterable[str]) -> str:
    """A key path as TOML writes it: ``models."sent.v2".epochs``, never ``models.sent.v2.epochs``
    (:func:`heirloom.core.profile.key_parts` reads one back); a control character escaped, as TOML does."""
    return _escaped(".".join(p if BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in parts))


def joined(prefix: str, path: Iterable[str]) -> str:
    """``prefix`` then the steps of a validation error's ``path``: each key as :func:`dotted` writes it,
    each item's index as is (``l2_search[1]``: a key holding ``[`` was left unquoted, so in Python's repr). A key is
    bare by :func:`dotted`'s rule, not ``str.isidentifier`` (``kéy`` is one): provenance holds ``"kéy"`` (F5)."""
    steps = (
        s if _ITEM.fullmatch(s) else f".{s if BARE_KEY.fullmatch(_ITEM.sub('', s)) else dotted([s])}" for s in path
    )
    return prefix + "".join(steps)


def list_key(key: str) -> str:
    """The key of the list an item's path (``tags[2]``) is in; ``key`` itself when it names no item."""
    return _ITEM.sub("", key)


def _escaped(said: str) -> str:
    """``said`` (JSON's quotes and escapes, which TOML reads) with what else is no printable character escaped."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) < 65536 else f"\\U{ord(c):08x}" for c in said)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, datetime.date | datetime.time):  # TOML's dates and times (RFC 3339)
        return value.isoformat()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dotted([k])} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} into a profile")


def hidden(message: str, value: str, written: str) -> str:
    """``message`` with ``value`` as ``written``: where quoted (a validation error quotes what it refuses), and bare
    only when long or a path, at a path's end and in no other word or path: ``is not ${TC} column`` (h419 F2, v27 F1,
    v28 F1) gave a short value away and rewrote another path."""
    for quoted in {repr(value), toml_text(value), json.dumps(value), json.dumps(value, ensure_ascii=False)}:
        message = message.replace(quoted, toml_text(written))
    if len(value) < 8 and "/" not in value:
        return message
    edges = (r"(?<![\w.-])", r"(?![\w.-])") if "/" in value else (r"(?<![\w/.-])", r"(?![\w-]|\.\w)")  # PJ/m@1
    return re.sub(rf"{edges[0]}{re.escape(value)}{edges[1]}", lambda _: written, message)
