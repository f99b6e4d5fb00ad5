"""The item-text tower: what an item's title, year and genres say, as a feature vector.

Hashed features, so nothing is downloaded and any catalogue works: the words of the
title, the year (exact, half-decade and decade, so neighbouring years share features)
and the genres. Each of the three blocks is tf-idf weighted (idf over the catalogue the
tower was fitted on), L2-normalised and scaled by its weight; a new item is encoded with
the same idf, so its vector is comparable with the catalogue's.

The recommender uses the tower only through inner products of these vectors (the text
kernel), so a dense sentence encoder can take its place: anything that turns item texts
into rows whose inner products say how alike two items read.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Container, Sequence
from typing import Any

import attrs
import numpy as np

import heirloom
from heirloom_plugins.ngrams.features import MAX_BUCKETS  # the text model's limit, for the same hashing reasons
from heirloom_plugins.recommend.records import TITLE_YEAR
from heirloom_plugins.recommend.sizing import add_gram
from heirloom_plugins.spaceless import letter_runs, words_of

BLOCKS = ("title", "year", "genre")


@attrs.frozen
class ItemText:
    """What the tower reads of an item."""

    title: str
    year: int | None
    genres: tuple[str, ...]


@attrs.frozen
class TowerSettings:
    """How text becomes features: the hash space and each block's weight."""

    buckets: int
    title_weight: float
    year_weight: float
    genre_weight: float

    def weight(self, block: str) -> float:
        return {"title": self.title_weight, "year": self.year_weight, "genre": self.genre_weight}[block]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Any, what: str) -> TowerSettings:
        """Settings stored in ``what`` (a state), checked: a damaged ``buckets`` sized an array of that many
        floats at the first text read (3e8: 2.4 GB), as the text classifier's did (checker h340 F2, v8)."""
        try:
            settings = cls(**data)
        except TypeError:  # not a table, a key missing or unknown
            settings = None
        weights = [settings.title_weight, settings.year_weight, settings.genre_weight] if settings else []
        if (
            settings is None
            or type(settings.buckets) is not int
            or not 1 <= settings.buckets <= MAX_BUCKETS
            or not all(isinstance(weight, int | float) and not isinstance(weight, bool) for weight in weights)
        ):
            raise heirloom.HeirloomError(f"the {what}'s tower settings are damaged: {str(data)[:200]}")
        return settings


@attrs.frozen
class SparseRows:
    """Rows of a sparse matrix in CSR form (``indptr``, ``indices``, ``values``)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def row(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[position], self.indptr[position + 1]
        return self.indices[start:end], self.values[start:end]

    def take(self, rows: np.ndarray) -> SparseRows:
        """The matrix of ``rows`` only, in that order."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        picked = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)] or [np.zeros(0, int)])
        indptr = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        return SparseRows(indptr, self.indices[picked], self.values[picked])

    def transposed(self, columns: int) -> SparseRows:
        """The same matrix by columns (CSC as CSR of the transpose): column -> rows."""
        row_of = np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(self.indptr))
        order = np.argsort(self.indices, kind="stable")
        counts = np.bincount(self.indices, minlength=columns)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return SparseRows(indptr, row_of[order], self.values[order])

    def gram(self) -> np.ndarray:
        """``F @ F.T`` (rows x rows), through a dense matrix of the used columns only, in row blocks
        (``sizing.add_gram``: one ``dense @ dense.T`` crashed OpenBLAS past ~19,500 items)."""
        used, compact = np.unique(self.indices, return_inverse=True)
        dense = np.zeros((self.rows, len(used)), dtype=np.float64)
        row_of = np.repeat(np.arange(self.rows), np.diff(self.indptr))
        np.add.at(dense, (row_of, compact), self.values)
        return add_gram(dense, np.zeros((self.rows, self.rows), dtype=np.float64))


def tokens(text: ItemText) -> list[tuple[str, str]]:
    """``(block, token)`` pairs of an item: title words, year buckets, genres, in Unicode NFC
    (macOS sends ``Schöne`` decomposed: it matched only a catalogue written the same way)."""
    title = unicodedata.normalize("NFC", TITLE_YEAR.sub("", text.title).lower())
    found = [
        ("title", word) for run in letter_runs().findall(title) for word in words_of(run)
    ]  # 味噌ラーメン: 味噌, 噌ラ...
    if text.year is not None:
        found += [("year", f"{text.year}"), ("year", f"{text.year // 5 * 5}s5"), ("year", f"{text.year // 10 * 10}s")]
    found += [("genre", unicodedata.normalize("NFC", genre.lower())) for genre in text.genres]
    return found


class HashedTower:
    """Hashed tf-idf features of item texts; ``fit`` learns the idf of a catalogue."""

    def __init__(self, settings: TowerSettings, idf: np.ndarray | None = None):
        self.settings = settings
        self.idf = idf

    def _hashed(self, text: ItemText, known: Container[tuple[str, str]] | None = None) -> dict[str, dict[int, float]]:
        """Term counts per block, keyed by bucket; with ``known``, of those tokens only."""
        blocks: dict[str, dict[int, float]] = {block: {} for block in BLOCKS}
        for block, token in tokens(text):
            if known is not None and (block, token) not in known:
                continue
            bucket = zlib.crc32(f"{block}:{token}".encode()) % self.settings.buckets
            counts = blocks[block]
            counts[bucket] = counts.get(bucket, 0.0) + 1.0
        return blocks

    def fit(self, texts: Sequence[ItemText]) -> HashedTower:
        """Learn the idf of every bucket from ``texts`` (a bucket no item has gets the highest)."""
        documents = np.zeros(self.settings.buckets, dtype=np.float64)
        for text in texts:
            seen = {bucket for counts in self._hashed(text).values() for bucket in counts}
            documents[list(seen)] += 1
        self.idf = np.log((1 + len(texts)) / (1 + documents)).astype(np.float32)
        return self

    def encode(self, texts: Sequence[ItemText], known: Container[tuple[str, str]] | None = None) -> SparseRows:
        """One row per text: each block tf-idf weighted, L2-normalised and scaled. With
        ``known`` (``tokens`` of a catalogue), a token not in it is left out: hashed, it
        would share a bucket with unrelated ones."""
        if self.idf is None:
            raise ValueError("the tower has no idf yet: fit it first")
        indptr, indices, values = [0], [], []
        for text in texts:
            row: dict[int, float] = {}
            for block, counts in self._hashed(text, known).items():
                weighted = {bucket: count * float(self.idf[bucket]) for bucket, count in counts.items()}
                norm = sum(v * v for v in weighted.values()) ** 0.5
                scale = self.settings.weight(block) / norm if norm else 0.0
                for bucket, value in weighted.items():
                    row[bucket] = row.get(bucket, 0.0) + value * scale
            kept = sorted((bucket, value) for bucket, value in row.items() if value)
            indices += [bucket for bucket, _ in kept]
            values += [value for _, value in kept]
            indptr.append(len(indices))
        return SparseRows(
            np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64), np.asarray(values, np.float32)
        )
