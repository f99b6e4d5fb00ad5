"""``half_life_days``: a user's recent interactions speak louder than their old ones
(checker 227: a cluster that moved from rock to electronic in its last two months still got
0.92 rock and 0.00 electronic, and nothing said that old and new plays weigh the same)."""

from __future__ import annotations

import json
import random
import re

import pytest

import heirloom
from heirloom_plugins.recommend.events import EventsSource
from heirloom_plugins.recommend.model import HybridRecommender, _report_text
from tests.daemons import Daemon
from tests.helpers import run_heirloom, write

GENRES = ["rock", "electronic", "jazz", "folk"]
#: Each user's genres before and (cluster 0) after the move, 60 days before the data's end.
CLUSTERS = [("rock", "electronic"), ("jazz", "jazz"), ("folk", "folk"), ("rock", "rock")]
DAY = 86400
END = 1_780_000_000
FIXED = {"l2": [100.0], "text_weight": [0.0], "tower_l2": [10.0], "shrink": [0.0]}


def items_csv() -> str:
    return "item,title,genres\n" + "".join(
        f"{genre[:3]}{n},{genre.title()} track {n},{genre}\n" for genre in GENRES for n in range(40)
    )


def plays_csv(seed: int = 227) -> str:
    """A year of plays of 80 users; cluster 0 (u0, u4, ...) plays electronic for the last 60 days."""
    rng = random.Random(seed)
    rows = ["user,item,time"]
    for user in range(80):
        before, after = CLUSTERS[user % len(CLUSTERS)]
        for _ in range(rng.randint(20, 30)):
            age = rng.uniform(0, 365)
            genre = after if age < 60 else before
            rows.append(f"u{user},{genre[:3]}{rng.randrange(40)},{END - int(age * DAY)}")
    return "\n".join(rows) + "\n"


def records() -> list[dict]:
    items = [line.split(",") for line in items_csv().splitlines()[1:]]
    plays = [line.split(",") for line in plays_csv().splitlines()[1:]]
    return [{"type": "item", "item": i, "title": t, "year": None, "genres": [g]} for i, t, g in items] + [
        {"type": "interaction", "user": u, "item": i, "time": float(t)} for u, i, t in plays
    ]


def shares(items: list[str]) -> dict[str, float]:
    return {genre: sum(item.startswith(genre[:3]) for item in items) / len(items) for genre in ("rock", "electronic")}


def drifting_top_10(model: HybridRecommender) -> dict[str, float]:
    users = [f"u{user}" for user in range(0, 80, len(CLUSTERS))]
    return shares([hit["item"] for hits in model.predict([{"user": user} for user in users]) for hit in hits])


def test_with_a_half_life_a_drifting_clusters_recent_genre_leads_its_lists():
    data = records()
    plain = HybridRecommender(data="x", **FIXED)
    plain.fit(data)
    recent = HybridRecommender(data="x", half_life_days=30.0, **FIXED)
    recent.fit(data)
    before, after = drifting_top_10(plain), drifting_top_10(recent)
    assert before["rock"] > 0.6 and before["electronic"] < 0.3  # old and new plays weigh the same
    assert after["electronic"] > 0.6 and after["rock"] < 0.4
    stored = HybridRecommender(data="x", half_life_days=30.0, **FIXED)
    stored.load(recent.state())  # the weights travel with the version: served as trained
    assert drifting_top_10(stored) == after
    assert plain.fitted.histories.weights is None and "history_weights" not in plain.state().tensors


def test_a_half_life_on_interactions_without_times_is_an_error_naming_the_setting():
    data = [{**r, "time": None} if r["type"] == "interaction" else r for r in records()]
    with pytest.raises(heirloom.HeirloomError, match=r"half_life_days weighs interactions by their time, but \d+ of"):
        HybridRecommender(data="x", half_life_days=30.0, **FIXED).fit(data)


def test_an_untimed_events_log_line_under_a_half_life_is_named_by_file_and_line_not_time_column(tmp_path):
    """One restored log line with ``"time": null`` stopped every retrain with advice to set ``time_column`` (set
    and complete), naming neither the log nor its line (checker 283); the log's null time is valid without one."""
    path = tmp_path / "recs.jsonl"
    event = {"user": "u1", "item": "i1", "kind": "interaction", "value": 1.0, "time": END - DAY}
    lines = [event, {**event, "item": "i2"}, {**event, "item": "i3", "time": None}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    source = EventsSource(api="recs", path=str(path))
    source.log_path = path
    timed = [r for r in records() if r["type"] == "interaction"][:50]
    with pytest.raises(heirloom.HeirloomError) as raised:
        HybridRecommender(data="x", half_life_days=30.0, **FIXED).fit([*timed, *source.records()])
    said = str(raised.value)
    assert f"1 of 53 have none (first: user 'u1', item 'i3', {path}:3); give those events log lines a time" in said
    assert "time_column" not in said, said
    untimed = {**timed[0], "time": None}  # a ratings file's blank time too: both are said
    with pytest.raises(heirloom.HeirloomError, match=rf"time_column\) and every events log line one \(first: {path}:3"):
        HybridRecommender(data="x", half_life_days=30.0, **FIXED).fit([untimed, *timed[1:], *source.records()])


PROFILE = """
extends = ["recommend"]
project = "radio"

[sources.movies]
use = "ratings-csv"
ratings = "data/plays.csv"
items = "data/items.csv"
value_column = ""

[models.recs]
half_life_days = 30.0
l2 = [100.0]
text_weight = [0.0]
tower_l2 = [10.0]
shrink = [0.0]
"""


def test_a_served_version_with_a_half_life_answers_a_drifting_listener_from_their_recent_plays(tmp_path):
    """Through the daemon: the api weighs a known user's learnt items as the version learnt them,
    and an item the request sends (the user has it now) fully."""
    write(tmp_path / "data" / "plays.csv", plays_csv())
    write(tmp_path / "data" / "items.csv", items_csv())
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    profile = write(tmp_path / "daemon.toml", PROFILE)
    trained = run_heirloom("train", str(profile), env=env)
    assert trained.returncode == 0, trained.stderr
    daemon = Daemon(tmp_path, profile=PROFILE, env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            lists = [client.call("recs.recommend", {"user": f"u{u}", "k": 10})["items"] for u in range(0, 80, 4)]
            got = shares([hit["item"] for hits in lists for hit in hits])
            assert got["electronic"] > 0.5 > got["rock"], got
            jazz = [f"jaz{n}" for n in range(5)]  # sent now: it outweighs the old plays
            sent = client.call("recs.recommend", {"user": "u0", "history": jazz, "k": 10})["items"]
            assert sum(hit["item"].startswith("jaz") for hit in sent) >= 5
    finally:
        daemon.kill()
    untimed = re.sub(r",\d+$", "", plays_csv().replace("user,item,time", "user,item"), flags=re.M)
    write(tmp_path / "data" / "plays.csv", untimed)
    failed = run_heirloom("train", str(profile), env=env)
    assert failed.returncode != 0 and "half_life_days weighs interactions by their time" in failed.stderr


class Said(heirloom.NullProgress):
    """A progress that keeps what a fit logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_one_interaction_dated_2100_weighs_as_of_now_instead_of_making_every_other_weigh_nothing():
    """A shop's one event dated 2100 among 30,000 was the data's 'now': every real one weighed ~0 (nDCG@10 0.4379 ->
    0.0621, popularity's; checker 235)."""
    data = [*records(), {"type": "interaction", "user": "u1", "item": "jaz1", "time": 4_102_444_800.0}]
    said = Said()
    recent = HybridRecommender(data="x", half_life_days=30.0, **FIXED)
    recent.fit(data, progress=said)
    after = drifting_top_10(recent)
    assert after["electronic"] > 0.6 and after["rock"] < 0.4
    summary = recent.fitted.training["recency"]
    assert END - 7 * DAY < summary["now"] <= END and summary["after_now"] == 1 and summary["under_0_01"] < 0.5
    assert any(
        line.startswith("half_life_days: 1 pair(s) timed past tomorrow weigh as of 2026-05-") for line in said.lines
    )


def test_a_half_life_under_which_most_interactions_weigh_nothing_is_said_at_fit_and_in_the_report():
    """A live events log (this year) beside an older file (two years back) made the few live events the whole model
    (nDCG@10 0.1133), and the report advised widening the l2 grid."""
    old = [{**r, "time": r["time"] - 730 * DAY} if r["type"] == "interaction" else r for r in records()]
    data = [*old, {"type": "interaction", "user": "u1", "item": "jaz1", "time": float(END)}]
    said = Said()
    recent = HybridRecommender(data="x", half_life_days=30.0, **FIXED)
    recent.fit(data, progress=said)
    warned = [line for line in said.lines if line.startswith("warning: half_life_days = 30:")]
    assert warned and "weigh under 0.01 (older than 199 days before 2026-05-28, the latest time)" in warned[0], (
        said.lines
    )
    assert recent.fitted.training["recency"]["under_0_01"] > 0.99
    below = {name: 0.1 for name in ("ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "coverage")}
    below["popularity_ndcg_at_10"] = 0.2
    advice = _report_text(below, users=10, cold_items=0, cold_users=0, left=(0, 0), faint=True)
    assert "most training interactions weighed under 0.01 by half_life_days" in advice
    assert "widen the l2 grid" not in advice
