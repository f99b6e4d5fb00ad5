"""Choosing the hybrid recommender's hyper-parameters on a validation split of train.

Never on test: the training interactions are split again per user (the same seeded
choice a source makes for its ``validation`` split), the model is fitted on the rest
and scored on the held-out part by nDCG@10. ``l2`` then ``text_weight`` are chosen by
coordinate search (``l2`` at the middle ``text_weight`` first). ``tower_l2`` is chosen
on a cold-start replay: a seeded share of the items with interactions lose them all,
and their columns are predicted from text; nDCG@10 ranks only those items for the
validation users who interacted with them.
"""

from __future__ import annotations

import attrs
import numpy as np

import heirloom
from heirloom_plugins.recommend import ease
from heirloom_plugins.recommend.data import Catalogue, Histories
from heirloom_plugins.recommend.protocol import measure
from heirloom_plugins.recommend.records import per_user_holdout, seeded_share


@attrs.frozen
class Choice:
    """The hyper-parameters a fit uses."""

    l2: float
    text_weight: float
    tower_l2: float

    def __str__(self) -> str:
        return f"l2={self.l2:g}, text_weight={self.text_weight:g}, tower_l2={self.tower_l2:g}"


@attrs.frozen
class Grids:
    """Candidates for each hyper-parameter (one value: fixed)."""

    l2: list[float]
    text_weight: list[float]
    tower_l2: list[float]

    def fixed(self) -> Choice | None:
        """The only choice there is, when every grid has one value."""
        if len(self.l2) == len(self.text_weight) == len(self.tower_l2) == 1:
            return Choice(self.l2[0], self.text_weight[0], self.tower_l2[0])
        return None

    def pinned(self, choice: Choice) -> Choice:
        """``choice`` with every parameter the configuration fixes (a one-value grid) set
        to that value: what a warm start keeps of its parent's choice."""
        return Choice(
            *(grid[0] if len(grid) == 1 else getattr(choice, name) for name, grid in attrs.asdict(self).items())
        )

    def fits(self) -> int:
        """About how many solves a search costs (for the progress bar)."""
        return len(self.l2) + len(self.text_weight) - 1 + (len(self.tower_l2) if len(self.tower_l2) > 1 else 0)


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
    fit = Histories.build(((user, index[item]) for user, item in pairs if (user, item) not in held), histories.users)
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
        return Choice(*(sorted(grid)[len(grid) // 2] for grid in (grids.l2, grids.text_weight, grids.tower_l2))), None
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
    trials = {
        "collaborative": [{"l2": a, "text_weight": b, "ndcg_at_10": s} for (a, b), s in scored.items()],
        "tower": tower_trials,
    }
    return Choice(l2, weight, tower_l2), trials


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
    counts = np.diag(ease.cooccurrence(split.fit, len(catalogue)))
    warm_ids = [catalogue.ids[item] for item in np.flatnonzero(counts > 0)]
    replayed = np.zeros(len(catalogue), dtype=bool)
    replayed[[catalogue.index[item] for item in seeded_share(warm_ids, cold_fraction, seed, "validation-cold")]] = True
    without = Histories.build(((u, i) for u, i in split.fit.pairs() if not replayed[i]), split.fit.users)
    cooc = ease.cooccurrence(without, len(catalogue))
    warm = np.flatnonzero(np.diag(cooc) > 0)
    weights = ease.item_weights(cooc, kernel, chosen.text_weight, chosen.l2)
    held = [(user, item) for user, item in split.held if replayed[item]]
    trials = []
    for value in values:
        mapping = ease.text_map(weights, kernel, warm, value)
        filled = ease.fill_from_text(weights.copy(), mapping, kernel, warm)
        found = measure(filled, split.fit, held, candidates=replayed)["ndcg"]
        trials.append({"tower_l2": value, "cold_ndcg_at_10": found})
        progress.advance()
    return max(trials, key=lambda trial: trial["cold_ndcg_at_10"])["tower_l2"], trials
