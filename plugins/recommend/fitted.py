"""A fitted hybrid recommender as data, and its portable state (tensors + JSON)."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

import heirloom
from heirloom_plugins.recommend import integrity
from heirloom_plugins.recommend.data import Catalogue, Histories
from heirloom_plugins.recommend.ease import Hybrid
from heirloom_plugins.recommend.tower import HashedTower, ItemText, SparseRows, TowerSettings
from heirloom_plugins.recommend.tuning import Choice

FORMAT = "heirloom.hybrid-recommender/1"
TENSORS = (
    "item_weights",
    "text_map",
    "warm_items",
    "precision_diagonal",
    "popularity",
    "idf",
    "text_indptr",
    "text_indices",
    "text_values",
    "history_indptr",
    "history_items",
)
#: Optional: the source's validation pairs (``Fitted.validation``), in states stored since they are kept.
VALIDATION_TENSORS = ("validation_indptr", "validation_items")


@attrs.frozen
class Fitted:
    """Everything a trained hybrid recommender needs to rank, explain and be refitted."""

    catalogue: Catalogue
    histories: Histories
    tower: HashedTower
    #: The tower's features of every catalogue item.
    features: SparseRows
    #: ``B`` (an item's row says what a user who has it should see), ``R`` (text-kernel
    #: vector over the warm items -> a column of ``B``), the warm items, ``diag(P)``.
    hybrid: Hybrid
    #: Users who interacted with each item in training.
    popularity: np.ndarray
    choice: Choice
    training: dict[str, Any]
    #: The source's validation pairs (users: the training users, then those only validation
    #: names): items the users have that the model did not learn from, never recommended nor
    #: ranked at test. None: no validation split, or a state stored before it was kept.
    validation: Histories | None = None

    def state(self, config: dict[str, Any]) -> heirloom.State:
        """Tensors (float32 weights, int64 indices) and JSON metadata: catalogue, users,
        tower settings, the chosen hyper-parameters, the configuration and the training summary."""
        tensors = {
            "item_weights": self.hybrid.weights.astype(np.float32),
            "text_map": self.hybrid.text_map.astype(np.float32),
            "warm_items": self.hybrid.warm.astype(np.int64),
            "precision_diagonal": self.hybrid.diagonal.astype(np.float32),
            "popularity": self.popularity.astype(np.float32),
            "idf": np.asarray(self.tower.idf, dtype=np.float32),
            "text_indptr": self.features.indptr,
            "text_indices": self.features.indices,
            "text_values": self.features.values,
            "history_indptr": self.histories.indptr,
            "history_items": self.histories.items,
        }
        if self.histories.weights is not None:  # half_life_days: each interaction's recency weight
            tensors["history_weights"] = self.histories.weights.astype(np.float32)
        if self.validation is not None:  # optional, as states stored before it load without
            tensors["validation_indptr"] = self.validation.indptr
            tensors["validation_items"] = self.validation.items
        texts = self.catalogue.texts
        metadata = {
            "format": FORMAT,
            "items": {
                "ids": self.catalogue.ids,
                "titles": [text.title for text in texts],
                "years": [text.year for text in texts],
                "genres": [list(text.genres) for text in texts],
            },
            "users": self.histories.users,
            "tower": self.tower.settings.to_json(),
            "choice": attrs.asdict(self.choice),
            "config": config,
            "training": self.training,
        }
        if self.validation is not None:
            metadata["validation_users"] = self.validation.users[len(self.histories) :]
        return heirloom.State({name: np.ascontiguousarray(t) for name, t in tensors.items()}, metadata)

    @classmethod
    def from_state(cls, state: heirloom.State, what: str) -> Fitted:
        """The fitted model in ``state``, refusing other models' states and broken shapes."""
        metadata, tensors = state.metadata, state.tensors
        state.expect_format(FORMAT, "hybrid-recommender", what)
        missing = sorted(set(TENSORS).difference(tensors))
        if missing:
            raise heirloom.HeirloomError(f"the {what} lacks tensors: {', '.join(missing)}")
        items = metadata["items"]
        texts = [
            ItemText(title, year, tuple(genres))
            for title, year, genres in zip(items["titles"], items["years"], items["genres"], strict=True)
        ]
        catalogue = Catalogue(list(items["ids"]), texts)
        weights = tensors.get("history_weights")  # only with half_life_days
        histories = Histories(list(metadata["users"]), tensors["history_indptr"], tensors["history_items"], weights)
        validation = _validation(tensors, metadata, histories, what)
        n, warm = len(catalogue), tensors["warm_items"]
        shapes = {
            "item_weights": (tensors["item_weights"].shape, (n, n)),
            "text_map": (tensors["text_map"].shape, (n, len(warm))),
            "popularity": (tensors["popularity"].shape, (n,)),
            "precision_diagonal": (tensors["precision_diagonal"].shape, (n,)),
            "history_indptr": (tensors["history_indptr"].shape, (len(histories) + 1,)),
            "text_indptr": (tensors["text_indptr"].shape, (n + 1,)),
            **({} if weights is None else {"history_weights": (weights.shape, tensors["history_items"].shape)}),
            **({} if validation is None else {"validation_indptr": (validation.indptr.shape, (len(validation) + 1,))}),
        }
        wrong = [f"{name} {tuple(got)} (expected {want})" for name, (got, want) in shapes.items() if tuple(got) != want]
        if wrong:
            raise heirloom.HeirloomError(f"the {what} has inconsistent shapes: {'; '.join(wrong)}")
        settings = TowerSettings.from_json(metadata["tower"], what)
        if (found := tuple(tensors["idf"].shape)) != (settings.buckets,):
            raise heirloom.HeirloomError(
                f"the {what} has inconsistent shapes: idf {found} (expected ({settings.buckets},))"
            )
        users = [*histories.users, *metadata.get("validation_users", [])]
        integrity.check(tensors, n, settings.buckets, {"items.ids": catalogue.ids, "users": users}, what)
        return cls(
            catalogue,
            histories,
            HashedTower(settings, tensors["idf"]),
            SparseRows(tensors["text_indptr"], tensors["text_indices"], tensors["text_values"]),
            Hybrid(tensors["item_weights"], tensors["text_map"], warm, tensors["precision_diagonal"]),
            tensors["popularity"],
            Choice(**metadata["choice"]),
            dict(metadata.get("training", {})),
            validation,
        )


def how_chosen(state: heirloom.State) -> str:
    """How the hyper-parameters of ``state`` were chosen (``training.chosen``): ``searched`` on
    validation, ``inherited`` (a warm start reused its parent's), ``fixed`` (every grid one value) or
    ``fallback`` (no validation interactions: the grids' middles, no choice). A state stored before
    this was recorded: searched when it has trials, fixed when its configuration fixes every grid,
    else ``unknown`` (it fell back, or reused its own parent's choice, which it does not say)."""
    training = state.metadata.get("training") or {}
    if isinstance(training.get("chosen"), str):
        return training["chosen"]
    if training.get("trials") is not None:
        return "searched"
    config = state.metadata.get("config") or {}
    grids = [config.get(name) for name in ("l2", "text_weight", "tower_l2", "shrink")]
    return "fixed" if all(isinstance(grid, list) and len(grid) == 1 for grid in grids) else "unknown"


def _validation(
    tensors: dict[str, np.ndarray], metadata: dict[str, Any], histories: Histories, what: str
) -> Histories | None:
    """The validation pairs a state keeps (None in one stored before they were kept)."""
    kept = [name for name in VALIDATION_TENSORS if name in tensors]
    if not kept:
        return None
    if len(kept) < len(VALIDATION_TENSORS):
        raise heirloom.HeirloomError(
            f"the {what} lacks tensors: {', '.join(sorted(set(VALIDATION_TENSORS) - set(kept)))}"
        )
    users = histories.users + list(metadata.get("validation_users", []))
    return Histories(users, tensors["validation_indptr"], tensors["validation_items"])
