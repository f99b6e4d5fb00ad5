"""A new item's first interactions move its column from the text prediction towards the
collaborative one (``shrink``), instead of emptying it (checker 227's new tracks)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np

from heirloom_plugins.recommend.model import HybridRecommender

GENRES = ["rock", "electronic", "jazz", "hiphop", "folk", "classical"]
SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ven", "sol", "dar", "bri", "nox", "zel", "qua", "fen", "oru", "pix", "lum"]
#: l2, text_weight and tower_l2 fixed: only ``shrink`` differs between the fits compared.
GRIDS = {"l2": [300.0], "text_weight": [3.0], "tower_l2": [10.0]}


def music(seed: int = 227) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """Seeded plays of genre fans (a quarter of each user's plays from the popular head), and
    new tracks of known artists: even ones nobody played, odd ones played by 1 fan. Returns
    the records, each user's genre and each new track's genre."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()

    artists = [(f"{word()} {word()}", GENRES[i % len(GENRES)]) for i in range(36)]
    tracks = [(f"t{i:03d}", *artists[i % len(artists)]) for i in range(300)]
    new = [(f"n{j:02d}", *artists[rng.randrange(len(artists))]) for j in range(24)]
    records: list[dict[str, Any]] = [
        {"type": "item", "item": item, "title": f"{artist} - {word()} {word()}", "year": 2020, "genres": [genre]}
        for item, artist, genre in tracks + new
    ]
    weight = [1.0 / (rank + 1) ** 0.9 + 0.02 for rank in rng.sample(range(len(tracks)), len(tracks))]
    taste = {f"u{u:03d}": GENRES[u % len(GENRES)] for u in range(240)}
    for user, genre in taste.items():
        mine = [i for i, track in enumerate(tracks) if track[2] == genre]
        for _ in range(rng.randint(15, 40)):
            pool = range(len(tracks)) if rng.random() < 0.25 else mine
            item = rng.choices(list(pool), [weight[i] for i in pool])[0]
            records.append({"type": "interaction", "user": user, "item": tracks[item][0]})
    for j, (item, _, genre) in enumerate(new):
        if j % 2:
            fan = rng.choice([user for user, liked in taste.items() if liked == genre])
            records.append({"type": "interaction", "user": fan, "item": item})
    return records, taste, {item: genre for item, _, genre in new}


def fans_top(model: HybridRecommender, taste: dict[str, str], genres: dict[str, str], plays: int, k: int) -> float:
    """Share of (fan, new track with ``plays`` training users) where the track is in the fan's top ``k``."""
    index, ids = model.catalogue.index, model.catalogue.ids
    had = Counter(ids[item] for _, item in model.histories.pairs())
    users = sorted(taste)
    tops = model.recommend([model.history_of({"user": user}) for user in users], [k] * len(users))
    hits = total = 0
    for user, top in zip(users, tops, strict=True):
        ranked = {item for item, _ in top}
        for item, genre in genres.items():
            if genre == taste[user] and had[item] == plays and index[item] not in model.history_of({"user": user}):
                total += 1
                hits += index[item] in ranked
    return hits / total


def split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train (items and 4/5 of the plays) and a test of old tracks' plays (seeded)."""
    items = [r for r in records if r["type"] == "item"]
    plays = [r for r in records if r["type"] == "interaction"]
    random.Random(1).shuffle(plays)
    test = [r for r in plays[: len(plays) // 5] if r["item"].startswith("t")]
    return items + [r for r in plays if r not in test], items + test


def test_a_new_tracks_first_play_no_longer_pushes_it_out_of_its_fans_lists():
    """Checker 227: new tracks nobody played were in 0.273 of genre fans' top 100 (text-predicted
    columns), with one play in 0.078 (EASE's near-empty column). With the blend chosen on the
    few-interactions replay, one play keeps them in view, and held-out nDCG does not fall."""
    records, taste, genres = music()
    train, test = split(records)
    before = HybridRecommender(data="x", **GRIDS, shrink=[0.0])  # the column of B alone, as before
    before.fit(train)
    after = HybridRecommender(data="x", **GRIDS)  # shrink searched on validation
    after.fit(train)
    assert after.fitted.choice.shrink > 0
    trials = after.fitted.training["trials"]["shrink"]
    assert [trial["shrink"] for trial in trials] == after.shrink
    assert after.fitted.choice.shrink == max(trials, key=lambda trial: trial["ndcg_at_10"])["shrink"]
    unplayed, played_once = (fans_top(before, taste, genres, plays, 30) for plays in (0, 1))
    assert unplayed > 0.5 and played_once < 0.05  # the drop the checker found
    blended = fans_top(after, taste, genres, 1, 30)
    assert blended > 0.3 and blended > 10 * played_once
    assert fans_top(after, taste, genres, 0, 30) >= unplayed  # nobody's plays: text alone, as before
    ndcg = [model.evaluate(test).metrics["ndcg_at_10"] for model in (before, after)]
    assert ndcg[1] >= ndcg[0]


def test_a_state_stored_before_the_blend_loads_with_no_blend():
    """A version stored before ``shrink`` existed has no such choice: it keeps serving as it did."""
    records, _, _ = music()
    model = HybridRecommender(data="x", **GRIDS, shrink=[3.0])
    model.fit(records)
    state = model.state()
    del state.metadata["choice"]["shrink"]
    loaded = HybridRecommender(data="x")
    loaded.load(state)
    assert loaded.fitted.choice.shrink == 0.0
    assert np.array_equal(loaded.fitted.hybrid.weights, model.fitted.hybrid.weights)


def test_a_warm_start_from_a_parent_stored_before_the_blend_searches_shrink_alone():
    """The checker's production retrains warm from the served version: a parent stored before
    ``shrink`` existed has no choice of it, and reusing its 0 would never blend."""
    records, _, _ = music()
    grids = {"l2": [300.0, 600.0], "text_weight": [3.0], "tower_l2": [10.0]}
    parent = HybridRecommender(data="x", **grids, shrink=[0.0])
    parent.fit(records)
    old = parent.state()
    del old.metadata["choice"]["shrink"]
    child = HybridRecommender(data="x", **grids)
    child.fit(records, parent=old)
    trials = child.fitted.training["trials"]
    assert trials["collaborative"] == [] and [trial["shrink"] for trial in trials["shrink"]] == child.shrink
    assert child.fitted.choice.l2 == parent.fitted.choice.l2 and child.fitted.choice.shrink > 0
    recorded = HybridRecommender(data="x", **grids)  # a parent that chose shrink: reused, nothing searched
    recorded.fit(records, parent=child.state())
    assert recorded.fitted.choice == child.fitted.choice and recorded.fitted.training["trials"] is None
