"""A source's validation pairs are items the users have: the model never learns them, and
neither the test ranking nor a reply holds them (they competed at test as misses: MovieLens
nDCG@10 0.4770 with no validation split, 0.4079 with ``validation_fraction = 0.1``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import heirloom
from heirloom.wire.client import NotFound
from heirloom_plugins.recommend.model import HybridRecommender
from heirloom_plugins.recommend.movielens import MovieLensSource
from heirloom_plugins.recommend.protocol import scores
from tests.daemons import Daemon
from tests.helpers import run_heirloom, write

FIXED = {"l2": [500.0], "text_weight": [10.0], "tower_l2": [30.0], "shrink": [0.0]}
#: The recommend profile with a validation split, hyper-parameters fixed (no search).
PROFILE = """
extends = ["recommend"]
project = "recommend"

[sources.movies]
validation_fraction = 0.1

[models.recs]
l2 = [500.0]
text_weight = [10.0]
tower_l2 = [30.0]
shrink = [0.0]
"""
#: A ratings-csv whose file states each rating's split (no items file: the catalogue is the items it names).
SPLIT_SOURCE = """[sources.movies]
use = "ratings-csv"
ratings = "data/ratings.csv"
split_column = "part"
"""
#: A shop's ratings-csv with a seeded validation split, its versions served by alias (no items file).
SHOP_PROFILE = """
extends = ["recommend"]
project = "shop"

[sources.movies]
use = "ratings-csv"
ratings = "data/ratings.csv"
validation_fraction = 0.25

[models.recs]
serve = "production"
l2 = [500.0]
text_weight = [10.0]
tower_l2 = [30.0]
shrink = [0.0]
"""


@pytest.fixture(scope="module")
def carved(data_dir) -> tuple[MovieLensSource, HybridRecommender]:
    """MovieLens with a 10% validation split, and the model fitted on train, keeping validation."""
    source = MovieLensSource(path=str(data_dir / "movielens-100k"), validation_fraction=0.1)
    model = HybridRecommender(data="movies", **FIXED)
    model.fit(source.records("train"), validation=source.records("validation"))
    return source, model


def pairs_of(source: MovieLensSource, split: str) -> dict[str, set[str]]:
    """Each user's items in ``split``."""
    found: dict[str, set[str]] = {}
    for record in source.records(split):
        if record["type"] == "interaction":
            found.setdefault(record["user"], set()).add(record["item"])
    return found


def records(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"type": "interaction", "user": user, "item": item} for user, item in pairs]


def pushed_out(model: HybridRecommender, source: MovieLensSource, popularity: bool) -> list[tuple[str, str]]:
    """Test pairs out of the user's top 10 when their validation items are ranked, in it when they
    are not, whichever way ties and rounding fall (of the model's ranking, or of popularity's)."""
    fitted, ids = model.fitted, model.catalogue.ids
    validation, test = pairs_of(source, "validation"), pairs_of(source, "test")
    users = sorted(test)
    histories = [fitted.histories.of(fitted.histories.index[user]) for user in users]
    ranked = scores(None if popularity else fitted.hybrid.weights, histories, fitted.popularity)
    found = []
    for user, row in zip(users, ranked, strict=True):
        fair = row.copy()
        fair[[model.catalogue.index[item] for item in validation.get(user, ())]] = -np.inf
        for item in test[user]:
            at = row[model.catalogue.index[item]]
            if (row > at).sum() >= 11 and (fair >= at).sum() <= 9:
                found.append((user, ids[model.catalogue.index[item]]))
    return found


def without_validation(state: heirloom.State) -> heirloom.State:
    """``state`` as a version stored before validation pairs were kept."""
    tensors = {name: t for name, t in state.tensors.items() if not name.startswith("validation_")}
    return heirloom.State(tensors, {k: v for k, v in state.metadata.items() if k != "validation_users"})


def test_the_test_ranking_leaves_out_each_users_validation_items_and_validation_scores_as_before(carved):
    source, model = carved
    for popularity in (False, True):
        pushed = pushed_out(model, source, popularity)
        assert len(pushed) >= 20, pushed  # 47 of the model's, on users with many validation items
        metrics = model.evaluate(records(pushed)).metrics
        if popularity:  # the baseline reports nDCG alone: one found of one wanted per user scores above 0
            assert metrics["popularity_ndcg_at_10"] > 0
        else:  # each was ranked below the user's validation items, which the model never learnt: found now
            assert metrics["recall_at_10"] == 1.0
    old = HybridRecommender(data="movies")
    old.load(without_validation(model.state()))
    new_test, old_test = (m.evaluate(source.records("test")).metrics for m in (model, old))
    assert new_test["ndcg_at_10"] > old_test["ndcg_at_10"]
    assert new_test["popularity_ndcg_at_10"] > old_test["popularity_ndcg_at_10"]
    # validation is scored as before: the pairs being scored are never left out
    assert model.evaluate(source.records("validation")).metrics == old.evaluate(source.records("validation")).metrics
    # a test pair the version trained on still counts as left out; a validation pair scored is none
    user, items = next(iter(pairs_of(source, "train").items()))
    mixed = [*pushed_out(model, source, False)[:3], (user, sorted(items)[0])]
    assert model.evaluate(records(mixed)).metrics[heirloom.LEFT_OUT] == 1


def test_a_held_out_pair_the_version_keeps_from_validation_is_left_out_of_test_as_a_trained_one_is(carved):
    """A test split repeating validation pairs (a cut-off date's split_column) counted them as findable
    though no reply ever shows them (checker 261: nDCG@10 0.4978, the replies 0.4628): left out now,
    counted in left_out, and the test scores are those of the test pairs alone."""
    source, model = carved
    validation = pairs_of(source, "validation")
    repeats = [(user, sorted(validation[user])[0]) for user in sorted(validation)[:300]]
    test = list(source.records("test"))
    alone, both = model.evaluate(test).metrics, model.evaluate([*test, *records(repeats)]).metrics
    counts = (heirloom.LEFT_OUT, heirloom.LEFT_OUT_OF)
    assert [both[key] - alone[key] for key in counts] == [len(repeats), len(repeats)]
    assert {k: v for k, v in both.items() if k not in counts} == {k: v for k, v in alone.items() if k not in counts}


def test_a_state_stored_before_validation_pairs_were_kept_loads_and_serves_as_it_did(carved):
    source, model = carved
    state = model.state()
    assert {"validation_indptr", "validation_items"} <= set(state.tensors)
    loaded = HybridRecommender(data="movies")
    loaded.load(state)
    assert sorted(loaded.fitted.validation.pairs()) == sorted(model.fitted.validation.pairs())
    old = HybridRecommender(data="movies")
    old.load(without_validation(state))
    assert old.fitted.validation is None
    validation = pairs_of(source, "validation")
    users = sorted(validation)[:100]
    then, now = ([{h["item"] for h in hits} for hits in m.predict([{"user": u} for u in users])] for m in (old, model))
    assert any(items & validation[user] for user, items in zip(users, then, strict=True))  # as it served before
    assert not any(items & validation[user] for user, items in zip(users, now, strict=True))
    half = dict(state.tensors)
    del half["validation_items"]
    with pytest.raises(heirloom.HeirloomError, match="the state lacks tensors: validation_items"):
        HybridRecommender(data="movies").load(heirloom.State(half, state.metadata))
    # a damaged tower size sized an array at the first text read (checker v8, as h340 F2 for the text model)
    for buckets, said in ((3 * 10**8, "tower settings are damaged"), (1 << 10, "inconsistent shapes: idf")):
        damaged = {**state.metadata, "tower": {**state.metadata["tower"], "buckets": buckets}}
        with pytest.raises(heirloom.HeirloomError, match=said):
            HybridRecommender(data="movies").load(heirloom.State(state.tensors, damaged))


def test_the_first_retrain_after_the_upgrade_refits_a_version_stored_without_validation_pairs(tmp_path, data_dir):
    """A version stored before the validation pairs were kept (state format 1) served on after the
    upgrade: the shipped profile's unchanged retrain (``inherit = "served"``) said "not refitted"
    and kept recommending users' validation items (checker 261). It is refitted once, keeping them."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "carved.toml", PROFILE)
    assert run_heirloom("train", str(profile), env=env, timeout=300).returncode == 0
    store = heirloom.ArtifactStore(tmp_path / "home" / "store")
    first = store.resolve("recommend/recs@1")
    kept = {"profile_digest": first.profile_digest, "data_fingerprints": first.data_fingerprints}
    old = without_validation(store.load(first))  # as the release before stored it, in format 1
    store.put("recommend", "recs", old, model_type="hybrid-recommender", metrics=first.metrics, **kept)
    upgraded = run_heirloom("train", str(profile), env=env, timeout=300)
    said = " ".join(upgraded.stderr.split())
    assert "recommend/recs@2, but stored in state format 1, and hybrid-recommender writes 2: refitted" in said, said
    assert "stored recommend/recs@3" in upgraded.stdout and "(parent recommend/recs@2)" in upgraded.stdout
    assert {"validation_indptr", "validation_items"} <= set(store.load("recommend/recs@3").tensors)
    assert store.metadata("recommend/recs@3")["heirloom_state_format"] == 2


def test_a_user_only_validation_names_is_known_and_never_gets_those_items(carved):
    """A user the training data does not name (their ratings were of items the catalogue lacks, say)
    but the validation split does: answered from popularity, less their validation items."""
    source, _ = carved
    train = [r for r in source.records("train") if r["type"] == "item" or int(r["user"]) <= 30]
    counts: dict[str, int] = {}
    for record in train:
        if record["type"] == "interaction":
            counts[record["item"]] = counts.get(record["item"], 0) + 1
    ranked = sorted(counts, key=lambda item: (-counts[item], item))
    cut = next(at for at in range(2, len(ranked)) if counts[ranked[at]] > counts[ranked[at + 1]])
    mine, wanted = ranked[:cut], ranked[cut]  # their items are the most popular; the next, strictly, is tested
    model = HybridRecommender(data="movies", **FIXED)
    model.fit(train, validation=records([("new", item) for item in mine]))
    again = HybridRecommender(data="movies")
    again.load(model.state())
    hits = again.predict([{"user": "new", "k": 50}])[0]
    popularity = {item: counts.get(item, 0) for item in again.catalogue.ids}
    assert len(hits) == 50 and not {hit["item"] for hit in hits} & set(mine)
    assert min(popularity[hit["item"]] for hit in hits) == counts[ranked[cut + 49]]  # the most popular, less theirs
    metrics = again.evaluate(records([("new", wanted)])).metrics
    assert metrics["ndcg_at_10"] == metrics["popularity_ndcg_at_10"] == 1.0
    with pytest.raises(heirloom.HeirloomError, match="unknown user 'nobody'"):
        again.predict([{"user": "nobody"}])


def test_the_daemon_never_recommends_a_known_users_validation_items_nor_ranks_from_them(tmp_path, data_dir):
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "carved.toml", PROFILE)
    trained = run_heirloom("train", str(profile), env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    source = MovieLensSource(path=str(data_dir / "movielens-100k"), validation_fraction=0.1)
    train, validation = pairs_of(source, "train"), pairs_of(source, "validation")
    users = sorted(validation, key=lambda user: -len(validation[user]))[:40]  # the most validation items
    daemon = Daemon(tmp_path, profile=PROFILE, env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            for user in users:
                known = client.call("recs.recommend", {"user": user, "k": 50})["items"]
                assert not {hit["item"] for hit in known} & (validation[user] | train[user])
                # ranked from the train items alone, as the weights learnt them: what the items' history says
                told = {"history": sorted(train[user]), "exclude": sorted(validation[user]), "k": 50}
                assert client.call("recs.recommend", told)["items"] == known
    finally:
        daemon.kill()


def test_history_answers_a_user_only_validation_names_with_no_items_as_recommend_knows_them(tmp_path):
    """``recs.recommend`` knew a user whom only the validation split names, ``recs.history`` answered
    NOT_FOUND (checker 261): it answers what the served version learnt of them, nothing."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    train = "".join(f"u{user},i{(user + j) % 8},4,train\n" for user in range(8) for j in range(4))
    write(tmp_path / "data" / "ratings.csv", f"user,item,rating,part\n{train}vonly,i0,5,validation\nvonly,i1,3,test\n")
    text = PROFILE.replace("[sources.movies]\nvalidation_fraction = 0.1", SPLIT_SOURCE)
    assert run_heirloom("train", str(write(tmp_path / "shop.toml", text)), env=env, timeout=300).returncode == 0
    daemon = Daemon(tmp_path, profile=text, env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            assert client.call("recs.recommend", {"user": "vonly", "k": 3})["items"]
            nothing = {"items": [], "count": 0, "version": "recommend/recs@1"}
            assert client.call("recs.history", {"user": "vonly"}) == nothing
            assert client.call("recs.history", {"user": "u1"})["count"] == 4
            with pytest.raises(NotFound, match="user 'nobody' is unknown to recommend/recs@1"):
                client.call("recs.history", {"user": "nobody"})
    finally:
        daemon.kill()


def test_rescoring_after_a_new_user_scores_the_holders_own_validation_pairs(tmp_path):
    """One new user's ratings changed today's validation split by two pairs, and the holder's score left
    out every pair it kept from validation (never trained on) as "records it trained on": the gate
    refused every rescore after any data change, and ``eval --split validation`` scored the one new
    user (checker 270). Its kept pairs are scored now; only the pairs it trained on are left out."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    rows = "".join(f"u{user},i{(3 * user + j) % 12},{1 + j % 5}\n" for user in range(30) for j in range(8))
    ratings = write(tmp_path / "data" / "ratings.csv", f"user,item,rating\n{rows}")
    profile = str(write(tmp_path / "shop.toml", SHOP_PROFILE))
    assert run_heirloom("train", profile, env=env).returncode == 0
    assert run_heirloom("models", "promote", "shop/recs@1", "production", env=env).returncode == 0
    with ratings.open("a") as appended:
        appended.write("".join(f"newcomer,i{j},5\n" for j in range(8)))
    assert run_heirloom("train", profile, env=env).returncode == 0
    scored = run_heirloom("eval", profile, "--split", "validation", env=env)
    ranked = "ranking all items each user has not interacted with, top 10, 31 users with held-out items"
    assert ranked in scored.stdout, scored
    assert "left out" not in scored.stdout + scored.stderr
    holder = json.loads(run_heirloom("eval", profile, "--split", "validation", "--json", env=env).stdout)
    assert (holder["models"]["recs"]["version"], holder["models"]["recs"]["left_out"]) == ("shop/recs@1", 0)
    gate = ("--if-better", "ndcg_at_10", "--rescore", profile)
    rescored = run_heirloom("models", "promote", "shop/recs@2", "production", *gate, env=env)
    said = " ".join((rescored.stdout + rescored.stderr).split())
    assert "metrics are not comparable" not in said, said  # both scored on today's 62 validation pairs: compared
    assert rescored.returncode == 3 and "shop/recs@2 does not beat shop/recs@1 on validation ndcg_at_10" in said, said
