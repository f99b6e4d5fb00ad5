"""A profile's digest: which configuration produced a version. Ways of writing the same profile
give one digest: ``inherit = ""``, ``--set ...inherit=null`` and no ``inherit`` all mean none, and
``enabled = true`` is what a component is without it, and a ``[resources]`` table that says
nothing but ``use = "local"`` is what no ``[resources]`` table is."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import attrs

from heirloom.core.components import TABLES
from heirloom.core.profile import SINGLE_COMPONENT_TABLES
from heirloom.core.schema import DEFAULT_RESOURCES

if TYPE_CHECKING:
    from heirloom.core.schema import ResolvedProfile

#: A model's keys whose "" and null mean what leaving them out means (no parent; the latest version).
UNSET_BY_EMPTY = ("inherit", "serve")


def profile_digest(profile: ResolvedProfile) -> str:
    """sha256 of the resolved profile tree as canonical JSON, less the defaults it spells out."""
    canonical = json.dumps(_normalised(profile), sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()


def _normalised(profile: ResolvedProfile) -> dict[str, Any]:
    tree = dict(profile.raw.data)
    types = {(spec.kind, spec.name): spec.cls for spec in profile.components}  # [resources] is named resources
    for kind, table_name in TABLES.items():
        if not isinstance(group := tree.get(table_name), dict):
            continue
        if table_name in SINGLE_COMPONENT_TABLES:
            tree[table_name] = _as_default(kind, group, types.get((kind, table_name)))
            if tree[table_name] in ({}, {"use": DEFAULT_RESOURCES}):
                del tree[table_name]  # the default resource manager, as no table gives
        else:
            tree[table_name] = {
                name: _as_default(kind, table, types.get((kind, name))) for name, table in group.items()
            }
    return tree


def _as_default(kind: str, table: Any, cls: type | None) -> Any:
    """A component table less the keys that say what leaving them out says: its type's own defaults too (``epochs =
    40`` where 40 is the default refitted a served version as a changed setting: checker h412 F2)."""
    if not isinstance(table, dict):
        return table
    said = {"enabled"} if table.get("enabled") is True else set()
    if kind == "model":
        said |= {key for key in UNSET_BY_EMPTY if key in table and table[key] in ("", None)}
    defaults = _defaults(cls) if cls is not None else {}
    said |= {key for key, value in table.items() if key in defaults and _same(value, defaults[key])}
    return {key: value for key, value in table.items() if key not in said}


def _defaults(cls: type) -> dict[str, Any]:
    """The default of each of ``cls``'s fields that has one without taking the instance (a factory's made)."""
    found = {}
    for field in attrs.fields(cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = attrs.NOTHING if default.takes_self else default.factory()
        if field.init and default is not attrs.NOTHING:  # a tuple is written as TOML's list (char_ngrams: v27 F2)
            found[field.name] = list(default) if isinstance(default, tuple) else default
    return found


def _same(value: Any, default: Any) -> bool:
    """Whether a written ``value`` is the ``default`` itself: of its type too (``True`` is no default ``1``)."""
    return type(value) is type(default) and value == default
