"""The closed-form maths of the hybrid recommender.

Collaborative part: EASE (Steck, WWW 2019), an item-item weight matrix ``B`` with a zero
diagonal that best reconstructs each user's interactions from their other ones:
``B = I - P diag(1/diag(P))`` with ``P = (G + l2 I)^-1``. Side information enters the
Gram matrix as in collective EASE (Jeunen et al., 2020): ``G = X'X + text_weight K``,
where ``K`` is the text kernel of the item tower, so items that read alike share weight.

Text part, for items nobody interacted with: their columns of ``B`` are predicted from
text by kernel ridge regression over the items that have interactions:
``B[:, new] = B[:, warm] (K[warm, warm] + tower_l2 I)^-1 K[warm, new]``. The map
``R = B[:, warm] (K[warm, warm] + tower_l2 I)^-1`` is kept, so a title that is not in
the catalogue gets its column from its kernel vector alone, without refitting.
"""

from __future__ import annotations

import attrs
import numpy as np

from heirloom_plugins.recommend.data import Histories

#: Users per dense block when multiplying interaction matrices (bounds memory).
USER_BLOCK = 2048


def cooccurrence(histories: Histories, items: int) -> np.ndarray:
    """``X'X``: how many users interacted with both items (float64, items x items)."""
    gram = np.zeros((items, items), dtype=np.float64)
    for start in range(0, len(histories), USER_BLOCK):
        block = histories.matrix(np.arange(start, min(start + USER_BLOCK, len(histories))), items)
        gram += block.T @ block
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


def text_map(weights: np.ndarray, kernel: np.ndarray, warm: np.ndarray, tower_l2: float) -> np.ndarray:
    """``R = B[:, warm] (K[warm, warm] + tower_l2 I)^-1`` (items x warm items)."""
    ridge = kernel[np.ix_(warm, warm)].copy()
    ridge[np.diag_indices_from(ridge)] += tower_l2
    return np.linalg.solve(ridge, weights[:, warm].T).T


def fill_from_text(weights: np.ndarray, mapping: np.ndarray, kernel: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """``B`` with the columns of every item outside ``warm`` predicted from text."""
    cold = np.setdiff1d(np.arange(len(weights)), warm)
    if len(cold):
        weights[:, cold] = mapping @ kernel[np.ix_(warm, cold)]
        weights[cold, cold] = 0.0
    return weights


@attrs.frozen
class Hybrid:
    """A fitted hybrid: ``B``, ``R``, the warm items and ``diag(P)``."""

    weights: np.ndarray
    text_map: np.ndarray
    warm: np.ndarray
    diagonal: np.ndarray


def hybrid(histories: Histories, kernel: np.ndarray, l2: float, text_weight: float, tower_l2: float) -> Hybrid:
    """The hybrid fitted on ``histories``: warm items are those with interactions."""
    cooc = cooccurrence(histories, len(kernel))
    warm = np.flatnonzero(np.diag(cooc) > 0)
    weights, diagonal = solve(cooc, kernel, text_weight, l2)
    mapping = text_map(weights, kernel, warm, tower_l2)
    return Hybrid(fill_from_text(weights, mapping, kernel, warm), mapping, warm, diagonal)
