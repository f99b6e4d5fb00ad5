"""The ``hybrid-recommender`` model: collaborative EASE with an item-text tower.

Behaviour and text meet in one closed-form item-item model (``ease.py``): the text
kernel joins the co-occurrence Gram matrix, and items without interactions get columns
predicted from their text, so a movie nobody has seen yet is still recommended to the
users whose history suggests it. Hyper-parameters are chosen on a validation split of
the training data (``tuning.py``); a warm start (``inherit``) reuses the parent's choice,
so retraining with new events costs one solve instead of a search (unless the parent
had nothing to choose on: ``fitted.how_chosen``).

numpy only: no torch, no download.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs
import numpy as np

import heirloom
from heirloom_plugins.parent_format import other_format
from heirloom_plugins.recommend import ease, sizing
from heirloom_plugins.recommend.checks import grid, share
from heirloom_plugins.recommend.data import Catalogue, Histories, catalogue_of, listed, read_records
from heirloom_plugins.recommend.fitted import FORMAT, Fitted, how_chosen
from heirloom_plugins.recommend.protocol import CUTOFF, measure, scores
from heirloom_plugins.recommend.ranking import top_k
from heirloom_plugins.recommend.records import id_key
from heirloom_plugins.recommend.tower import MAX_BUCKETS, HashedTower, ItemText, SparseRows, TowerSettings, tokens
from heirloom_plugins.recommend.tuning import Choice, Grids, tune


@attrs.define(kw_only=True)
class HybridRecommender(heirloom.Model):
    """Recommends items from what users did and what items say; ranks unseen items from text.

    Each list is a grid searched on a validation split of train (one value: fixed):
    ``l2`` (EASE's ridge), ``text_weight`` (how much the text kernel adds to co-occurrence),
    ``tower_l2`` (the ridge of the text-to-behaviour map used for items without
    interactions) and ``shrink`` (the users at which an item's own column and its text
    prediction weigh the same: a new item's first plays move it towards what they say).
    """

    #: 2: states keep the source's validation pairs (``fitted.VALIDATION_TENSORS``); a format-1 state loads and
    #: serves as it did, and an unchanged retrain refits it (heirloom before 2 loaded one and recommended those).
    state_format: ClassVar[int] = 2
    #: The source of item and interaction records (e.g. a union of movielens and events).
    data: str = heirloom.ref("source")
    l2: list[float] = attrs.field(factory=lambda: [125.0, 250.0, 500.0, 1000.0, 2000.0], validator=grid(low=1e-6))
    text_weight: list[float] = attrs.field(factory=lambda: [0.0, 3.0, 10.0, 30.0], validator=grid(low=0.0))
    tower_l2: list[float] = attrs.field(factory=lambda: [3.0, 10.0, 30.0, 100.0], validator=grid(low=1e-6))
    shrink: list[float] = attrs.field(factory=lambda: [0.0, 1.0, 3.0, 10.0, 30.0], validator=grid(low=0.0))
    #: Weigh each interaction by ``0.5 ** (age / half_life_days)``, its age in days before the
    #: training data's latest time (a pair's latest time counts): a user's recent plays then
    #: speak louder, in the item-item weights and in their scores. None (the default): old and
    #: new interactions weigh the same. Not searched: a fixed value, every interaction timed.
    half_life_days: float | None = attrs.field(default=None, validator=attrs.validators.optional(heirloom.above(0.0)))
    #: Share of each user's training interactions held out to choose the hyper-parameters.
    validation_fraction: float = attrs.field(default=0.25, validator=share(zero_ok=False))
    #: Share of the items replayed as cold to choose ``tower_l2``.
    cold_fraction: float = attrs.field(default=0.1, validator=share(zero_ok=False))
    #: Seed of those choices (with a source's seed and fraction, the same validation split).
    seed: int = 42
    #: Hash space of the text features, and each text block's weight.
    #: At most 2**24, as the text classifier's: the tower builds arrays of this size (checker 277: 2**63 passed check).
    buckets: int = attrs.field(default=1 << 14, validator=[heirloom.at_least(1 << 8), attrs.validators.le(MAX_BUCKETS)])
    title_weight: float = attrs.field(default=1.0, validator=heirloom.at_least(0.0))
    year_weight: float = attrs.field(default=1.0, validator=heirloom.at_least(0.0))
    genre_weight: float = attrs.field(default=1.0, validator=heirloom.at_least(0.0))

    def __attrs_post_init__(self) -> None:
        self._fitted: Fitted | None = None
        self._postings_of: tuple[Fitted, SparseRows, frozenset[tuple[str, str]]] | None = None
        self._silent_of: tuple[Fitted, np.ndarray] | None = None

    def ready(self) -> bool:
        return self._fitted is not None

    def tower_settings(self) -> TowerSettings:
        return TowerSettings(self.buckets, self.title_weight, self.year_weight, self.genre_weight)

    def grids(self) -> Grids:
        return Grids(list(self.l2), list(self.text_weight), list(self.tower_l2), list(self.shrink))

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        data: Iterable[Any],
        parent: heirloom.State | None = None,
        progress: heirloom.Progress | None = None,
        validation: Iterable[Any] | None = None,
    ) -> None:
        """Learns ``data``; ``validation`` (the source's split) is kept, never learnt from: its pairs
        are items the users have, left out of what is recommended and of the test ranking."""
        progress = progress or heirloom.NullProgress()
        began = time.perf_counter()
        # only the parent's choice is reused, but a damaged one is refused, and before the data is read
        inherited = heirloom.warm_start_parent(parent, lambda state: Fitted.from_state(state, "parent"))
        lines: list[str | None] = []
        resources = getattr(getattr(self, "ctx", None), "resources", None)

        def refuse(items: int) -> None:  # before the long read of the interactions, and once the catalogue is known
            sizing.refuse_if_too_big(items, resources, "hybrid-recommender")

        items, pairs, times = read_records(sizing.sized(data, refuse), lines)
        recency, recency_summary = self._recency(pairs, times, lines, progress)
        pairs, stray = listed(items, pairs)
        if stray:
            progress.log(
                f"left out {len(stray)} interaction(s) with items the catalogue does not list "
                f"(first: user {stray[0][0]!r}, item {stray[0][1]!r})"
            )
        if not pairs:
            raise heirloom.HeirloomError("hybrid-recommender needs interactions to fit; the training data has none")
        catalogue = catalogue_of(items, pairs)
        refuse(len(catalogue))
        index = catalogue.index
        weights = None if recency is None else {(user, index[item]): recency[user, item] for user, item in pairs}
        histories = Histories.build(((user, index[item]) for user, item in pairs), weights=weights)
        tower = HashedTower(self.tower_settings()).fit(catalogue.texts)
        features = tower.encode(catalogue.texts)
        kernel = features.gram()
        progress.log(
            f"fitting hybrid-recommender: {len(histories)} users, {len(catalogue)} items, "
            f"{len(histories.items)} distinct interactions"
        )
        unblended = parent is not None and "shrink" not in parent.metadata.get("choice", {})
        parent_chosen = how_chosen(parent) if parent is not None else None
        choice, trials, chosen = self._choose(
            histories, catalogue, kernel, tower, inherited, unblended, parent_chosen, progress
        )
        if inherited is not None and (absent := len(set(inherited.histories.users).difference(histories.users))):
            gone = len(set(inherited.catalogue.index).difference(index))  # another domain's shares neither (h457 F1)
            none = (
                " (nothing in common: only settings chosen on other data carry over)"
                if gone == len(inherited.catalogue) and absent == len(inherited.histories)
                else ""
            )
            progress.log(  # a parent of another project ("shop/recs@production") lent nothing of its 8,783 pairs
                f"warm start: the parent's training pairs are not carried (a fit learns this data's alone): {absent} "
                f"of its {len(inherited.histories)} users and {gone} of its {len(inherited.catalogue)} items are not "
                f"in it{none}"
            )
        progress.start("fitting on all training interactions", total=1)
        hybrid = ease.hybrid(histories, kernel, *attrs.astuple(choice))
        progress.advance()
        progress.log(f"fitted in {time.perf_counter() - began:.1f}s")
        training = {
            "users": len(histories),
            "items": len(catalogue),
            "interactions": len(histories.items),
            "interactions_outside_catalogue": len(stray),
            "items_without_interactions": len(catalogue) - len(hybrid.warm),
            "trials": trials,
            "chosen": chosen,
            "warm_start": _growth(inherited, catalogue, histories) if inherited is not None else None,
            "recency": recency_summary,
        }
        popularity = np.bincount(histories.items, minlength=len(catalogue)).astype(np.float32)
        kept = None if validation is None else _validation(validation, catalogue, histories, progress)
        fitted = Fitted(catalogue, histories, tower, features, hybrid, popularity, choice, training, kept)
        self.load(fitted.state(attrs.asdict(self)))  # what is stored and served (float32), so train scores it, as eval

    def _recency(
        self, pairs: list[tuple[str, str]], times: list[Any], lines: list[str | None], progress: heirloom.Progress
    ) -> tuple[dict[tuple[str, str], float] | None, dict[str, Any] | None]:
        """Each pair's weight by ``half_life_days`` from its latest time, and what the training summary says of them
        (None, None when off). Now is the latest time not past tomorrow: one line dated 2100 made every real one
        weigh nothing (a shop's nDCG@10 0.4379 -> 0.0621, popularity's); later ones weigh as of now."""
        if self.half_life_days is None or not pairs:
            return None, None
        untimed = [(pair, at) for pair, stamp, at in zip(pairs, times, lines, strict=True) if not _is_time(stamp)]
        if untimed:
            ((user, item), at), logged = untimed[0], [at for _, at in untimed if at]
            where = f", {at}" if at else ""
            # an events log line's null time is no time_column to set (checker 283: it was advised, set and complete)
            remedy = (
                "give those events log lines a time (or remove them)"
                if len(logged) == len(untimed)
                else "give every rating a time (ratings-csv: time_column)"
                + (f" and every events log line one (first: {logged[0]})" if logged else "")
            )
            raise heirloom.HeirloomError(
                f"hybrid-recommender: half_life_days weighs interactions by their time, but {len(untimed)} of "
                f"{len(pairs)} have none (first: user {user!r}, item {item!r}{where}); {remedy} or leave "
                "half_life_days unset"
            )
        latest: dict[tuple[str, str], float] = {}
        for pair, stamp in zip(pairs, times, strict=True):
            latest[pair] = max(latest.get(pair, stamp), stamp)
        stamps = np.fromiter(latest.values(), dtype=np.float64, count=len(latest))
        believable = stamps[stamps <= time.time() + 86400.0]  # a source warns of times past tomorrow, as here
        now = float(believable.max() if believable.size else stamps.max())
        weights = 0.5 ** (np.maximum(now - stamps, 0.0) / (self.half_life_days * 86400.0))
        summary = {"now": now, "after_now": int((stamps > now).sum()), "under_0_01": float((weights < 0.01).mean())}
        if summary["after_now"]:
            progress.log(f"half_life_days: {summary['after_now']} pair(s) timed past tomorrow weigh as of {_day(now)}")
        if summary["under_0_01"] >= 0.5:
            progress.log(
                f"warning: half_life_days = {self.half_life_days:g}: {summary['under_0_01']:.0%} of the interactions "
                f"weigh under 0.01 (older than {self.half_life_days * np.log2(100):.0f} days before {_day(now)}, the "
                "latest time): the model learns from the newest few; are the data's times of one clock (a live events "
                "log beside an older file)? Raise half_life_days or leave it unset"
            )
        return dict(zip(latest, weights.tolist(), strict=True)), summary

    def _choose(
        self,
        histories: Histories,
        catalogue: Catalogue,
        kernel: np.ndarray,
        tower: HashedTower,
        inherited: Fitted | None,
        unblended: bool,
        parent_chosen: str | None,
        progress: heirloom.Progress,
    ) -> tuple[Choice, dict[str, Any] | None, str]:
        """The hyper-parameters, their trials and how they were chosen (``fitted.how_chosen``): fixed by
        the configuration, else the parent's (same text tower, a choice it searched or inherited;
        ``shrink`` searched when the parent was stored before it existed, ``unblended``), else
        searched on validation (with every score tried)."""
        fixed = self.grids().fixed()
        if fixed is not None:
            return fixed, None, "fixed"
        if inherited is not None and inherited.tower.settings != tower.settings:
            progress.log("the parent's text tower has other settings: choosing hyper-parameters afresh")
        elif inherited is not None and parent_chosen in ("fallback", "unknown"):
            # a shop that started with 3 ratings kept the grids' middles forever (checker h318)
            why = (
                "were never chosen (it had no validation interactions to choose on)"
                if parent_chosen == "fallback"
                else "are not known to have been chosen on validation (its state has no trials and predates "
                "training.chosen)"
            )
            progress.log(f"warm start: the parent's {inherited.choice} {why}: choosing hyper-parameters afresh")
        elif inherited is not None:
            choice = self.grids().pinned(inherited.choice)
            progress.log(f"warm start: reusing the parent's {inherited.choice}" + _pins(choice, inherited.choice))
            if not unblended or len(self.shrink) == 1:
                return choice, None, "inherited"
            progress.log("the parent was stored before shrink existed (its 0 was no choice): searching shrink")
            pinned = Grids(*([value] for value in attrs.astuple(choice)[:-1]), list(self.shrink))
            return self._search(histories, catalogue, kernel, pinned, progress)
        return self._search(histories, catalogue, kernel, self.grids(), progress)

    def _search(
        self, histories: Histories, catalogue: Catalogue, kernel: np.ndarray, grids: Grids, progress: heirloom.Progress
    ) -> tuple[Choice, dict[str, Any] | None, str]:
        """The best choice of ``grids`` on validation, every score tried, and ``searched`` (or
        ``fallback``: no validation interactions, the grids' middles)."""
        choice, trials = tune(
            histories,
            catalogue,
            kernel,
            grids,
            fraction=self.validation_fraction,
            cold_fraction=self.cold_fraction,
            seed=self.seed,
            progress=progress,
        )
        if trials is None:
            progress.log(f"no validation interactions to choose on (every user has too few): {choice}")
            return choice, None, "fallback"
        progress.log(f"chosen on validation: {choice}")
        return choice, trials, "searched"

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, data: Iterable[Any]) -> heirloom.Report:
        """nDCG, precision, recall, MAP at 10 and coverage on held-out interactions (ranking
        every item the user has in neither train nor the kept validation pairs), and cold-start
        nDCG@10. A held-out pair it trained on is left out, ``left_out``; so is one of the kept
        validation pairs, unless ``data`` is a validation split (``_scores_validation``): those are
        then scored, as when it was trained, though new data moved some pairs since."""
        fitted = self._require()
        items, pairs, _ = read_records(data)
        index = fitted.catalogue.index
        held = [(user, index.get(item, -1)) for user, item in pairs]
        scoring = _scores_validation(held, fitted)
        known = {"popularity": fitted.popularity, "withheld": fitted.validation, "scoring_withheld": scoring}
        main = measure(fitted.hybrid.weights, fitted.histories, held, **known)
        baseline = measure(None, fitted.histories, held, **known)  # does the model help?
        cold = np.zeros(len(fitted.catalogue), dtype=bool)
        cold[[index[r["item"]] for r in items if r.get("cold") and r["item"] in index]] = True
        cold_ndcg, cold_users = self._cold_start(fitted, cold, held, scoring) if cold.any() else (None, 0)
        scored = main["users"] > 0  # a metric over no user is no figure, not 0.0
        metrics = {
            "ndcg_at_10": main["ndcg"] if scored else None,
            "precision_at_10": main["precision"] if scored else None,
            "recall_at_10": main["recall"] if scored else None,
            "map_at_10": main["map"] if scored else None,
            "coverage": main["coverage"] if scored else None,
            "cold_ndcg_at_10": cold_ndcg if cold_users else None,
            "popularity_ndcg_at_10": baseline["ndcg"] if scored else None,
            heirloom.SEEN_IN_TRAINING: 0,  # the held-out pairs it trained on are left out of every score:
            heirloom.LEFT_OUT: int(main["known"]),  # so many, of these pairs (promote compares the two)
            heirloom.LEFT_OUT_OF: len(set(held)),
        }
        faint = (fitted.training.get("recency") or {}).get("under_0_01", 0.0) >= 0.5
        left = (int(main["known"] - main["kept"]), int(main["kept"]))
        text = _report_text(metrics, main["users"], int(cold.sum()), cold_users, left, faint)
        return heirloom.Report(metrics, text)

    def _cold_start(
        self, fitted: Fitted, cold: np.ndarray, held: list[tuple[str, int]], scoring_withheld: bool
    ) -> tuple[float, int]:
        """Refit with the chosen hyper-parameters but without any interaction on a ``cold``
        item, then rank only the cold items for the users who have them held out."""
        histories = fitted.histories
        kept = ((u, i) for u, i in histories.pairs() if not cold[i])
        without = Histories.build(kept, histories.users, histories.weight_map())
        choice = fitted.choice
        twin = ease.hybrid(without, fitted.features.gram(), *attrs.astuple(choice))
        wanted = [(user, item) for user, item in held if item >= 0 and cold[item]]
        withheld = {"withheld": fitted.validation, "scoring_withheld": scoring_withheld}
        found = measure(twin.weights, fitted.histories, wanted, candidates=cold, **withheld)
        return found["ndcg"], int(found["users"])

    # -- serving --------------------------------------------------------------------------
    @property
    def fitted(self) -> Fitted:
        """The trained model as data (weights, tower, chosen hyper-parameters, summary)."""
        return self._require()

    @property
    def catalogue(self) -> Catalogue:
        return self._require().catalogue

    @property
    def histories(self) -> Histories:
        return self._require().histories

    def predict(self, batch: list[Any]) -> list[list[dict[str, Any]]]:
        """For each ``{"user": id}`` or ``{"history": [item ids]}`` (optional ``"k"``, default
        10): the best items the user has not interacted with, ``{"item", "score", ...}``."""
        fitted = self._require()
        histories, ks, strengths, withheld = [], [], [], []
        for position, query in enumerate(batch):
            if not isinstance(query, Mapping) or ("user" in query) == ("history" in query):
                raise heirloom.HeirloomError(f"query {position} must be a map with 'user' or 'history': {query!r:.120}")
            histories.append(self.history_of(query))
            ks.append(int(query.get("k", CUTOFF)))
            row = fitted.histories.index.get(id_key(query["user"])) if "user" in query else None
            strengths.append(self.strengths(row, histories[-1]))
            withheld.append(self.withheld(query["user"]) if "user" in query else np.zeros(0, dtype=np.int64))
        return [
            [{**fitted.catalogue.describe(item), "score": score} for item, score in ranked]
            for ranked in self.recommend(histories, ks, withheld, strengths)
        ]

    def history_of(self, query: Mapping[str, Any]) -> np.ndarray:
        """The item positions of a query's history (a known user's training items; none for a
        user only the validation pairs name)."""
        fitted = self._require()
        if "user" in query:
            row = fitted.histories.index.get(id_key(query["user"]))
            if row is None and not len(self.withheld(query["user"])):
                raise heirloom.HeirloomError(f"unknown user {query['user']!r}")
            return fitted.histories.of(row) if row is not None else np.zeros(0, dtype=np.int64)
        index = fitted.catalogue.index
        unknown = [item for item in query["history"] if id_key(item) not in index]
        if unknown:
            raise heirloom.HeirloomError(f"items not in the catalogue: {unknown!r:.120}")
        return np.unique(np.asarray([index[id_key(item)] for item in query["history"]], dtype=np.int64))

    def withheld(self, user: Any) -> np.ndarray:
        """A user's items of the source's validation split (sorted positions): they have them, so
        they are never recommended, but the weights never learnt them, so they are not ranked
        from either. Empty for anyone else, and in a state stored before they were kept."""
        validation = self._require().validation
        row = None if validation is None else validation.index.get(id_key(user))
        return validation.of(row) if row is not None else np.zeros(0, dtype=np.int64)

    def strengths(self, row: int | None, history: np.ndarray) -> np.ndarray | None:
        """How much each item of ``history`` (sorted positions) counts in the scores: with
        ``half_life_days``, a known user's (``row``) learnt items their recency weight, any
        other item (a request's: the user has it now) 1; None without it."""
        histories = self._require().histories
        if histories.weights is None:
            return None
        learnt = histories.of(row) if row is not None else np.zeros(0, dtype=np.int64)
        if not len(learnt):
            return np.ones(len(history), dtype=np.float32)
        found = np.searchsorted(learnt, history).clip(max=len(learnt) - 1)
        return np.where(learnt[found] == history, histories.weights_of(row)[found], 1.0).astype(np.float32)

    def recommend(
        self,
        histories: list[np.ndarray],
        ks: list[int],
        excluded: list[np.ndarray] | None = None,
        strengths: list[np.ndarray | None] | None = None,
    ) -> list[list[tuple[int, float]]]:
        """The ``k`` best ``(item position, score)`` per history, history items and the
        ``excluded`` positions left out. An item whose row is zeros (nobody had it in training,
        with ``text_weight`` 0) counts with the row its text-predicted column implies, as in
        ``similar``: a history of a new product got the catalogue's bestsellers while its page showed
        its neighbours (checker 283). A history that says nothing (empty, or only such items whose
        text resembles nothing) gets the most popular items. ``strengths`` (from ``strengths``, one
        per history) weighs each history's items; None: each counts 1."""
        fitted = self._require()
        weighed = None
        if strengths is not None and any(s is not None for s in strengths):
            pairs = zip(histories, strengths, strict=True)
            weighed = [np.ones(len(h), np.float32) if s is None else s for h, s in pairs]
        silent = self._silent(fitted)
        added: list[np.ndarray | None] = []
        for position, history in enumerate(histories):
            quiet = silent[history]
            strength = np.ones(int(quiet.sum())) if weighed is None else weighed[position][quiet]
            added.append(strength @ self._implied(history[quiet]) if quiet.any() else None)
        ranked = scores(fitted.hybrid.weights, histories, fitted.popularity, weighed, added)
        for row, positions in enumerate(excluded or ()):
            ranked[row, positions] = -np.inf
        return [_best(row, k) for row, k in zip(ranked, ks, strict=True)]

    def similar(self, item: int, k: int) -> list[tuple[int, float]]:
        """Items a user who has ``item`` should see next: its row of ``B``. An item nobody had in
        training has a row of zeros: its text-predicted column turned into a row instead, as
        ``similar_text`` ranks, and the most popular items when its text resembles nothing."""
        hybrid = self._require().hybrid
        row = hybrid.weights[item].astype(np.float64)
        if not row.any():
            row = self._implied(np.asarray([item]))[0]
        if not row.any():
            row = self._require().popularity.astype(np.float64)
        row[item] = -np.inf
        return _best(row, k)

    def _implied(self, items: np.ndarray) -> np.ndarray:
        """The rows ``items``' columns of ``B`` imply (``B[i, j] P[j, j] = B[j, i] P[i, i]``, up to each item's own
        ``P[i, i]``), one per item: for an item nobody had, its text-predicted column turned into a row."""
        hybrid = self._require().hybrid
        return (hybrid.weights[:, items] / hybrid.diagonal[:, None]).T

    def _silent(self, fitted: Fitted) -> np.ndarray:
        """Per item, whether its row of ``B`` is zeros, computed once per fitted state."""
        if self._silent_of is None or self._silent_of[0] is not fitted:
            self._silent_of = (fitted, ~fitted.hybrid.weights.any(axis=1))
        return self._silent_of[1]

    def similar_text(self, text: ItemText, k: int) -> list[tuple[int, float]]:
        """Catalogue items for a new item known only by its text: its column of ``B``,
        predicted by the text tower, turned into its row (what a user who has it should
        see next, as ``similar`` ranks). Scores order the items; their scale is arbitrary.
        A text that shares no feature with an item someone had resembles none: no items. An
        item the text says nothing about (score exactly 0) is left out, so a text that resembles
        only items nobody had with another one gets no items either, not the catalogue's first
        ``k`` at 0."""
        fitted = self._require()
        postings, vocabulary = self._postings(fitted)
        buckets, values = fitted.tower.encode([text], vocabulary).row(0)
        if len(buckets) == 0:
            return []
        similarity = np.zeros(len(fitted.hybrid.warm), dtype=np.float64)
        for bucket, value in zip(buckets.tolist(), values.tolist(), strict=True):
            rows, weights = postings.row(bucket)
            similarity[rows] += value * weights
        if not similarity.any():
            return []
        row = fitted.hybrid.text_map @ similarity / fitted.hybrid.diagonal
        row[row == 0] = -np.inf
        return _best(row, k)

    def _postings(self, fitted: Fitted) -> tuple[SparseRows, frozenset[tuple[str, str]]]:
        """bucket -> warm items with that feature, and the tokens of those items (a text's
        other tokens resemble nothing), built once per fitted state."""
        cached = self._postings_of
        if cached is None or cached[0] is not fitted:
            postings = fitted.features.take(fitted.hybrid.warm).transposed(fitted.tower.settings.buckets)
            texts = fitted.catalogue.texts
            vocabulary = frozenset(token for item in fitted.hybrid.warm.tolist() for token in tokens(texts[item]))
            self._postings_of = cached = (fitted, postings, vocabulary)
        return cached[1], cached[2]

    # -- state ----------------------------------------------------------------------------
    def state(self) -> heirloom.State:
        return self._require().state(attrs.asdict(self))

    def check_parent(self, metadata: dict[str, Any]) -> list[tuple[str, str]]:
        """A parent of another model type, said by ``profile check`` and by ``train`` before the data is read."""
        return other_format(metadata, FORMAT, "hybrid-recommender")

    def load(self, state: heirloom.State) -> None:
        self._adopt(Fitted.from_state(state, "state"))

    def _adopt(self, fitted: Fitted) -> None:
        self._fitted = fitted

    def _require(self) -> Fitted:
        if self._fitted is None:
            raise heirloom.HeirloomError("hybrid-recommender has no weights yet: fit it or load a state first")
        return self._fitted


def _validation(
    records: Iterable[Any], catalogue: Catalogue, histories: Histories, progress: heirloom.Progress
) -> Histories | None:
    """The validation records' pairs of catalogue items, with the training users' rows first
    (a user only validation names follows), or None when it has none."""
    _, pairs, _ = read_records(records)
    index = catalogue.index
    kept = [(user, index[item]) for user, item in pairs if item in index]
    if not kept:
        return None
    progress.log(f"kept {len(set(kept))} validation pairs: never recommended, never learnt from")
    return Histories.build(kept, histories.users)


def _scores_validation(held: list[tuple[str, int]], fitted: Fitted) -> bool:
    """Whether ``held`` is a validation split: most of its pairs of catalogue items the version did not train on are
    ones it kept from validation, its own split (new data since adds and moves some: one new user's, or appended
    ratings'). A test split shares few with it (moved by new ratings, or stated in two splits), which stay left out.
    All or nothing, one new user's two pairs left out the holder's 1,386 others as trained on (checker 270)."""
    if fitted.validation is None:
        return False
    trained = set(fitted.histories.pairs())
    fresh = {pair for pair in held if pair[1] >= 0 and pair not in trained}
    return 2 * len(fresh.intersection(fitted.validation.pairs())) > len(fresh)


def _is_time(stamp: Any) -> bool:
    """A Unix time a recency weight can be computed from (not None, a bool or NaN)."""
    return isinstance(stamp, int | float) and not isinstance(stamp, bool) and np.isfinite(stamp)


def _day(stamp: float) -> str:
    """A Unix time as its UTC date, for messages."""
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


def _best(row: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` highest finite entries of ``row``: ``(position, score)``, best first."""
    top = top_k(row[None, :], k)[0]
    return [(int(item), float(row[item])) for item in top if np.isfinite(row[item])]


def _growth(parent: Fitted, catalogue: Catalogue, histories: Histories) -> dict[str, int]:
    """What the new training data adds to the parent's: users, items, interactions."""
    before = {(user, parent.catalogue.ids[item]) for user, item in parent.histories.pairs()}
    after = {(user, catalogue.ids[item]) for user, item in histories.pairs()}
    return {
        "users_added": len(set(histories.users) - set(parent.histories.users)),
        "items_added": len(set(catalogue.ids) - set(parent.catalogue.ids)),
        "interactions_added": len(after - before),
        "interactions_removed": len(before - after),
    }


def _report_text(
    metrics: dict[str, Any], users: int, cold_items: int, cold_users: int, left: tuple[int, int], faint: bool
) -> str:
    """``left``: the held-out pairs left out, trained on and kept from validation; ``faint``: most training
    interactions weighed under 0.01 by ``half_life_days``, the likelier cause."""
    lines = [f"ranking all items each user has not interacted with, top 10, {users} users with held-out items"]
    if any(left):  # the splits moved since it trained (appended ratings), or a file states a pair in two splits
        said = [f"{n} {why}" for n, why in zip(left, ("it trained on", "it kept from validation"), strict=True) if n]
        lines.append(f"  (held-out pairs this version has, left out: it never recommends them: {', '.join(said)})")
    for name in ("ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "coverage"):
        shown = "n/a (no user has held-out items)" if users == 0 else f"{metrics[name]:.4f}"
        lines.append(f"  {name:<16} {shown}")
    if users:  # the most popular items each user lacks: a model below it does not help on these data
        lines.append(f"baseline, the most popular items: ndcg_at_10 {metrics['popularity_ndcg_at_10']:.4f}")
        if metrics["ndcg_at_10"] <= metrics["popularity_ndcg_at_10"]:
            lines.append(
                "  the model does not beat it here: most training interactions weighed under 0.01 by half_life_days "
                "(training.recency in models show --metadata): check the data's times or raise it"
                if faint
                else "  the model does not beat it here: widen the l2 grid, add item texts, or serve popularity"
            )
    if not cold_items:
        lines.append("cold start: the data marks no cold items")
    elif not cold_users:
        lines.append(f"cold start: {cold_items} items marked cold, but no test user has one held out: n/a")
    else:
        lines.append(
            f"cold start: {cold_items} items refitted without their interactions, "
            f"ranked from text for {cold_users} users"
        )
        lines.append(f"  {'cold_ndcg_at_10':<16} {metrics['cold_ndcg_at_10']:.4f}")
    return "\n".join(lines)


def _pins(choice: Choice, parent: Choice) -> str:
    """What the configuration fixed over the parent's choice, for the training log."""
    fixed = [f"{name}={value:g}" for name, value in attrs.asdict(choice).items() if value != getattr(parent, name)]
    return f", except {', '.join(fixed)} (fixed by the configuration)" if fixed else ""
