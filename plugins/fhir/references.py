"""FHIR references: find them in a resource, normalise them, resolve them.

A reference resolves inside its bundle by ``fullUrl`` (``urn:uuid:...``), by relative id
(``Patient/123``, also the tail of an absolute URL) and by conditional reference
(``Organization?identifier=system|value``); a logical reference (``{"identifier": {...}}``,
no ``reference``) is read as that conditional one. What a file cannot resolve is checked at
the end of a pass against the keys of every file of the set (``Known``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote

import attrs

from heirloom_plugins.fhir.parse import cut

Target = tuple[str, str]  # (resourceType, id)


def walk(resource: dict[str, Any]) -> list[str]:
    """Every ``reference`` string in a resource, its contained resources included.

    An explicit stack rather than recursion: this visits every node of every resource and
    is the lean path's largest cost after ``json.loads`` (a recursive generator was 5x slower).
    """
    found: list[str] = []
    stack: list[Any] = [resource]
    push = stack.append
    while stack:
        node = stack.pop()
        if type(node) is dict:
            ref = node.get("reference")
            if type(ref) is str:
                found.append(ref)
            node = node.values()
        for child in node:
            if type(child) is dict or type(child) is list:
                push(child)
    return found


def reference_of(holder: Any, kind: str) -> str | None:
    """The reference a Reference element makes: its ``reference``, else its ``identifier`` as the
    conditional reference ``kind?identifier=system|value`` (``kind``: its ``type``, else what the
    field holds), which resolves against the identifier keys (``keys_of``). Read only where the
    records read a link: without it an encounter named by identifier alone was silently no link."""
    if not isinstance(holder, dict):
        return None
    ref = holder.get("reference")
    if ref is not None:
        return ref if isinstance(ref, str) else None
    ident = holder.get("identifier")
    value = ident.get("value") if isinstance(ident, dict) else None
    if not isinstance(value, str) or not value:
        return None
    system, named = ident.get("system"), holder.get("type")
    written = f"{system}|{value}" if isinstance(system, str) and system else value
    return f"{named if isinstance(named, str) and named else kind}?identifier={quote(written, safe=':/|')}"


#: The Reference fields read as links, and the type a logical reference there names unless it says.
LINKS = {"subject": "Patient", "patient": "Patient", "encounter": "Encounter"}


def logical(resource: dict[str, Any]) -> list[str]:
    """The logical references (``identifier``, no ``reference``) of the links the records read (``LINKS``,
    an Encounter's diagnoses), as conditional ones: ``walk`` finds only the others, and these went uncounted."""
    holders = [(resource.get(field), kind) for field, kind in LINKS.items()]
    if resource["resourceType"] == "Encounter" and isinstance(resource.get("diagnosis"), list):
        holders += [(d.get("condition"), "Condition") for d in resource["diagnosis"] if isinstance(d, dict)]
    return [
        ref
        for holder, kind in holders
        if isinstance(holder, dict) and "reference" not in holder and (ref := reference_of(holder, kind))
    ]


def key(ref: str) -> str | None:
    """The lookup key of a reference: ``Type/id`` or ``Type?identifier=...``; None for urns."""
    if ref.startswith("urn:"):
        return None
    base, _, query = ref.partition("?")
    if query:
        params = parse_qsl(query)
        if len(params) == 1 and params[0][0] == "identifier":
            return f"{base.rsplit('/', 1)[-1]}?identifier={params[0][1]}"
        return ref
    parts = base.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def keys_of(resource: dict[str, Any], full_url: str | None) -> Iterator[str]:
    """The keys other resources can reach ``resource`` by (see ``key``)."""
    kind, rid = resource["resourceType"], resource.get("id")
    if isinstance(rid, str):
        yield f"{kind}/{rid}"
    url_key = key(full_url) if full_url else None
    if url_key:
        yield url_key
    identifiers = resource.get("identifier")
    for ident in identifiers if isinstance(identifiers, list) else []:
        value = ident.get("value") if isinstance(ident, dict) else None
        if isinstance(value, str):
            yield f"{kind}?identifier={value}"
            yield f"{kind}?identifier={ident.get('system') or ''}|{value}"


#: How a clash ends (``Catalog.clash``).
KEPT = ": the first is kept"


def _target(resource: dict[str, Any], full_url: str | None) -> Target:
    """How a resource is named: its type, and its id (its fullUrl when it has none)."""
    return resource["resourceType"], resource.get("id") or full_url or ""


@attrs.define
class Catalog:
    """The resources of one unit (a bundle, or the NDJSON files), by every way to reach them."""

    by_url: dict[str, Target] = attrs.Factory(dict)
    by_key: dict[str, Target] = attrs.Factory(dict)
    #: Where each resource was read (``Encounter/e1 (entry[3])``), to name it when another claims its name.
    where: dict[Target, str] = attrs.Factory(dict)
    #: Identifier keys two resources of the unit share: a reference by one names neither (FHIR: a conditional
    #: reference matching several is an error), where the later had silently taken it.
    ambiguous: set[str] = attrs.Factory(set)

    def clash(self, resource: dict[str, Any], full_url: str | None) -> str | None:
        """Why ``resource`` cannot join the unit: its fullUrl, or its ``Type/id`` key, names another
        resource read already (two visits under one fullUrl). ``add`` would re-point every
        reference to that name at the later one, silently. The same resource twice (same type and id)
        is no clash here: the records say so where it matters (a patient read twice, an id twice)."""
        target = _target(resource, full_url)
        if full_url and (found := self.by_url.get(full_url)) not in (None, target):
            return (
                f"fullUrl {cut(full_url)!r} names {self.where[found]} already (a fullUrl is unique in a bundle){KEPT}"
            )
        rid, url_key = resource.get("id"), key(full_url) if full_url else None
        for name in (f"{target[0]}/{rid}" if isinstance(rid, str) else None, url_key):
            if name and (found := self.by_key.get(name)) not in (None, target):
                return f"{cut(name)} names {self.where[found]} already (a Type/id is unique in a bundle){KEPT}"
        return None

    def add(self, resource: dict[str, Any], full_url: str | None, where: str = "") -> Target:
        target = _target(resource, full_url)
        self.where.setdefault(target, where)
        if full_url:
            self.by_url[full_url] = target
        for k in keys_of(resource, full_url):
            if "?identifier=" in k and self.by_key.get(k, target) != target:
                self.ambiguous.add(k)
            self.by_key[k] = target
        return target

    def reachable(self) -> Iterator[str]:
        """The keys a reference may name one resource of the unit by (not the ambiguous ones)."""
        return (k for k in self.by_key if k not in self.ambiguous)

    def resolve(self, ref: str) -> Target | None:
        found = self.by_url.get(ref)
        if found is not None:
            return found
        k = key(ref)
        return self.by_key.get(k) if k and k not in self.ambiguous else None


@attrs.define
class Known:
    """Keys of every resource seen in a pass, and references left for the end of it.

    Only keys are kept, never resources: the set stays streamable.
    """

    keys: set[str] = attrs.Factory(set)
    #: reference -> [count, where it was first seen]
    pending: dict[str, list[Any]] = attrs.Factory(dict)

    def defer(self, ref: str, where: str) -> None:
        slot = self.pending.setdefault(ref, [0, where])
        slot[0] += 1

    def settle(self) -> Iterator[tuple[str, int, str]]:
        """``(reference, count, first place)`` for each deferred reference still unresolved."""
        for ref, (count, where) in self.pending.items():
            k = key(ref)
            if k is None or k not in self.keys:
                yield ref, count, where
        self.pending.clear()
