"""attrs validators for the recommend plugin's configuration (messages name the key)."""

from __future__ import annotations

import math
from typing import Any

import attrs


def share(*, zero_ok: bool):
    """A fraction in [0, 1) (``zero_ok``) or (0, 1)."""

    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not (0 <= value < 1 if zero_ok else 0 < value < 1):
            low = "0 <=" if zero_ok else "0 <"
            raise ValueError(f"'{attribute.name}' must satisfy {low} value < 1, got {value!r}")

    return check


def grid(*, low: float):
    """A non-empty list of candidate values, each >= ``low`` (one value: fixed, no tuning)."""

    def check(instance: Any, attribute: attrs.Attribute, value: list[float]) -> None:
        if not value:
            raise ValueError(f"'{attribute.name}' must list at least one value")
        bad = [v for v in value if not (math.isfinite(v) and v >= low)]  # nan compares false
        if bad:
            raise ValueError(f"'{attribute.name}' values must be finite numbers >= {low}, got {bad!r}")

    return check


def non_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must not be empty")
