"""The closed-form maths of the hybrid recommender.

Collaborative part: EASE (Steck, WWW 2019), an item-item weight matrix ``B`` with a zero
diagonal that best reconstructs each user's interactions from their other ones:
``B = I - P diag(1/diag(P))`` with ``P = (G + l2 I)^-1``. Side information enters the
Gram matrix as in collective EASE (Jeunen et al., 2020): ``G = X'X + text_weight K``,
where ``K`` is the text kernel of the item tower, so items that read alike share weight.

Text part: every item's column of ``B`` is also predicted from text by kernel ridge
regression over the items that have interactions, ``T = R K[warm, :]`` with
``R = B[:, warm] (K[warm, warm] + tower_l2 I)^-1`` (for a warm item, its leave-one-out
prediction, which does not read its own column). An item with ``n`` users keeps
``n / (n + shrink)`` of its own column and the rest of ``T``'s: an item nobody had is all
text, and its first plays move it smoothly towards what they say, where EASE alone gives a
barely-seen item a near-empty column (its score fell below the text prediction it had with
no plays). This is the credibility weighting of empirical Bayes (Bühlmann's
``n / (n + k)``) with the text prediction as the prior. ``R`` is kept, so a title that is
not in the catalogue gets its column from its kernel vector alone, without refitting.
"""

from __future__ import annotations

import attrs
import numpy as np

from heirloom_plugins.recommend.data import Histories
from heirloom_plugins.recommend.sizing import add_gram

#: Users per dense block when multiplying interaction matrices (bounds memory).
USER_BLOCK = 2048


def cooccurrence(histories: Histories, items: int) -> np.ndarray:
    """``X'X``: how many users interacted with both items (float64, items x items), in blocks of
    users and of items (``sizing.add_gram``: one ``X.T @ X`` crashed OpenBLAS past ~20,000 items)."""
    gram = np.zeros((items, items), dtype=np.float64)
    for start in range(0, len(histories), USER_BLOCK):
        block = histories.matrix(np.arange(start, min(start + USER_BLOCK, len(histories))), items)
        add_gram(block.T, gram)
    return gram


def solve(cooc: np.ndarray, kernel: np.ndarray, text_weight: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """EASE on ``cooc + text_weight kernel`` with ridge ``l2``: ``B`` (zero diagonal) and
    ``diag(P)``, which turns a column of ``B`` into the matching row (``B[i, j] P[j, j] =
    B[j, i] P[i, i]``)."""
    gram = cooc + text_weight * kernel if text_weight else cooc.copy()
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    diagonal = np.diag(precision).copy()
    weights = precision / -diagonal
    np.fill_diagonal(weights, 0.0)
    return weights, diagonal


def item_weights(cooc: np.ndarray, kernel: np.ndarray, text_weight: float, l2: float) -> np.ndarray:
    """EASE's ``B`` alone (see ``solve``)."""
    return solve(cooc, kernel, text_weight, l2)[0]


def text_columns(weights: np.ndarray, kernel: np.ndarray, warm: np.ndarray, tower_l2: float) -> Text:
    """``R = B[:, warm] (K[warm, warm] + tower_l2 I)^-1`` and ``T = R K[warm, :]``, every item's
    column of ``B`` as its text predicts it; a warm item's is its leave-one-out prediction
    ``(t - h b) / (1 - h)`` (``h`` its leverage in the ridge fit, ``1 - h = tower_l2
    (K[warm, warm] + tower_l2 I)^-1`` on the diagonal), so an item seen once is not predicted
    from its own near-empty column."""
    ridge = kernel[np.ix_(warm, warm)].copy()
    ridge[np.diag_indices_from(ridge)] += tower_l2
    inverse = np.linalg.inv(ridge)
    mapping = weights[:, warm] @ inverse
    columns = mapping @ kernel[warm]
    rest = tower_l2 * np.diag(inverse)
    columns[:, warm] = (columns[:, warm] - weights[:, warm] * (1.0 - rest)) / rest
    return Text(mapping, columns)


def blend(weights: np.ndarray, text: np.ndarray, counts: np.ndarray, shrink: float) -> np.ndarray:
    """Each column ``j`` as ``w B[:, j] + (1 - w) T[:, j]`` with ``w = n_j / (n_j + shrink)``
    (``n_j`` its users, or their recency weights summed; ``w`` is 0 for an item nobody had, 1 for
    every other with ``shrink`` 0), diagonal 0."""
    own = np.divide(counts, counts + shrink, out=np.zeros(len(counts)), where=counts > 0)
    mixed = weights * own + text * (1.0 - own)
    np.fill_diagonal(mixed, 0.0)
    return mixed


@attrs.frozen
class Text:
    """``R`` (kernel vector over the warm items -> a column of ``B``) and ``T`` (every item's
    column of ``B`` as its text predicts it)."""

    mapping: np.ndarray
    columns: np.ndarray


@attrs.frozen
class Hybrid:
    """A fitted hybrid: ``B``, ``R``, the warm items and ``diag(P)``."""

    weights: np.ndarray
    text_map: np.ndarray
    warm: np.ndarray
    diagonal: np.ndarray


def hybrid(
    histories: Histories, kernel: np.ndarray, l2: float, text_weight: float, tower_l2: float, shrink: float
) -> Hybrid:
    """The hybrid fitted on ``histories``: warm items are those with interactions."""
    cooc = cooccurrence(histories, len(kernel))
    counts = histories.counts(len(kernel))
    warm = np.flatnonzero(counts > 0)
    weights, diagonal = solve(cooc, kernel, text_weight, l2)
    text = text_columns(weights, kernel, warm, tower_l2)
    return Hybrid(blend(weights, text.columns, counts, shrink), text.mapping, warm, diagonal)
