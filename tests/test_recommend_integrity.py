"""The recommender with tampered state (checker h345 F3, F4): a state whose tensors have the right shapes but
values ``state()`` never writes (a CSR ``indptr`` past its indices, positions outside the catalogue,
NaN, int8 weights, an id twice) loaded, then asked for TiBs, raised IndexError per request or served
``{"items": []}`` with nothing said; each is refused at load, naming the tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import heirloom
from heirloom_plugins.recommend.model import HybridRecommender

FIXED = {"l2": [100.0], "text_weight": [3.0], "tower_l2": [10.0], "shrink": [1.0]}


def records(items: int = 40, users: int = 60, seed: int = 345) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    genres = ["rock", "jazz", "folk", "pop"]
    found: list[dict[str, Any]] = [
        {
            "type": "item",
            "item": f"i{i}",
            "title": f"song {i % 7} tune {i}",
            "year": 1990 + i % 9,
            "genres": [genres[i % 4]],
        }
        for i in range(items)
    ]
    for user in range(users):
        for item in rng.choice(items, size=6, replace=False).tolist():
            found.append({"type": "interaction", "user": f"u{user}", "item": f"i{item}"})
    return found


@pytest.fixture(scope="module")
def state() -> heirloom.State:
    model = HybridRecommender(data="movies", **FIXED)
    model.fit(records())
    return model.state()


def damaged(state: heirloom.State, name: str, change: Any) -> heirloom.State:
    tensors = {key: value.copy() for key, value in state.tensors.items()}
    tensors[name] = change(tensors[name])
    return heirloom.State(tensors, state.metadata)


def _set(index: Any, value: Any) -> Any:
    def change(tensor: np.ndarray) -> np.ndarray:
        tensor[index] = value
        return tensor

    return change


@pytest.mark.parametrize(
    ("name", "change", "said"),
    [
        ("history_indptr", _set(-1, 10**12), "history_indptr must start at 0, never decrease and end at"),
        ("history_indptr", _set(5, -3), "history_indptr must start at 0, never decrease"),
        ("history_indptr", _set(0, 1), "history_indptr must start at 0"),
        ("text_indptr", _set(-1, 10**10), "text_indptr must start at 0, never decrease"),
        ("history_items", _set(0, 10**9), "history_items holds positions outside [0, 40) (items)"),
        ("history_items", _set(0, -1), "history_items holds positions outside [0, 40)"),
        ("history_items", _set(1, 0), "history_items repeats or disorders a row's positions"),
        ("warm_items", _set(0, 10**6), "warm_items holds positions outside [0, 40)"),
        ("text_indices", _set(0, 1 << 20), "text_indices holds positions outside [0, 16384) (buckets)"),
    ],
)
def test_a_tampered_index_tensor_is_refused_at_load_naming_it(state, name, change, said):
    with pytest.raises(heirloom.HeirloomError, match="the state is damaged: ") as caught:
        HybridRecommender(data="movies").load(damaged(state, name, change))
    assert said in str(caught.value)


def test_a_state_with_validation_pairs_checks_them_too():
    source = records()
    model = HybridRecommender(data="movies", **FIXED)
    held = [{"type": "interaction", "user": "u1", "item": "i39"}, {"type": "interaction", "user": "new", "item": "i3"}]
    model.fit(source, validation=held)
    state = model.state()
    assert "validation_items" in state.tensors
    with pytest.raises(heirloom.HeirloomError, match=r"validation_items holds positions outside \[0, 40\)"):
        HybridRecommender(data="movies").load(damaged(state, "validation_items", _set(0, 40)))
    with pytest.raises(heirloom.HeirloomError, match="validation_indptr must start at 0"):
        HybridRecommender(data="movies").load(damaged(state, "validation_indptr", _set(-1, 99)))
    users = {**state.metadata, "validation_users": [state.metadata["users"][0]]}  # a training user again
    with pytest.raises(heirloom.HeirloomError, match=r"users names 'u.*' more than once"):
        HybridRecommender(data="movies").load(heirloom.State(state.tensors, users))


@pytest.mark.parametrize(
    ("name", "change", "said"),
    [
        ("item_weights", _set(slice(10, 20), np.nan), "item_weights holds NaN or infinite values"),
        ("item_weights", _set((slice(None), 5), np.inf), "item_weights holds NaN or infinite values"),
        ("popularity", _set(slice(None), np.nan), "popularity holds NaN or infinite values"),
        ("text_map", _set(slice(None), np.nan), "text_map holds NaN or infinite values"),
        ("idf", _set(3, -np.inf), "idf holds NaN or infinite values"),
        ("text_values", _set(0, np.nan), "text_values holds NaN or infinite values"),
        ("precision_diagonal", _set(2, 0.0), "precision_diagonal holds values that are not positive"),
        ("item_weights", lambda t: (t * 100).astype(np.int8), "item_weights is int8, expected float32"),
        ("item_weights", lambda t: t.astype(np.float64), "item_weights is float64, expected float32"),
        ("history_items", lambda t: t.astype(np.float32), "history_items is float32, expected int64"),
    ],
)
def test_non_finite_or_wrongly_typed_weights_are_refused_at_load_naming_the_tensor(state, name, change, said):
    with pytest.raises(
        heirloom.HeirloomError, match=r"the state (is damaged|has tensors of another dtype): "
    ) as caught:
        HybridRecommender(data="movies").load(damaged(state, name, change))
    assert said in str(caught.value)


@pytest.mark.parametrize(("key", "said"), [("items", "items.ids names 'i0' more than once"), ("users", "users names")])
def test_an_id_stored_twice_is_refused_at_load(state, key, said):
    metadata = {**state.metadata, "items": dict(state.metadata["items"]), "users": list(state.metadata["users"])}
    if key == "items":
        metadata["items"]["ids"] = ["i0", *metadata["items"]["ids"][1:]]
        metadata["items"]["ids"][1] = "i0"
    else:
        metadata["users"][1] = metadata["users"][0]
    with pytest.raises(heirloom.HeirloomError, match="the state is damaged: ") as caught:
        HybridRecommender(data="movies").load(heirloom.State(state.tensors, metadata))
    assert said in str(caught.value)


def test_the_untampered_state_loads_and_serves(state):
    model = HybridRecommender(data="movies")
    model.load(state)
    assert len(model.predict([{"user": "u1", "k": 3}])[0]) == 3


def test_a_warm_start_from_a_damaged_parent_is_refused_before_the_data_is_read(state):
    """It reused the parent's choice and stored a clean version, saying nothing of the parent's NaN weights."""

    def unread():
        raise AssertionError("the data was read")
        yield

    nan = damaged(state, "item_weights", _set(slice(0, 3), np.nan))
    with pytest.raises(heirloom.HeirloomError) as caught:
        HybridRecommender(data="movies", **FIXED).fit(unread(), parent=nan)
    assert str(caught.value) == (
        'the parent is damaged: item_weights holds NaN or infinite values; set the model\'s inherit = "" to fit '
        "without it"
    )
