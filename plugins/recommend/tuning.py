"""Choosing the hybrid recommender's hyper-parameters on a validation split of train.

Never on test: the training interactions are split again per user (the same seeded
choice a source makes for its ``validation`` split), the model is fitted on the rest
and scored on the held-out part by nDCG@10. ``l2`` then ``text_weight`` are chosen by
coordinate search (``l2`` at the middle ``text_weight`` first). ``tower_l2`` is chosen
on a cold-start replay: a seeded share of the items with interactions lose them all,
and their columns are predicted from text; nDCG@10 ranks only those items for the
validation users who interacted with them. ``shrink`` is chosen on a few-interactions
replay: a seeded share of the items keeps only a few of its users (see ``tune_shrink``).
"""

from __future__ import annotations

import random

import attrs
import numpy as np

import heirloom
from heirloom_plugins.recommend import ease
from heirloom_plugins.recommend.data import Catalogue, Histories
from heirloom_plugins.recommend.protocol import measure
from heirloom_plugins.recommend.records import per_user_holdout, seeded_share

#: The most users an item keeps in the few-interactions replay that chooses ``shrink``.
FEW = 3


@attrs.frozen
class Choice:
    """The hyper-parameters a fit uses."""

    l2: float
    text_weight: float
    tower_l2: float
    #: 0 (no blend) in a state stored before the blend existed.
    shrink: float = 0.0

    def __str__(self) -> str:
        return ", ".join(f"{name}={value:g}" for name, value in attrs.asdict(self).items())


@attrs.frozen
class Grids:
    """Candidates for each hyper-parameter (one value: fixed)."""

    l2: list[float]
    text_weight: list[float]
    tower_l2: list[float]
    shrink: list[float]

    def fixed(self) -> Choice | None:
        """The only choice there is, when every grid has one value."""
        grids = attrs.astuple(self, recurse=False)
        return Choice(*(grid[0] for grid in grids)) if all(len(grid) == 1 for grid in grids) else None

    def pinned(self, choice: Choice) -> Choice:
        """``choice`` with every parameter the configuration fixes (a one-value grid) set
        to that value: what a warm start keeps of its parent's choice."""
        return Choice(
            *(grid[0] if len(grid) == 1 else getattr(choice, name) for name, grid in attrs.asdict(self).items())
        )

    def fits(self) -> int:
        """About how many solves a search costs (for the progress bar)."""
        searched = sum(len(grid) for grid in (self.tower_l2, self.shrink) if len(grid) > 1)
        return len(self.l2) + len(self.text_weight) - 1 + searched


@attrs.frozen
class Split:
    """Training interactions split for tuning: ``fit`` histories and ``held`` pairs."""

    fit: Histories
    held: list[tuple[str, int]]


def split_for_tuning(histories: Histories, catalogue: Catalogue, fraction: float, seed: int) -> Split:
    """The per-user validation carve of the training interactions (ids, as a source carves)."""
    ids = catalogue.ids
    pairs = [(user, ids[item]) for user, item in histories.pairs()]
    held = per_user_holdout(pairs, fraction, seed, "validation")
    index = catalogue.index
    kept = ((user, index[item]) for user, item in pairs if (user, item) not in held)
    fit = Histories.build(kept, histories.users, histories.weight_map())
    return Split(fit, [(user, index[item]) for user, item in sorted(held)])


def tune(
    histories: Histories,
    catalogue: Catalogue,
    kernel: np.ndarray,
    grids: Grids,
    *,
    fraction: float,
    cold_fraction: float,
    seed: int,
    progress: heirloom.Progress,
) -> tuple[Choice, dict[str, list[dict[str, float]]] | None]:
    """The best ``Choice`` by validation nDCG@10, and the score of every setting tried; with
    no validation interaction to score (every user has too few), each grid's middle value
    and no trials."""
    split = split_for_tuning(histories, catalogue, fraction, seed)
    if not split.held:
        return Choice(*(sorted(grid)[len(grid) // 2] for grid in attrs.astuple(grids, recurse=False))), None
    cooc = ease.cooccurrence(split.fit, len(catalogue))
    progress.start("tuning on validation", total=grids.fits())
    scored: dict[tuple[float, float], float] = {}

    def score(l2: float, weight: float) -> float:
        if (l2, weight) not in scored:
            scored[l2, weight] = measure(ease.item_weights(cooc, kernel, weight, l2), split.fit, split.held)["ndcg"]
            progress.advance()
        return scored[l2, weight]

    middle = sorted(grids.text_weight)[len(grids.text_weight) // 2]
    l2 = max(grids.l2, key=lambda value: score(value, middle)) if len(grids.l2) > 1 else grids.l2[0]
    weights = grids.text_weight
    weight = max(weights, key=lambda value: score(l2, value)) if len(weights) > 1 else weights[0]
    chosen = Choice(l2, weight, 0.0)
    tower_l2, tower_trials = tune_tower(split, catalogue, kernel, chosen, grids.tower_l2, cold_fraction, seed, progress)
    chosen = Choice(l2, weight, tower_l2)
    shrink, shrink_trials = tune_shrink(split, catalogue, kernel, chosen, grids.shrink, cold_fraction, seed, progress)
    trials = {
        "collaborative": [{"l2": a, "text_weight": b, "ndcg_at_10": s} for (a, b), s in scored.items()],
        "tower": tower_trials,
        "shrink": shrink_trials,
    }
    return Choice(l2, weight, tower_l2, shrink), trials


def tune_tower(
    split: Split,
    catalogue: Catalogue,
    kernel: np.ndarray,
    chosen: Choice,
    values: list[float],
    cold_fraction: float,
    seed: int,
    progress: heirloom.Progress,
) -> tuple[float, list[dict[str, float]]]:
    """``tower_l2`` by a cold-start replay on the validation split."""
    if len(values) == 1:
        return values[0], []
    replayed = _replayed(split, catalogue, cold_fraction, seed, "validation-cold")
    without = Histories.build(
        ((u, i) for u, i in split.fit.pairs() if not replayed[i]), split.fit.users, split.fit.weight_map()
    )
    cooc = ease.cooccurrence(without, len(catalogue))
    warm = np.flatnonzero(np.diag(cooc) > 0)
    weights = ease.item_weights(cooc, kernel, chosen.text_weight, chosen.l2)
    held = [(user, item) for user, item in split.held if replayed[item]]
    trials = []
    counts = without.counts(len(catalogue))
    for value in values:
        filled = ease.blend(weights, ease.text_columns(weights, kernel, warm, value).columns, counts, 0.0)
        found = measure(filled, split.fit, held, candidates=replayed)["ndcg"]
        trials.append({"tower_l2": value, "cold_ndcg_at_10": found})
        progress.advance()
    return max(trials, key=lambda trial: trial["cold_ndcg_at_10"])["tower_l2"], trials


def tune_shrink(
    split: Split,
    catalogue: Catalogue,
    kernel: np.ndarray,
    chosen: Choice,
    values: list[float],
    few_fraction: float,
    seed: int,
    progress: heirloom.Progress,
) -> tuple[float, list[dict[str, float]]]:
    """``shrink`` by a few-interactions replay on the validation split: a seeded share of the
    items with interactions keeps only 1 to ``FEW`` of its users (a seeded choice per item), as
    a new item after its first plays. The value with the best nDCG@10 on all validation pairs
    wins (barely-seen items rarely reach a top 10, so theirs alone is mostly 0: it would pick
    the largest value, at the others' cost); the trials also record those items' nDCG@100."""
    if len(values) == 1:
        return values[0], []
    replayed = _replayed(split, catalogue, few_fraction, seed, "validation-few")
    users: dict[int, list[str]] = {}
    for user, item in split.fit.pairs():
        if replayed[item]:
            users.setdefault(item, []).append(user)
    kept = set()
    for item, who in users.items():
        chooser = random.Random(f"validation-few:{seed}:{catalogue.ids[item]}")
        kept.update((user, item) for user in chooser.sample(who, min(len(who), chooser.randint(1, FEW))))
    few = Histories.build(
        ((u, i) for u, i in split.fit.pairs() if not replayed[i] or (u, i) in kept),
        split.fit.users,
        split.fit.weight_map(),
    )
    cooc = ease.cooccurrence(few, len(catalogue))
    weights = ease.item_weights(cooc, kernel, chosen.text_weight, chosen.l2)
    text = ease.text_columns(weights, kernel, np.flatnonzero(np.diag(cooc) > 0), chosen.tower_l2).columns
    held = [(user, item) for user, item in split.held if replayed[item]]
    trials = []
    for value in values:
        blended = ease.blend(weights, text, few.counts(len(catalogue)), value)
        trials.append(
            {
                "shrink": value,
                "few_ndcg_at_100": measure(blended, few, held, k=100)["ndcg"],
                "ndcg_at_10": measure(blended, few, split.held)["ndcg"],
            }
        )
        progress.advance()
    return max(trials, key=lambda trial: trial["ndcg_at_10"])["shrink"], trials


def _replayed(split: Split, catalogue: Catalogue, fraction: float, seed: int, purpose: str) -> np.ndarray:
    """A seeded ``fraction`` of the items with interactions in the fit histories (a mask)."""
    counts = split.fit.counts(len(catalogue))
    warm_ids = [catalogue.ids[item] for item in np.flatnonzero(counts > 0)]
    replayed = np.zeros(len(catalogue), dtype=bool)
    replayed[[catalogue.index[item] for item in seeded_share(warm_ids, fraction, seed, purpose)]] = True
    return replayed
