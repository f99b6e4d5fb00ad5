"""Texts as TF-IDF-weighted sparse bags over a model's feature rows.

A model keeps rows only for the hashed features its training data contained (its
``Vocabulary``): the weights stay as small as the data, whatever the hash space, and a
feature never seen in training is dropped before normalisation, as scikit-learn's
vectorisers do. torch is imported inside the functions only.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from heirloom_plugins.ngrams.features import Featurizer

if TYPE_CHECKING:
    import torch


@attrs.frozen
class Counts:
    """Hashed feature counts of a batch of texts, flattened: one length per text."""

    buckets: torch.Tensor
    counts: torch.Tensor
    lengths: torch.Tensor


def count(featurizer: Featurizer, texts: Iterable[str]) -> Counts:
    """Feature counts of a batch of texts, grouped by text and sorted by bucket.

    Occurrences are gathered in one typed array and counted by a single ``torch.unique``
    over (text, bucket) keys: much faster than a ``Counter`` per text and ``torch.tensor``
    over Python lists (featurising was most of the prediction time).
    """
    import torch

    found, sizes = array("q"), array("q")
    for text in texts:
        before = len(found)
        featurizer.buckets(text, found)
        sizes.append(len(found) - before)
    if not found:
        return Counts(torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(len(sizes), dtype=torch.long))
    per_text = torch.frombuffer(sizes, dtype=torch.long)
    texts_of = torch.repeat_interleave(torch.arange(len(sizes)), per_text)
    keys, counts = torch.unique(texts_of * featurizer.settings.buckets + torch.frombuffer(found, dtype=torch.long),
                                return_counts=True)  # fmt: skip
    text_of_key = keys // featurizer.settings.buckets
    lengths = torch.bincount(text_of_key, minlength=len(sizes))
    return Counts(keys % featurizer.settings.buckets, counts.float(), lengths)


@attrs.frozen
class Bags:
    """A sparse text-by-feature matrix in ``EmbeddingBag`` form (rows, weights, offsets)."""

    rows: torch.Tensor
    weights: torch.Tensor
    offsets: torch.Tensor
    #: The text each entry belongs to (to build the transpose for gradients).
    texts: torch.Tensor
    size: int

    def to(self, device: str) -> Bags:
        return Bags(
            self.rows.to(device), self.weights.to(device), self.offsets.to(device), self.texts.to(device), self.size
        )

    def transpose(self, features: int) -> torch.Tensor:
        """The feature-by-text matrix as sparse CSR: ``transpose @ grad`` is the weight gradient."""
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            matrix = torch.sparse_coo_tensor(torch.stack([self.rows, self.texts]), self.weights, (features, self.size))
            return matrix.coalesce().to_sparse_csr()


@attrs.frozen
class Vocabulary:
    """The hashed features a model has rows for (sorted bucket ids) and their idf."""

    features: torch.Tensor
    idf: torch.Tensor

    @classmethod
    def fit(cls, counts: Counts, inherited: Vocabulary | None = None) -> Vocabulary:
        """Smoothed idf, ``ln((1 + n) / (1 + df)) + 1``, from the training texts' counts.

        With ``inherited`` (a parent's vocabulary) the result is the union: features the
        new data lacks keep the parent's idf, so the parent's knowledge of them survives.
        """
        import torch

        texts = len(counts.lengths)
        features, df = torch.unique(counts.buckets, return_counts=True)
        idf = torch.log((1 + texts) / (1 + df.float())) + 1
        if inherited is not None:
            extra = ~torch.isin(inherited.features, features)
            features, order = torch.sort(torch.cat([features, inherited.features[extra]]))
            idf = torch.cat([idf, inherited.idf[extra]])[order]
        return cls(features, idf.float())

    def lookup(self, size: int) -> Lookup:
        """The vocabulary as flat arrays for prediction over a hash space of ``size``."""
        import torch

        rows = array("i", [-1]) * size
        table = torch.frombuffer(rows, dtype=torch.int32)  # the same memory: filled through it
        table[self.features] = torch.arange(len(self.features), dtype=torch.int32)
        return Lookup(rows, array("f", self.idf.tolist()), table)

    def rows_of(self, buckets: torch.Tensor, table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row, known)`` for each bucket id; ``row`` is meaningless where not known."""
        import torch

        if table is not None:
            rows = table[buckets].long()
            return rows.clamp_min(0), rows >= 0
        if not len(self.features):
            return torch.zeros_like(buckets), torch.zeros_like(buckets, dtype=torch.bool)
        row = torch.searchsorted(self.features, buckets).clamp(max=len(self.features) - 1)
        return row, self.features[row] == buckets

    def bags(self, counts: Counts, table: torch.Tensor | None = None) -> Bags:
        """Sublinear tf (``1 + ln tf``) times idf, L2-normalised per text and view (word
        n-grams, character n-grams: see ``features``), unknown features dropped. ``table``
        (a :class:`Lookup`'s) speeds up the row look-up."""
        import torch

        size = len(counts.lengths)
        texts = torch.repeat_interleave(torch.arange(size), counts.lengths)
        row, known = self.rows_of(counts.buckets, table)
        row, texts = row[known], texts[known]
        weights = (1 + torch.log(counts.counts[known])) * self.idf[row]
        group = texts * 2 + (counts.buckets[known] & 1)  # odd buckets: character n-grams
        norms = torch.zeros(2 * size).index_add_(0, group, weights * weights).sqrt().clamp_min(1e-12)
        lengths = torch.bincount(texts, minlength=size)
        offsets = torch.cumsum(lengths, 0) - lengths
        return Bags(row, weights / norms[group], offsets, texts, size)


@attrs.frozen
class Lookup:
    """A vocabulary's ``bucket -> row`` map (-1: unknown) and idf, as flat arrays.

    Rows are looked up in O(1) instead of by a binary search over the sorted features
    (which was an eighth of served prediction time), at 4 bytes a bucket. ``table`` is a
    tensor view of the same memory, for :meth:`Vocabulary.bags`; :func:`few_bags` reads
    the arrays from Python.
    """

    rows: array
    idf: array
    table: torch.Tensor


def few_bags(featurizer: Featurizer, lookup: Lookup, texts: Sequence[str]) -> Bags:
    """:meth:`Vocabulary.bags` of :func:`count`, computed in plain Python for a few texts.

    The same weights (to float32 rounding), but three tensors are made instead of some
    twenty tensor operations of a few elements each, whose fixed cost (about 25 us each
    on a CPU) made a lone text's prediction take 0.6 ms, four times the work itself. A
    served model mostly predicts batches of one; past a handful of texts the tensor
    path is faster.
    """
    import torch

    rows: list[int] = []
    weights: list[float] = []
    offsets: list[int] = []
    owners: list[int] = []
    for position, text in enumerate(texts):
        found = array("q")
        featurizer.buckets(text, found)
        offsets.append(len(rows))
        entries = []
        norms = [0.0, 0.0]  # squared, per view: even buckets words, odd characters
        for bucket, tf in Counter(found).items():
            row = lookup.rows[bucket]
            if row >= 0:
                weight = (1.0 + math.log(tf)) * lookup.idf[row]
                norms[bucket & 1] += weight * weight
                entries.append((row, weight, bucket & 1))
        norm = [max(math.sqrt(squared), 1e-12) for squared in norms]
        rows.extend(row for row, _, _ in entries)
        weights.extend(weight / norm[view] for _, weight, view in entries)
        owners.extend([position] * len(entries))
    return Bags(
        torch.tensor(rows, dtype=torch.long),
        torch.tensor(weights),
        torch.tensor(offsets, dtype=torch.long),
        torch.tensor(owners, dtype=torch.long),
        len(texts),
    )
