"""The versions that descend from one: ``heirloom models lineage --descendants``, the question to ask before
changing a model others inherit."""

from __future__ import annotations

from heirloom.store.artifacts import Artifact, ArtifactStore
from heirloom.store.refs import Ref


def inheritors(store: ArtifactStore, ref: str) -> list[Artifact]:
    """Every version that descends from ``ref`` (from any version of the model when ``ref``
    has no selector, its own later versions included), breadth first: children, then grandchildren."""
    target = store.resolve(ref)  # a ref naming nothing fails here, listing what exists
    everything = store.list()
    if Ref.parse(ref).selector is None:  # a version inheriting an earlier one of the model is listed too
        frontier, seen = {a.ref for a in everything if (a.project, a.model) == (target.project, target.model)}, set()
    else:
        frontier, seen = {target.ref}, {target.ref}
    found: list[Artifact] = []
    while frontier:  # ``seen``: a parent loop (only a damaged index has one) must not spin
        children = [a for a in everything if a.parent in frontier and a.ref not in seen]
        found.extend(children)
        frontier = {child.ref for child in children}
        seen |= frontier
    return found
