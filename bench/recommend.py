"""Recommendation benchmark: heirloom's ``hybrid-recommender`` against peers on MovieLens 100K.

The protocol is the Microsoft Recommenders one: per user, a seeded random 75% of their
ratings train and 25% test; every rating is relevant; each user's top 10 is ranked over
every item they did not rate in train. Every model sees the same split (the ``movielens``
source's), is tuned on the same validation carve of train (never on test) and is measured
by the same code (``heirloom_plugins.recommend.protocol``). ``--holdout latest`` tests
each user's most recent 25% instead (the source's ``holdout = "latest"``): what users did
next, not gaps in a history; tuning still carves validation at random from train, for every
model alike (the model's own carve). Peers:

- popularity: items by how many users rated them in train;
- ItemKNN: cosine item-item similarity, neighbourhood size tuned on validation;
- EASE (Steck 2019): ``l2`` tuned on validation over heirloom's own grid.

Cold start: a seeded 10% of the movies lose every training rating; models rank only those
movies for the users who rated them in test. Baselines: random, genre popularity (a
movie's score is the mean training popularity of the movies of its genres), personal
genre popularity (the same, weighted by the user's own genre shares), and the hybrid
without its text tower (text only through the Gram matrix). Then: how often the
neighbours ``similar_text`` finds for a cold movie share a genre with it, against chance;
a warm retrain (parent's hyper-parameters, new events) against a full one; and the served
``recs.recommend``: p50 latency at one request in flight and requests/s at 64 in flight,
batched against unbatched (``max_batch = 1``), next to the daemon's ``_health`` route.

Targets (exit 1 when missed): heirloom's mean nDCG@10 >= EASE's; cold-start nDCG@10 >=
2x genre popularity.

    .venv/bin/python bench/recommend.py [--seeds 42,43,44] [--holdout random|latest] [--skip-serving]

Needs the data under ``HEIRLOOM_DATA`` (numpy only; no scikit-learn needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from options import add_data_option, positive_float, positive_int, require_data, run_child, scratch
from spread import seeds_option

from heirloom_plugins.recommend import ease
from heirloom_plugins.recommend.data import Catalogue, Histories, catalogue_of, read_records
from heirloom_plugins.recommend.model import HybridRecommender
from heirloom_plugins.recommend.movielens import MovieLensSource
from heirloom_plugins.recommend.protocol import measure
from heirloom_plugins.recommend.records import seeded_share
from heirloom_plugins.recommend.split import HOLDOUTS
from heirloom_plugins.recommend.tower import ItemText
from heirloom_plugins.recommend.tuning import split_for_tuning

REPO = Path(__file__).resolve().parent.parent
KNN_SIZES = (25, 50, 100, 200, 0)  # 0: every neighbour
COLD_TARGET = 2.0
PUBLISHED = {"BPR (Cornac), published": 0.441997, "BiVAE, published": 0.475077}
COLUMNS = ("ndcg", "precision", "recall", "map", "coverage")


class Split:
    """One seed's split, in the plugin's own structures."""

    def __init__(self, source: MovieLensSource):
        self.source = source
        items, train_pairs, _ = read_records(source.records("train"))
        _, test_pairs, _ = read_records(r for r in source.records("test") if r["type"] == "interaction")
        self.catalogue: Catalogue = catalogue_of(items, train_pairs + test_pairs)
        index = self.catalogue.index
        self.train = Histories.build((user, index[item]) for user, item in train_pairs)
        self.test = [(user, index[item]) for user, item in test_pairs]
        self.cold = np.asarray([bool(r["cold"]) for r in items], dtype=bool)
        self.cooc = ease.cooccurrence(self.train, len(self.catalogue))


def popularity_weights(cooc: np.ndarray) -> np.ndarray:
    """Rows of item popularity: a history's score is its length times popularity."""
    return np.tile(np.diag(cooc), (len(cooc), 1))


def knn_weights(cooc: np.ndarray, size: int) -> np.ndarray:
    """Cosine similarity of item columns, keeping each item's ``size`` nearest (0: all)."""
    norms = np.sqrt(np.diag(cooc))
    norms[norms == 0] = 1.0
    similarity = cooc / norms[:, None] / norms[None, :]
    np.fill_diagonal(similarity, 0.0)
    if size and size < len(similarity):
        weakest = np.argpartition(-similarity, size, axis=0)[size:]
        np.put_along_axis(similarity, weakest, 0.0, axis=0)
    return similarity


def tuned_peer(split: Split, seed: int, grid: list, build: Callable[[np.ndarray, Any], np.ndarray]) -> tuple[Any, dict]:
    """The grid value with the best validation nDCG@10, then its test metrics (refit on train)."""
    carve = split_for_tuning(split.train, split.catalogue, 0.25, seed)
    validation_cooc = ease.cooccurrence(carve.fit, len(split.catalogue))
    best = max(grid, key=lambda value: measure(build(validation_cooc, value), carve.fit, carve.held)["ndcg"])
    return best, measure(build(split.cooc, best), split.train, split.test)


def run_seed(data: Path, seed: int, holdout: str) -> dict[str, Any]:
    """Every model's test metrics and fit time on the split of ``seed``, plus cold start."""
    split = Split(MovieLensSource(path=str(data / "movielens-100k"), seed=seed, holdout=holdout))
    rows: dict[str, dict[str, float]] = {}
    began = time.perf_counter()
    rows["popularity"] = measure(popularity_weights(split.cooc), split.train, split.test)
    rows["popularity"]["fit_s"] = time.perf_counter() - began
    for name, grid, build in (
        ("ItemKNN cosine", list(KNN_SIZES), knn_weights),
        ("EASE", HybridRecommender(data="x").l2, lambda cooc, l2: ease.item_weights(cooc, np.zeros(0), 0.0, l2)),
    ):
        began = time.perf_counter()
        chosen, metrics = tuned_peer(split, seed, grid, build)
        rows[f"{name} ({'k' if name.startswith('Item') else 'l2'}={chosen or 'all'})"] = {
            **metrics,
            "fit_s": time.perf_counter() - began,
        }
    model = HybridRecommender(data="movies", seed=seed)
    began = time.perf_counter()
    model.fit(split.source.records("train"))
    fit_s = time.perf_counter() - began
    report = model.evaluate(split.source.records("test")).metrics
    rows["heirloom hybrid"] = {
        **{name: report[f"{name}_at_10" if name != "coverage" else name] for name in COLUMNS},
        "fit_s": fit_s,
    }
    cold = cold_start(split, model, report["cold_ndcg_at_10"])
    return {"rows": rows, "cold": cold, "model": model, "split": split, "seed": seed}


def cold_start(split: Split, model: HybridRecommender, heirloom_ndcg: float) -> dict[str, float]:
    """Cold-start nDCG@10 of the baselines on the same cold movies, users and exclusions."""
    cold = split.cold
    without = Histories.build(((u, i) for u, i in split.train.pairs() if not cold[i]), split.train.users)
    cooc = ease.cooccurrence(without, len(split.catalogue))
    held = [(user, item) for user, item in split.test if cold[item]]
    genres = sorted({g for text in split.catalogue.texts for g in text.genres})
    member = np.asarray([[g in text.genres for g in genres] for text in split.catalogue.texts], dtype=np.float64)
    popularity = np.diag(cooc)
    per_genre = (member[~cold].T @ popularity[~cold]) / np.maximum(member[~cold].sum(0), 1)
    genre_popularity = (member @ per_genre) / np.maximum(member.sum(1), 1)
    rng = np.random.default_rng(0)
    choice = model.fitted.choice
    text_only_gram = ease.item_weights(cooc, model.fitted.features.gram(), choice.text_weight, choice.l2)

    def score(weights: np.ndarray) -> float:
        return measure(weights, split.train, held, candidates=cold)["ndcg"]

    return {
        "random": score(rng.random((len(cold), len(cold)))),
        "genre popularity": score(np.tile(genre_popularity, (len(cold), 1))),
        "personal genre popularity": score(member @ (member * per_genre).T),
        "hybrid without the text tower": score(text_only_gram),
        "heirloom hybrid": heirloom_ndcg,
    }


def genre_sharing(data: Path, model: HybridRecommender) -> tuple[float, float, int]:
    """Share of ``similar_text`` top-10 neighbours sharing a genre with a cold movie that the
    model never saw (trained with ``drop_cold``), and the same share for a random movie."""
    choice = model.fitted.choice
    served = HybridRecommender(data="x", **{name: [value] for name, value in attrs.asdict(choice).items()})
    path = str(data / "movielens-100k")
    served.fit(MovieLensSource(path=path, drop_cold=True).records("train"))
    catalogue = [set(text.genres) for text in served.catalogue.texts]
    shared, chance = [], []
    for record in MovieLensSource(path=path).records("test"):
        if record["type"] != "item" or not record["cold"] or not record["genres"]:
            continue
        genres = set(record["genres"])
        text = ItemText(record["title"], record["year"], tuple(record["genres"]))
        neighbours = [catalogue[item] for item, _ in served.similar_text(text, 10)]
        shared.append(np.mean([bool(genres & theirs) for theirs in neighbours]))
        chance.append(np.mean([bool(genres & theirs) for theirs in catalogue]))
    return float(np.mean(shared)), float(np.mean(chance)), len(shared)


def retrain_times(split: Split, model: HybridRecommender, seed: int) -> dict[str, float]:
    """Seconds to refit on train plus new events: warm (from ``model``'s state) and full."""
    test = split.source.records("test")
    new = [r for r in test if r["type"] == "interaction"]
    chosen = set(seeded_share((f"{r['user']}:{r['item']}" for r in new), 0.05, seed, "events"))
    events = [{**r, "kind": "click"} for r in new if f"{r['user']}:{r['item']}" in chosen]
    records = [*split.source.records("train"), *events]
    parent = model.state()
    times = {}
    for label, fit in (
        ("full (search + fit)", lambda m: m.fit(records)),
        ("warm (parent's choice)", lambda m: m.fit(records, parent=parent)),
    ):
        fresh = HybridRecommender(data="x", seed=seed)
        began = time.perf_counter()
        fit(fresh)
        times[label] = time.perf_counter() - began
    times["events"] = len(events)
    return times


def serving(data: Path, model: HybridRecommender, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """p50 latency (1 in flight) and req/s (64 in flight) of served recs.recommend."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve import ZmqLoad, measure_throughput, wait_ready

    tmp = scratch("heirloom-recommend-bench-")
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home"), "HEIRLOOM_DATA": str(data)}
    choice = model.fitted.choice
    fixed = [f"--set=models.recs.{name}=[{value}]" for name, value in attrs.asdict(choice).items()]
    command = [sys.executable, "-m", "heirloom"]
    run_child([*command, "train", "recommend", *fixed], env=env, cwd=REPO)
    bodies = [{"user": user, "k": 10} for user in model.histories.users]
    variants = {"batched": [], "unbatched": ["--set", "apis.recs.max_batch=1"]}
    daemons, loads = [], {}
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for label, extra in variants.items():
            address = f"ipc://{tmp}/{label}.sock"
            serve = [*command, "serve", "recommend", "--bind", address, "--log-level", "WARNING", *fixed, *extra]
            daemons.append(subprocess.Popen(serve, env=env, cwd=REPO))
            wait_ready(address, processes=daemons[-1:])
            loads[label] = ZmqLoad(address, True, "recs.recommend", bodies)
            results[label] = {"p50_ms": [], "rps_64": []}
        loads["_health (floor)"] = ZmqLoad(f"ipc://{tmp}/batched.sock", True, "_health", [None])
        results["_health (floor)"] = {"p50_ms": [], "rps_64": []}
        for _ in range(rounds):
            for label, load in loads.items():
                load.latencies(100)
                samples = sorted(load.latencies(1000))
                results[label]["p50_ms"].append(samples[len(samples) // 2] * 1e3)
                results[label]["rps_64"].append(measure_throughput(load, 64, seconds))
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(30)
    return {label: {key: statistics.median(v) for key, v in row.items()} for label, row in results.items()}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"


def print_main(runs: list[dict[str, Any]], published: bool) -> dict[str, float]:
    """The table of test metrics (mean ± std over seeds), with the published rows when the
    split is theirs (``published``); returns each model's mean nDCG@10."""
    names = [list(run["rows"]) for run in runs]
    width = 14 if len(runs) == 1 else 16
    header = f"{'model':<44}" + "".join(f"{c + '@10' if c != 'coverage' else c:>{width}}" for c in COLUMNS)
    print(header + f"{'fit s':>8}", "-" * (len(header) + 8), sep="\n")
    means = {}
    for position, name in enumerate(names[0]):
        rows = [run["rows"][run_names[position]] for run, run_names in zip(runs, names, strict=True)]
        label = name if len(runs) == 1 else name.split(" (")[0]
        cells = "".join(f"{mean_std([row[c] for row in rows]):>{width}}" for c in COLUMNS)
        print(f"{label:<44}{cells}{statistics.mean(row['fit_s'] for row in rows):>8.1f}")
        means[label.split(" (")[0]] = statistics.mean(row["ndcg"] for row in rows)
    for name, ndcg in PUBLISHED.items() if published else ():
        print(f"{name:<44}{ndcg:>{width}.4f}   (Microsoft Recommenders table: same protocol, another split)")
    for run in runs:
        print(f"heirloom's choice on validation, seed {run['seed']}: {run['model'].fitted.choice}")
    return means


def print_cold(runs: list[dict[str, Any]]) -> list[str]:
    """The cold-start table; returns the missed target, if any."""
    print("\ncold start: 10% of the movies without any training rating, ranked among themselves (nDCG@10)")
    for name in runs[0]["cold"]:
        print(f"  {name:<32}{mean_std([run['cold'][name] for run in runs]):>16}")
    ours, genre, personal = (
        statistics.mean(run["cold"][name] for run in runs)
        for name in ("heirloom hybrid", "genre popularity", "personal genre popularity")
    )
    print(f"  heirloom: {ours / genre:.1f}x genre popularity (target >= {COLD_TARGET:.0f}x)")
    print(f"            {ours / personal:.2f}x personal genre popularity")
    if ours < COLD_TARGET * genre:
        return [f"cold start {ours:.4f} < {COLD_TARGET}x genre popularity {genre:.4f}"]
    return []


def print_serving(served: dict[str, dict[str, float]], rounds: int) -> None:
    print(f"\nserved recs.recommend {{'user', 'k': 10}}, medians of {rounds} interleaved rounds")
    print(f"  {'':<16}{'p50 ms (1 in flight)':>22}{'req/s (64 in flight)':>22}")
    for label, row in served.items():
        print(f"  {label:<16}{row['p50_ms']:>22.2f}{row['rps_64']:>22.0f}")
    ratio = served["batched"]["rps_64"] / served["unbatched"]["rps_64"]
    print(f"  batching: {ratio:.1f}x the requests/s of unbatched at 64 in flight")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=seeds_option, default=[42, 43, 44], help="split seeds, comma-separated (default: 42,43,44)"
    )
    add_data_option(parser)
    parser.add_argument(
        "--holdout",
        choices=HOLDOUTS,
        default="random",
        help="test: a seeded random 25%% of each user's ratings (default), or their latest 25%%",
    )
    parser.add_argument("--skip-serving", action="store_true", help="no daemon measurements")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="seconds per throughput measurement")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved serving rounds (medians reported)")
    args = parser.parse_args(argv)
    require_data(parser, args.data, *(f"movielens-100k/{name}" for name in ("u.data", "u.item", "u.genre")))
    seeds = args.seeds
    runs = []
    for seed in seeds:
        print(f"seed {seed}: fitting and tuning every model...", file=sys.stderr, flush=True)
        runs.append(run_seed(args.data, seed, args.holdout))
    spread = " (mean±std)" if len(seeds) > 1 else ""
    protocol = "Microsoft Recommenders protocol" if args.holdout == "random" else "each user's latest 25% as test"
    print(f"\nMovieLens 100K, {protocol}, split seeds {seeds}{spread}")
    means = print_main(runs, published=args.holdout == "random")
    missed = []
    if means["heirloom hybrid"] < means["EASE"]:
        missed.append(f"nDCG@10 {means['heirloom hybrid']:.4f} < EASE {means['EASE']:.4f}")
    ndcg = [{name.split(" (")[0]: row["ndcg"] for name, row in run["rows"].items()} for run in runs]
    wins = sum(row["heirloom hybrid"] >= row["EASE"] for row in ndcg)
    print(f"\nheirloom >= EASE on {wins} of {len(runs)} splits")
    for run, row in zip(runs, ndcg, strict=True):
        print(f"  seed {run['seed']}: nDCG@10 heirloom {row['heirloom hybrid']:.4f}, EASE {row['EASE']:.4f}")
    missed += print_cold(runs)

    first = runs[0]
    rate, chance, movies = genre_sharing(args.data, first["model"])
    print(f"\nsimilar_text for {movies} cold movies the model never saw: {rate:.1%} of the top-10 neighbours share a")
    print(f"genre with the movie; a random catalogue movie does {chance:.1%} of the time")

    times = retrain_times(first["split"], first["model"], seeds[0])
    full, warm = times["full (search + fit)"], times["warm (parent's choice)"]
    print(f"\nretraining on train + {times['events']:.0f} new events (seed {seeds[0]}):")
    print(f"  full (validation search + fit)   {full:6.1f} s")
    print(f"  warm (parent's hyper-parameters) {warm:6.1f} s  ({full / warm:.1f}x faster)")

    if not args.skip_serving:
        print_serving(serving(args.data, first["model"], args.seconds, args.rounds), args.rounds)
    print()
    print("targets missed: " + "; ".join(missed) if missed else "targets met: nDCG@10 >= EASE, cold start >= 2x genre")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
