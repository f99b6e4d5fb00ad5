"""The check each shipped model type makes of a parent another type wrote (``check_parent``, docs/PLUGINS.md)."""

from __future__ import annotations

from typing import Any

import heirloom


def other_format(metadata: dict[str, Any], expected: str, model_type: str) -> list[tuple[str, str]]:
    """``[("inherit", why)]`` for a parent whose state ``metadata`` another model type wrote, else ``[]``: said by
    ``profile check``, and by ``train`` before it reads a record (the recommender said it once it had read the data,
    exit 1: checker h444 F3)."""
    try:
        heirloom.State({}, metadata).expect_format(expected, model_type, "parent")
    except heirloom.HeirloomError as exc:
        return [("inherit", str(exc))]
    return []
