"""What the contract checks of ``heirloom.testing`` say where a model's answers or its class changed: the first
difference, shown where the two texts differ, and the class attributes a fit changed."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any


def first_difference(before: list[Any], after: list[Any]) -> str:
    """Where the predictions of the fitted model and of the one loaded from its state first differ, both shown, cut
    around where their texts differ: "predictions differ" gave no input to debug ``load`` with, and a cut at the
    start hid a difference deep in a long vector."""
    at = differs_at(before, after)
    was, now = (repr(o[at]) if at < len(o) else f"missing ({len(o)} predictions)" for o in (before, after))
    start = max(0, differs_at(was, now) - 60)

    def shown(said: str) -> str:
        cut = f"{'...' * (start > 0)}{said[start : start + 200]}{'...' * (start + 200 < len(said))}"
        return said if len(said) <= 200 else f"{cut} ({len(said)} characters, shown from {start})"

    return (
        f"after state() -> store -> load(), predictions differ, first at input {at}: {shown(was)} from the fitted "
        f"model, {shown(now)} from the one that loaded its state (load() does not restore what state() saved, or "
        "predict is not deterministic?)"
    )


def differs_at(x: Sequence[Any], y: Sequence[Any]) -> int:
    """The first position where ``x`` and ``y`` differ (the shorter one's length where it begins the other)."""
    return next((i for i, (a, b) in enumerate(zip(x, y, strict=False)) if a != b), min(len(x), len(y)))


def class_data(cls: type) -> dict[str, str]:
    """The text (``repr``) of each data attribute of ``cls`` and of its bases but heirloom's and Python's own."""
    return {
        f"{klass.__name__}.{name}": repr(value)
        for klass in cls.__mro__
        if klass.__module__.partition(".")[0] not in ("heirloom", "builtins", "abc", "typing")
        for name, value in vars(klass).items()
        if not name.startswith("__")
        and not callable(value)
        and not hasattr(value, "__get__")
        and not isinstance(value, types.ModuleType)  # a lazy import kept on the class is no learnt state
    }


def class_changed(before: dict[str, str], after: dict[str, str]) -> str:
    """Why a fit that changed class attributes (``before`` and ``after``: :func:`class_data`) is refused: what it
    learnt there is every instance's in this process, so a fresh one passed the state round trip, while a new
    process (``eval``, ``serve``) loading ``state()`` has none of it (an outside check's model answered "?" there)."""
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    return (
        f"fit changed {', '.join(changed)}, an attribute of the class, not of the instance: keep what fit learns on "
        "the instance and in state(); a new process (heirloom eval, serve) loading state() does not have it"
    )
