"""Scoring users and measuring a fitted item-weight matrix on held-out interactions.

Shared by the model's tuning, its ``evaluate`` and the benchmark's peers, so every
number in a comparison comes from the same code. A user's scores are the sum of the
weight rows of the items in their history; items in the history are never recommended;
a user with an empty history gets the popularity ranking.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from heirloom_plugins.recommend.data import Histories
from heirloom_plugins.recommend.ranking import coverage, ranking_metrics, top_k

#: Up to this many histories, scores are gathered row sums; above, one matrix product.
GATHER_LIMIT = 64
#: Histories scored per matrix product (bounds memory).
SCORE_BLOCK = 1024
CUTOFF = 10


def scores(
    weights: np.ndarray | None,
    histories: Sequence[np.ndarray],
    popularity: np.ndarray | None = None,
    strengths: Sequence[np.ndarray] | None = None,
    added: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """One row of item scores per history (its items' rows of ``weights``, each times its
    strength when ``strengths`` gives one per item: how recent it is; plus ``added``'s row for
    it, when not None, before a row of zeros falls back to popularity); history items score
    -inf. Without ``weights``, the popularity ranking for everyone: the baseline a model must beat."""
    if weights is None:
        assert popularity is not None
        out = np.tile(popularity, (len(histories), 1))
    elif strengths is None and len(histories) <= GATHER_LIMIT:
        out = np.stack([weights[history].sum(0) for history in histories]) if histories else np.zeros((0, 0))
    else:
        dense = np.zeros((len(histories), len(weights)), dtype=weights.dtype)
        for row, history in enumerate(histories):
            dense[row, history] = 1.0 if strengths is None else strengths[row]
        out = dense @ weights
    out = out.astype(np.float64, copy=False)
    for row, history in enumerate(histories):
        if added is not None and added[row] is not None:
            out[row] += added[row]
        if popularity is not None and not out[row].any():  # an empty history, or one of items nobody had
            out[row] = popularity
        out[row, history] = -np.inf
    return out


def ranked(
    weights: np.ndarray | None,
    histories: Sequence[np.ndarray],
    k: int,
    *,
    candidates: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    strengths: Sequence[np.ndarray] | None = None,
    excluded: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """The ``k`` best item positions per history (only ``candidates``, a mask, when given; never
    a history's ``excluded`` positions)."""
    lists = []
    for start in range(0, len(histories), SCORE_BLOCK):
        part = slice(start, start + SCORE_BLOCK)
        block = scores(weights, histories[part], popularity, None if strengths is None else strengths[part])
        for row, positions in enumerate(excluded[part] if excluded is not None else ()):
            block[row, positions] = -np.inf
        if candidates is not None:
            block[:, ~candidates] = -np.inf
        lists.append(top_k(block, k))
    return np.concatenate(lists) if lists else np.zeros((0, k), dtype=np.int64)


def held_out_by_user(
    train: Histories,
    held_out: Iterable[tuple[str, int]],
    withheld: Histories | None = None,
    scoring_withheld: bool = False,
) -> tuple[list[np.ndarray], list[set[int]], tuple[int, int], list[np.ndarray], list[np.ndarray]]:
    """For each user with held-out items not in their training history: that history (empty if
    unknown) and those items; and how many held-out pairs were left out: in training, and among
    ``withheld`` (see below). Ranking leaves out
    what a user had in training (and those items' weights), so such a pair can never be found: when a version is scored
    again on data whose splits moved (appended ratings), its trained pairs now held out would
    count against it and for a version that never saw them (an outside team's gate promoted a
    worse model so). Last, per user, the items of ``withheld`` (pairs the model has but did not
    learn from: a source's validation split): never ranked, as the field's protocol leaves them out
    at test (they competed as misses: nDCG@10 0.4770 -> 0.4079). Unless ``scoring_withheld`` (the
    held-out pairs are a validation split: each withheld one among them is scored, as it was when trained), a held-out
    pair among them is left out, counted apart from the trained ones: no reply shows it (a split_column file's pair
    stated validation and test counted as found, 0.4978, where the replies scored 0.4628)."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for user, item in held_out:
        wanted[user].add(item)
    empty = np.zeros(0, dtype=np.int64)
    histories, relevant, strengths, excluded = [], [], [], []
    trained = held = 0
    for user in sorted(wanted):
        row = train.index.get(user)
        history = empty if row is None else train.of(row)
        other = withheld.index.get(user) if withheld is not None else None
        kept = empty if other is None else withheld.of(other)
        new = wanted[user].difference(history.tolist())
        unseen = new if scoring_withheld else new.difference(kept.tolist())
        trained, held = trained + len(wanted[user]) - len(new), held + len(new) - len(unseen)
        if unseen:
            histories.append(history)
            relevant.append(unseen)
            strengths.append(np.zeros(0, np.float32) if row is None else train.weights_of(row))
            excluded.append(np.setdiff1d(kept, list(unseen)))
    return histories, relevant, (trained, held), strengths, excluded


def measure(
    weights: np.ndarray | None,
    train: Histories,
    held_out: Iterable[tuple[str, int]],
    *,
    candidates: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    withheld: Histories | None = None,
    scoring_withheld: bool = False,
    k: int = CUTOFF,
) -> dict[str, float]:
    """nDCG, precision, recall, MAP at ``k`` and catalogue coverage on ``held_out`` pairs
    (without ``weights``: of the popularity ranking), ``users`` scored and ``known`` pairs
    left out: in ``train`` already, or ``withheld`` (``kept`` of them; see :func:`held_out_by_user`)."""
    histories, relevant, (trained, kept), strengths, excluded = held_out_by_user(
        train, held_out, withheld, scoring_withheld
    )
    weighted = strengths if train.weights is not None else None
    top = ranked(
        weights, histories, k, candidates=candidates, popularity=popularity, strengths=weighted, excluded=excluded
    )
    items = len(weights if weights is not None else popularity)
    scores = ranking_metrics(top, relevant, k)
    return {**scores, "coverage": coverage(top, items), "users": len(relevant), "known": trained + kept, "kept": kept}
