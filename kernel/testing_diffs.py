"""What the contract checks of ``heirloom.testing`` say where a model's answers changed after the state round trip:
the first difference, shown where the two texts differ."""

from __future__ import annotations

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
