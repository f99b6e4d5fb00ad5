"""A model's lineage as a graph: which stored version warm-started which, across projects.

Nodes are versions (plus a placeholder for a parent the store does not hold); an edge
runs from a parent to each version inherited from it. The layout is layered: a node's
column is its generation (roots first), and the graph is drawn as SVG by a template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

NODE_WIDTH, NODE_HEIGHT = 250, 58
COLUMN_GAP, ROW_GAP, MARGIN = 70, 22, 16
#: A graph deeper than this draws its last generations only (a 1,000-generation chain was 320,000 px wide).
GENERATIONS_DRAWN = 50
#: Versions of one generation drawn, the newest (and the page's own): 600 retrains from scratch, each a root,
#: drew a column 48,010 px tall above the versions table (checker h406 F1).
VERSIONS_PER_GENERATION = 40
#: Characters of a ref, and of a node's second line, that fit in a node; longer ones are cut with "…"
#: (the node's tooltip has them whole).
REF_CHARS, LINE_CHARS = 30, 38


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.define
class Node:
    ref: str
    artifact: Any | None  # None: a parent recorded in the lineage but missing from this store
    generation: int = 0
    row: int = 0

    @property
    def x(self) -> int:
        return MARGIN + self.generation * (NODE_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> int:
        return MARGIN + self.row * (NODE_HEIGHT + ROW_GAP)


@attrs.define
class Graph:
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    focus: str | None
    hidden_versions: int = 0  # versions of the earliest generations, not drawn (GENERATIONS_DRAWN)
    hidden_generations: int = 0
    crowded: int = 0  # older versions of a generation of more than VERSIONS_PER_GENERATION, not drawn

    @property
    def width(self) -> int:
        columns = 1 + max((n.generation for n in self.nodes.values()), default=0)
        return 2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP

    @property
    def height(self) -> int:
        rows = 1 + max((n.row for n in self.nodes.values()), default=0)
        return 2 * MARGIN + rows * NODE_HEIGHT + (rows - 1) * ROW_GAP

    def edge_paths(self) -> list[dict[str, Any]]:
        """A cubic curve from the right side of each parent to the left side of its child."""
        paths = []
        for parent, child in self.edges:
            a, b = self.nodes[parent], self.nodes[child]
            x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT // 2
            x2, y2 = b.x - 6, b.y + NODE_HEIGHT // 2
            bend = (x2 - x1) // 2
            d = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
            paths.append({"parent": parent, "child": child, "d": d})
        return paths


def model_graph(artifacts: list[Any], project: str, model: str, focus: str | None = None) -> Graph:
    """Every version of ``project/model``, all their ancestors and all their descendants."""
    by_ref = {a.ref: a for a in artifacts}
    children: dict[str, list[str]] = {}
    for artifact in artifacts:
        if artifact.parent is not None:
            children.setdefault(artifact.parent, []).append(artifact.ref)
    own = [a.ref for a in artifacts if a.project == project and a.model == model]
    return _layout(_ancestors(own, by_ref) | _descendants(own, children), by_ref, focus, {*own, focus or ""})


def _ancestors(refs: list[str], by_ref: dict[str, Any]) -> set[str]:
    """``refs`` and every version they descend from (a parent the store lacks included); each chain is
    walked once, up to a version already found."""
    found: set[str] = set()
    for ref in refs:
        current: str | None = ref
        while current is not None and current not in found:
            found.add(current)
            artifact = by_ref.get(current)
            current = artifact.parent if artifact is not None else None
    return found


def _descendants(refs: list[str], children: dict[str, list[str]]) -> set[str]:
    found, todo = set(refs), list(refs)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _layout(refs: Iterable[str], by_ref: dict[str, Any], focus: str | None, own: set[str]) -> Graph:
    nodes = {ref: Node(ref, by_ref.get(ref)) for ref in refs}
    edges = sorted(
        (node.artifact.parent, ref)
        for ref, node in nodes.items()
        if node.artifact is not None and node.artifact.parent in nodes
    )
    generations = _generations(nodes)
    hidden = _drop_earliest(nodes, generations)
    crowded = _drop_oldest_of_crowds(nodes, generations, own)
    edges = [(parent, child) for parent, child in edges if parent in nodes and child in nodes]
    rows: dict[int, int] = {}
    for ref in sorted(nodes, key=_sort_key):
        node = nodes[ref]
        node.generation = generations[ref]
        node.row = rows.get(node.generation, 0)
        rows[node.generation] = node.row + 1
    return Graph(nodes, edges, focus, *hidden, crowded)


def _drop_oldest_of_crowds(nodes: dict[str, Node], generations: dict[str, int], own: set[str]) -> int:
    """Keep the newest ``VERSIONS_PER_GENERATION`` versions of each generation, the page's own (``own``) first, and
    each parent of a kept version, so no drawn chain breaks; how many go. By name, it dropped a model's own newest
    versions beside older ones of other models (checker v25 F2)."""
    by_generation: dict[int, list[str]] = {}
    for ref in nodes:
        by_generation.setdefault(generations[ref], []).append(ref)
    kept: set[str] = set()
    for refs in by_generation.values():
        ranked = sorted(refs, key=lambda ref: (ref in own, _created(nodes[ref]), _sort_key(ref)), reverse=True)
        kept.update(ranked[:VERSIONS_PER_GENERATION])
    for generation in sorted(by_generation, reverse=True):  # a parent's generation is below its child's
        for ref in by_generation[generation]:
            artifact = nodes[ref].artifact
            if ref in kept and artifact is not None and artifact.parent in nodes:
                kept.add(artifact.parent)
    gone = [ref for ref in nodes if ref not in kept]
    for ref in gone:
        del nodes[ref]
    return len(gone)


def _created(node: Node) -> str:
    """When the version was stored (ISO 8601, UTC: it sorts as text); "" for a parent the store lacks."""
    return str(getattr(node.artifact, "created_at", "") or "")


def _sort_key(ref: str) -> tuple[str, int]:
    path, _, version = ref.partition("@")
    return path, int(version) if version.isdigit() else 0


def chain_graph(chain: list[Any], focus: str) -> Graph:
    """The lineage of one version (``store.lineage``): itself and its ancestors."""
    refs = {a.ref for a in chain}
    last = chain[-1]
    if last.parent is not None:
        refs.add(last.parent)  # recorded, but not in this store
    return _layout(refs, {a.ref: a for a in chain}, focus, refs)


def _generations(nodes: dict[str, Node]) -> dict[str, int]:
    """Each node's distance from its oldest ancestor in ``nodes``: each parent chain is walked once
    (the recursive walk copied a set per step and overflowed Python's stack at ~1,000 generations)."""
    generations: dict[str, int] = {}
    for start in nodes:
        path: list[str] = []
        on_path: set[str] = set()
        ref = start
        while ref not in generations:
            artifact = nodes[ref].artifact
            parent = artifact.parent if artifact is not None else None
            if parent is None or parent not in nodes or parent == ref or parent in on_path:  # a root (or a cycle, cut)
                generations[ref] = 0
                break
            path.append(ref)
            on_path.add(ref)
            ref = parent
        for child in reversed(path):
            parent = nodes[child].artifact.parent
            generations[child] = generations[parent] + 1
    return generations


def _drop_earliest(nodes: dict[str, Node], generations: dict[str, int]) -> tuple[int, int]:
    """Keep the last ``GENERATIONS_DRAWN`` generations of a deeper graph, renumbered from 0; the number
    of versions and of generations left out."""
    first = max(generations.values(), default=0) + 1 - GENERATIONS_DRAWN
    if first <= 0:
        return 0, 0
    hidden = [ref for ref, generation in generations.items() if generation < first]
    for ref in hidden:
        del nodes[ref]
    for ref in nodes:
        generations[ref] -= first
    return len(hidden), first
