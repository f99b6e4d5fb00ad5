"""Checker 227's music plays: new items with a few plays, and taste that drifts.

Seeded synthetic plays in the shape of checker 227's generator: 8 genres, 60 artists
(the artist in every title), 540 older tracks with Zipf popularity, 500 users in 6 taste
clusters over a year (a quarter of each user's plays from the popular head; cluster 0 moves
from rock to electronic for the last two months), and 60 new tracks of known artists, released
in the last month: even ones nobody played, odd ones played by 1 or 2 fans of their genre.

``few`` (the default): a seeded fifth of the older tracks' plays is the test. Two fits on the
same train: ``shrink = [0]`` (an item's column of ``B`` alone, as before the blend) and the
default search. For each, the share of (fan, new track) pairs with the track in the fan's top
100, by the track's training plays, and nDCG@10 on the test plays.

``drift``: each user's latest tenth of their plays is the test (what they did next). Fits with
``half_life_days`` off, 60 and 30: the rock and electronic shares of cluster 0's top 10, and
nDCG@10 on the test, for cluster 0 and for everyone.

    .venv/bin/python bench/recommend_music.py [few|drift] [--seed 227]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from typing import Any

from heirloom_plugins.recommend.model import HybridRecommender
from heirloom_plugins.recommend.records import per_user_holdout

GENRES = ["rock", "electronic", "jazz", "hiphop", "folk", "classical", "metal", "reggae"]
CLUSTERS = [["rock"], ["jazz", "classical"], ["hiphop"], ["folk", "rock"], ["metal"], ["reggae", "electronic"]]
#: The day (of 365) cluster 0 moves from rock to electronic.
DRIFT = 305
SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ven", "sol", "dar", "bri", "nox", "zel", "qua", "fen", "oru", "pix", "lum"]


def plays(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[str]], dict[str, str]]:
    """Item records, timed interaction records, each user's genres now and each new track's genre."""
    rng = random.Random(seed)

    def word(n: int = 2) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()

    artists = [(f"{word()} {word()}", GENRES[i % len(GENRES)]) for i in range(60)]
    old = [(f"t{i:04d}", *artists[i % 60]) for i in range(540)]
    new = [(f"n{j:03d}", *artists[rng.randrange(60)]) for j in range(60)]
    items = [
        {"type": "item", "item": item, "title": f"{artist} - {word()} {word(3)}", "year": 2026, "genres": [genre]}
        for item, artist, genre in old + new
    ]
    weight = [1.0 / (rank + 1) ** 0.9 + 0.02 for rank in rng.sample(range(540), 540)]
    taste = {f"u{u:03d}": CLUSTERS[u % len(CLUSTERS)] for u in range(500)}
    played = []
    for user, genres in taste.items():
        for _ in range(rng.randint(25, 75)):
            day = rng.uniform(0, 365)
            now = ["electronic"] if genres == ["rock"] and day >= DRIFT else genres
            pool = range(540) if rng.random() < 0.25 else [i for i in range(540) if old[i][2] == rng.choice(now)]
            played.append((user, old[rng.choices(list(pool), [weight[i] for i in pool])[0]][0], day))
    for j, (item, _, genre) in enumerate(new):
        fans = [user for user, genres in taste.items() if genre in (["electronic"] if genres == ["rock"] else genres)]
        played += [(rng.choice(fans), item, rng.uniform(335, 365)) for _ in range(rng.randint(1, 2) if j % 2 else 0)]
    records = [{"type": "interaction", "user": u, "item": i, "time": day * 86400.0} for u, i, day in played]
    now = {user: ["electronic"] if genres == ["rock"] else genres for user, genres in taste.items()}
    return items, records, now, {item: genre for item, _, genre in new}


def fans_reach(model: HybridRecommender, taste: dict[str, list[str]], genres: dict[str, str]) -> dict[int, float]:
    """By training users (0, 1, 2) of a new track: the share of its fans with it in their top 100."""
    index, ids = model.catalogue.index, model.catalogue.ids
    had = Counter(ids[item] for _, item in model.histories.pairs())
    users = sorted(taste)
    histories = [model.history_of({"user": user}) for user in users]
    found: dict[int, list[bool]] = {}
    for user, history, top in zip(users, histories, model.recommend(histories, [100] * len(users)), strict=True):
        ranked = {item for item, _ in top}
        for item, genre in genres.items():
            if genre in taste[user] and index[item] not in history:
                found.setdefault(had[item], []).append(index[item] in ranked)
    return {count: sum(hits) / len(hits) for count, hits in sorted(found.items())}


def few(seed: int) -> None:
    """New tracks' reach by training plays, without and with the blend."""
    items, records, taste, genres = plays(seed)
    older = [r for r in records if r["item"].startswith("t")]
    test = {(r["user"], r["item"]) for r in random.Random(seed).sample(older, len(older) // 5)}
    train = items + [r for r in records if (r["user"], r["item"]) not in test]
    for label, grid in (("shrink = [0] (no blend)", {"shrink": [0.0]}), ("shrink searched", {})):
        model = HybridRecommender(data="x", **grid)
        model.fit(train)
        reach = ", ".join(f"{plays} plays {share:.3f}" for plays, share in fans_reach(model, taste, genres).items())
        ndcg = model.evaluate(items + [r for r in records if (r["user"], r["item"]) in test]).metrics["ndcg_at_10"]
        print(f"{label}: {model.fitted.choice}; new tracks in fans' top 100: {reach}; test nDCG@10 {ndcg:.4f}")


def drift(seed: int) -> None:
    """The drifting cluster's top 10 and the latest plays' nDCG@10, by ``half_life_days``."""
    items, records, taste, _ = plays(seed)
    latest: dict[tuple[str, str], float] = {}
    for r in records:
        latest[r["user"], r["item"]] = max(latest.get((r["user"], r["item"]), 0.0), r["time"])
    test = per_user_holdout(latest, 0.1, seed, "test", latest)
    train = items + [r for r in records if (r["user"], r["item"]) not in test]
    held = items + [r for r in records if (r["user"], r["item"]) in test]
    drifting = sorted(user for user, genres in taste.items() if genres == ["electronic"])
    for half_life in (None, 60.0, 30.0):
        model = HybridRecommender(data="x", half_life_days=half_life)
        model.fit(train)
        top = [hit["item"] for hits in model.predict([{"user": user} for user in drifting]) for hit in hits]
        genre_of = {item: model.catalogue.describe(model.catalogue.index[item])["genres"] for item in top}
        shares = {g: sum(g in genre_of[item] for item in top) / len(top) for g in ("rock", "electronic")}
        mine = [r for r in held if r["type"] == "item" or r["user"] in drifting]
        ndcg = model.evaluate(held).metrics["ndcg_at_10"], model.evaluate(mine).metrics["ndcg_at_10"]
        print(
            f"half_life_days {half_life}: {model.fitted.choice}; cluster 0's top 10: rock {shares['rock']:.2f}, "
            f"electronic {shares['electronic']:.2f}; latest plays' nDCG@10 {ndcg[0]:.4f} (cluster 0: {ndcg[1]:.4f})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("few", "drift"), default="few", help="what to measure")
    parser.add_argument("--seed", type=int, default=227, help="generator seed (default: 227)")
    args = parser.parse_args(argv)
    (few if args.part == "few" else drift)(args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
