"""Top-k selection and the ranking metrics of the Microsoft Recommenders protocol.

Relevance is binary (every held-out interaction is relevant). Per user, over the top
``k``: nDCG (DCG over the ideal DCG of ``min(k, relevant)`` hits), precision (hits / k),
recall (hits / relevant) and average precision (the precision at each hit, summed, over
``min(k, relevant)``: Recommenders' ``map_at_k``). Each is averaged over the users with
at least one relevant item. Catalogue coverage is the share of the catalogue that
appears in anyone's top ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def ranking_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> dict[str, float]:
    """nDCG, precision, recall and MAP at ``k`` of ranked lists ``top`` (one row per user)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    totals = np.zeros(4)
    for ranked, wanted in zip(top, relevant, strict=True):
        hits = np.fromiter((item in wanted for item in ranked[:k]), dtype=np.float64, count=min(k, len(ranked)))
        hits = np.pad(hits, (0, k - len(hits)))
        ideal = min(k, len(wanted))
        found = hits.sum()
        totals += (
            (hits * discount).sum() / discount[:ideal].sum(),
            found / k,
            found / len(wanted),
            (np.cumsum(hits) / np.arange(1, k + 1) * hits).sum() / ideal,
        )
    users = max(len(relevant), 1)
    ndcg, precision, recall, average_precision = (totals / users).tolist()
    return {"ndcg": ndcg, "precision": precision, "recall": recall, "map": average_precision}


def coverage(top: np.ndarray, catalogue: int) -> float:
    """Share of the ``catalogue`` items that appear in at least one ranked list."""
    return len(np.unique(top)) / catalogue if catalogue else 0.0
