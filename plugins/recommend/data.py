"""What a recommender reads from its records: the catalogue and who interacted with what."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

import heirloom
from heirloom_plugins.recommend.records import INTERACTION, ITEM
from heirloom_plugins.recommend.tower import ItemText


@attrs.frozen
class Catalogue:
    """The items, in a fixed order (an item's position is its row and column everywhere)."""

    ids: list[str]
    texts: list[ItemText]
    index: dict[str, int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "index", {item: position for position, item in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self, position: int) -> dict[str, Any]:
        """An item as replies show it."""
        text = self.texts[position]
        return {"item": self.ids[position], "title": text.title, "year": text.year, "genres": list(text.genres)}


@attrs.frozen
class Histories:
    """Each user's distinct items (positions in the catalogue), in CSR form, and optionally
    each interaction's weight (``half_life_days``: how recent it is)."""

    users: list[str]
    indptr: np.ndarray
    items: np.ndarray
    #: Parallel to ``items``; None: every interaction weighs 1.
    weights: np.ndarray | None = None
    index: dict[str, int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "index", {user: row for row, user in enumerate(self.users)})

    @classmethod
    def build(
        cls,
        pairs: Iterable[tuple[str, int]],
        users: Iterable[str] = (),
        weights: Mapping[tuple[str, int], float] | None = None,
    ) -> Histories:
        """From ``(user, item position)`` pairs; ``users`` first fixes some rows' order
        (e.g. a test set's users), the others follow in order of appearance; ``weights``
        (every pair's, or None) gives each interaction its weight."""
        by_user: dict[str, set[int]] = {user: set() for user in users}
        for user, item in pairs:
            by_user.setdefault(user, set()).add(item)
        lengths = [len(items) for items in by_user.values()]
        flat = [(user, item) for user, items in by_user.items() for item in sorted(items)]
        return cls(
            list(by_user),
            np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
            np.asarray([item for _, item in flat], dtype=np.int64),
            None if weights is None else np.asarray([weights[pair] for pair in flat], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.users)

    def of(self, row: int) -> np.ndarray:
        return self.items[self.indptr[row] : self.indptr[row + 1]]

    def weights_of(self, row: int) -> np.ndarray:
        """The weights of ``of(row)``'s items (ones without weights)."""
        if self.weights is None:
            return np.ones(self.indptr[row + 1] - self.indptr[row], dtype=np.float32)
        return self.weights[self.indptr[row] : self.indptr[row + 1]]

    def weight_map(self) -> dict[tuple[str, int], float] | None:
        """Every ``(user, item)`` pair's weight, for ``build`` (None without weights)."""
        if self.weights is None:
            return None
        return {pair: float(weight) for pair, weight in zip(self.pairs(), self.weights.tolist(), strict=True)}

    def counts(self, items: int) -> np.ndarray:
        """Per item, its users (their weights summed, with weights)."""
        return np.bincount(self.items, weights=self.weights, minlength=items).astype(np.float64)

    def matrix(self, rows: np.ndarray, items: int) -> np.ndarray:
        """The user x item matrix of ``rows``: 1 or the interaction's weight (float32)."""
        dense = np.zeros((len(rows), items), dtype=np.float32)
        for position, row in enumerate(rows):
            dense[position, self.of(row)] = self.weights_of(row)
        return dense

    def pairs(self) -> Iterable[tuple[str, int]]:
        for row, user in enumerate(self.users):
            for item in self.of(row).tolist():
                yield user, item


def read_records(
    data: Iterable[Any], lines: list[str | None] | None = None
) -> tuple[list[Mapping[str, Any]], list[tuple[str, str]], list[Any]]:
    """The item records, the ``(user, item)`` interaction pairs of a record stream and each
    pair's ``time`` (None where it has none); ``lines``, when given, gets each pair's ``line``
    (``PATH:N``, where a source that says it read an untimed one; else None), for an error naming it."""
    items: list[Mapping[str, Any]] = []
    pairs: list[tuple[str, str]] = []
    times: list[Any] = []
    for position, record in enumerate(data):
        kind = record.get("type") if isinstance(record, Mapping) else None
        if kind == ITEM and isinstance(record.get("item"), str):
            items.append(record)
        elif kind == INTERACTION and isinstance(record.get("user"), str) and isinstance(record.get("item"), str):
            pairs.append((record["user"], record["item"]))
            times.append(record.get("time"))
            if lines is not None:
                lines.append(record.get("line"))
        else:
            raise heirloom.HeirloomError(
                f"record {position} is neither an item ({{'type': 'item', 'item': str, ...}}) nor an interaction "
                f"({{'type': 'interaction', 'user': str, 'item': str, ...}}): {record!r:.160}"
            )
    return items, pairs, times


def listed(
    items: list[Mapping[str, Any]], pairs: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(pairs whose item the catalogue lists, the others)``. Without item records every
    pair is kept (the catalogue is what the interactions name); with them, an interaction
    with an item they do not list (a recorded event naming a removed or mistyped id) is
    left out rather than made into an untitled item."""
    if not items:
        return pairs, []
    known = {record["item"] for record in items}
    return [p for p in pairs if p[1] in known], [p for p in pairs if p[1] not in known]


def catalogue_of(items: list[Mapping[str, Any]], pairs: list[tuple[str, str]]) -> Catalogue:
    """The items of the records, then any item only interactions name (it has no text)."""
    ids: dict[str, ItemText] = {}
    for record in items:
        if record["item"] not in ids:
            genres = tuple(str(genre) for genre in record.get("genres") or ())
            ids[record["item"]] = ItemText(str(record.get("title") or ""), record.get("year"), genres)
    for _, item in pairs:
        if item not in ids:
            ids[item] = ItemText("", None, ())
    return Catalogue(list(ids), list(ids.values()))
