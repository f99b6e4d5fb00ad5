"""Typed reading of the FHIR fields the records copy: each is its JSON type or absent, else a ValueError
naming the field's path (``code.coding[0].display: expected a string, got an object: {"a": 1}``).

Read leniently, a wrong type passed ``heirloom data stats`` and failed later with no field named (a
``display`` given as an object made every label set unhashable: ``train`` crashed and the daemon refused
to start over one resource), or silently became "nothing" (a ``coding`` given as one object: the code
lost; a ``period`` given as a string: the visit undated; a ``system`` of 5: the code ``5|...``).
"""

from __future__ import annotations

from typing import Any

from heirloom_plugins.fhir.parse import found


def text(value: Any, field: str) -> str | None:
    """``value`` when a string or absent."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field}: expected a string, got {found(value)}")
    return value


def number(value: Any, field: str) -> int | float | None:
    """``value`` when a JSON number (not a boolean, not a string such as ``"NaN"``) or absent."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{field}: expected a number, got {found(value)}")
    return value


def obj(value: Any, field: str, shape: str = "an object") -> dict[str, Any] | None:
    """``value`` when a JSON object or absent; ``shape`` says what it should be (``a Quantity object``)."""
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{field}: expected {shape}, got {found(value)}")
    return value


def objects(value: Any, field: str, kind: str = "") -> list[tuple[str, dict[str, Any]]]:
    """``(path, item)`` of each object in the array ``value`` (absent: none; a null item is passed over, as
    FHIR's JSON keeps nulls only to align arrays); an array that is something else, or an item that is
    neither an object nor null, is refused by its path. ``kind`` names the objects (``Coding``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: expected a list of {kind} objects, got {found(value)}".replace("  ", " "))
    one = f"a {kind} object" if kind else "an object"
    return [(f"{field}[{i}]", obj(item, f"{field}[{i}]", one)) for i, item in enumerate(value) if item is not None]


def first(value: Any, field: str, kind: str = "") -> tuple[str, dict[str, Any] | None]:
    """The path and item of an array's first object (a type, a reference range), ``(field, None)`` when none."""
    items = objects(value, field, kind)
    return items[0] if items else (field, None)
