"""New items with a few plays: are they still shown to their fans? (checker 227's music data)

Seeded synthetic plays in the shape of checker 227's generator: 8 genres, 60 artists
(the artist in every title), 540 older tracks with Zipf popularity, 500 users in 6 taste
clusters (a quarter of each user's plays from the popular head), and 60 new tracks of known
artists: even ones nobody played, odd ones played by 1 or 2 fans of their genre. A seeded
fifth of the older tracks' plays is the test. Two fits on the same train: ``shrink = [0]``
(an item's column of ``B`` alone, as before the blend) and the default search (``shrink``
chosen on validation). For each, the share of (fan, new track) pairs with the track in the
fan's top 100, by the track's training plays, and nDCG@10 on the test plays.

    .venv/bin/python bench/recommend_few.py [--seed 227]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from typing import Any

from heirloom_plugins.recommend.model import HybridRecommender

GENRES = ["rock", "electronic", "jazz", "hiphop", "folk", "classical", "metal", "reggae"]
CLUSTERS = [["rock"], ["jazz", "classical"], ["hiphop"], ["folk", "rock"], ["metal"], ["reggae", "electronic"]]
SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ven", "sol", "dar", "bri", "nox", "zel", "qua", "fen", "oru", "pix", "lum"]


def plays(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[str]], dict[str, str]]:
    """Train records, test records, each user's genres and each new track's genre."""
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
    pairs = []
    for user, genres in taste.items():
        for _ in range(rng.randint(25, 75)):
            pool = range(540) if rng.random() < 0.25 else [i for i in range(540) if old[i][2] == rng.choice(genres)]
            pairs.append((user, old[rng.choices(list(pool), [weight[i] for i in pool])[0]][0]))
    rng.shuffle(pairs)
    test = set(pairs[: len(pairs) // 5])
    for j, (item, _, genre) in enumerate(new):
        fans = [user for user, genres in taste.items() if genre in genres]
        pairs += [(rng.choice(fans), item) for _ in range(rng.randint(1, 2) if j % 2 else 0)]
    interaction = [{"type": "interaction", "user": user, "item": item} for user, item in pairs]
    train = items + [r for r in interaction if (r["user"], r["item"]) not in test]
    return train, items + [r for r in interaction if (r["user"], r["item"]) in test], taste, {n[0]: n[2] for n in new}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=227, help="generator seed (default: 227)")
    args = parser.parse_args(argv)
    train, test, taste, genres = plays(args.seed)
    for label, grid in (("shrink = [0] (no blend)", {"shrink": [0.0]}), ("shrink searched", {})):
        model = HybridRecommender(data="x", **grid)
        model.fit(train)
        reach = ", ".join(f"{plays} plays {share:.3f}" for plays, share in fans_reach(model, taste, genres).items())
        ndcg = model.evaluate(test).metrics["ndcg_at_10"]
        print(f"{label}: {model.fitted.choice}; new tracks in fans' top 100: {reach}; test nDCG@10 {ndcg:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
