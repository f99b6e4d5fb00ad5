"""Ranking metrics (binary relevance) and the BM25 side of hybrid retrieval.

Metrics follow trec_eval's definitions: nDCG@k with log2 discounts and the ideal ranking
of min(R, k) relevant items, MRR@k (0 when nothing relevant is in the top k), P@k, and
MAP over the full ranking.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Sequence
from typing import Any

METRICS = ("ndcg_at_10", "mrr_at_10", "p_at_5", "map")


def query_metrics(ranking: Sequence[int], relevant: set[int]) -> dict[str, float]:
    """The four metrics of one query: ``ranking`` lists item indices best first. With no
    relevant item among those ranked (a group the ranked items hold nothing of) it is a miss:
    0 on every metric, as the one asking would see it."""
    if not relevant:
        return dict.fromkeys(METRICS, 0.0)
    hits = [item in relevant for item in ranking]
    dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits[:10]) if hit)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), 10)))
    first = next((rank for rank, hit in enumerate(hits[:10]) if hit), None)
    found, precision_sum = 0, 0.0
    for rank, hit in enumerate(hits):
        if hit:
            found += 1
            precision_sum += found / (rank + 1)
    return {
        "ndcg_at_10": dcg / ideal,
        "mrr_at_10": 0.0 if first is None else 1 / (first + 1),
        "p_at_5": sum(hits[:5]) / 5,
        "map": precision_sum / len(relevant),
    }


def mean_metrics(rankings: Sequence[Sequence[int]], relevant: Sequence[set[int]]) -> dict[str, float]:
    """Each metric averaged over queries."""
    per_query = [query_metrics(ranking, rel) for ranking, rel in zip(rankings, relevant, strict=True)]
    return {name: sum(q[name] for q in per_query) / max(len(per_query), 1) for name in METRICS}


def report_text(metrics: dict[str, Any], title: str) -> str:
    return f"{title}\n" + "\n".join(f"{name:>12}  {metrics[name]:.4f}" for name in METRICS)


def _nfc(texts: Sequence[str]) -> list[str]:
    """``texts`` in Unicode NFC: bm25s' words are runs of letters, and a combining accent is none, so "café" typed
    with one (NFD, a macOS copy) was the word "caf": another top answer than the same text in NFC (h394 F1)."""
    return [unicodedata.normalize("NFC", text) for text in texts]


class Lexical:
    """BM25 (bm25s, Lucene variant) over documents: every document's score for a query."""

    def __init__(self, documents: Sequence[str], k1: float, b: float):
        from heirloom_plugins.encoder.network import require

        require("bm25s")
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: one line per index
        self.k1, self.b = k1, b
        self.documents = len(documents)
        self.index = bm25s.BM25(k1=k1, b=b)
        self.index.index(bm25s.tokenize(_nfc(documents), stopwords="en", show_progress=False), show_progress=False)

    def scores(self, queries: Sequence[str]) -> Any:
        """``[queries, documents]`` BM25 scores (a numpy array). A query with no word to
        search for ("?", an emoji, only stop words) scores 0 everywhere: bm25s fails on it."""
        import bm25s
        import numpy

        tokens = bm25s.tokenize(_nfc(queries), stopwords="en", return_ids=False, show_progress=False)
        rows = [self.index.get_scores(words) if words else numpy.zeros(self.documents) for words in tokens]
        return numpy.stack(rows) if rows else numpy.zeros((0, self.documents))
