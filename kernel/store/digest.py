"""A profile's digest: which configuration produced a version. Ways of writing the same profile
give one digest: ``inherit = ""``, ``--set ...inherit=null`` and no ``inherit`` all mean none, and
``enabled = true`` is what a component is without it, and a ``[resources]`` table that says
nothing but ``use = "local"`` is what no ``[resources]`` table is."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from heirloom.core.components import TABLES
from heirloom.core.profile import SINGLE_COMPONENT_TABLES
from heirloom.core.schema import DEFAULT_RESOURCES

if TYPE_CHECKING:
    from heirloom.core.schema import ResolvedProfile

#: A model's keys whose "" and null mean what leaving them out means (no parent; the latest version).
UNSET_BY_EMPTY = ("inherit", "serve")


def profile_digest(profile: ResolvedProfile) -> str:
    """sha256 of the resolved profile tree as canonical JSON, less the defaults it spells out."""
    canonical = json.dumps(_normalised(profile.raw.data), sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()


def _normalised(data: dict[str, Any]) -> dict[str, Any]:
    tree = dict(data)
    for kind, table_name in TABLES.items():
        if not isinstance(group := tree.get(table_name), dict):
            continue
        if table_name in SINGLE_COMPONENT_TABLES:
            tree[table_name] = _as_default(kind, group)
            if tree[table_name] in ({}, {"use": DEFAULT_RESOURCES}):
                del tree[table_name]  # the default resource manager, as no table gives
        else:
            tree[table_name] = {name: _as_default(kind, table) for name, table in group.items()}
    return tree


def _as_default(kind: str, table: Any) -> Any:
    """A component table less the keys that say what leaving them out says."""
    if not isinstance(table, dict):
        return table
    said = {"enabled"} if table.get("enabled") is True else set()
    if kind == "model":
        said |= {key for key in UNSET_BY_EMPTY if key in table and table[key] in ("", None)}
    return {key: value for key, value in table.items() if key not in said}
