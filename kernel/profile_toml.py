"""A profile dict written as TOML, for a profile file built in code: heirloom.testing's checks
build their systems from one (``heirloom.testing.to_toml`` is this function)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def to_toml(data: dict[str, Any]) -> str:
    """A profile dict as TOML: top-level scalars, then one ``[table.name]`` per component."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for table, content in data.items():
        if not isinstance(content, dict):
            continue
        nested = {name: body for name, body in content.items() if isinstance(body, dict)}
        flat = {key: value for key, value in content.items() if key not in nested and value is not None}
        if flat:
            lines += [f"[{_key(table)}]", *(f"{_key(k)} = {_value(v)}" for k, v in flat.items())]
        for name, body in nested.items():
            lines.append(f"[{_key(table)}.{_key(name)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in body.items() if v is not None]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} into a profile")
