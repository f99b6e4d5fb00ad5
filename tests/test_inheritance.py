"""Continuous iteration end to end: inherit across projects, hot swap under load, feedback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from heirloom.store.artifacts import ArtifactStore
from tests.daemons import Daemon
from tests.helpers import HEIRLOOM, REPO, run_heirloom, write

QUICK = ["--set", "models.{model}.epochs=2", "--set", "models.{model}.refit=false"]


def quick(model: str) -> list[str]:
    return [part.format(model=model) for part in QUICK]


@pytest.fixture
def env(tmp_path, data_dir):
    return {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}


def test_banking_intents_inherit_the_core_and_grow_the_label_space(env):
    early = run_heirloom("train", "banking-intents", *quick("intent"), env=env, timeout=300)
    assert early.returncode == 2 and "banking-intents-core/intent" in early.stderr  # nothing to inherit yet: exit 2
    core = run_heirloom("train", "banking-intents-core", *quick("intent"), env=env, timeout=300)
    assert core.returncode == 0, core.stderr
    child = run_heirloom("train", "banking-intents", *quick("intent"), env=env, timeout=300)
    assert child.returncode == 0, child.stderr
    assert "stored banking-intents/intent@1" in child.stdout and "parent banking-intents-core/intent@1" in child.stdout
    said = " ".join((child.stdout + child.stderr).split())  # the metadata alone said it (h444 F5)
    assert "warm start labels: kept 40; added " in said and " and 27 more (each starts as the blend" in said, said
    lineage = json.loads(run_heirloom("models", "lineage", "banking-intents/intent", "--json", env=env).stdout)
    refs = [entry["ref"] for entry in (lineage["lineage"] if isinstance(lineage, dict) else lineage)]
    assert refs == ["banking-intents/intent@1", "banking-intents-core/intent@1"]
    evaluated = json.loads(run_heirloom("eval", "banking-intents", "--json", env=env, timeout=300).stdout)
    core_eval = json.loads(run_heirloom("eval", "banking-intents-core", "--json", env=env, timeout=300).stdout)
    assert len(evaluated["models"]["intent"]["per_class"]) == 77
    assert len(core_eval["models"]["intent"]["per_class"]) == 40  # restricted to the labels it knows


def _train_finance(env: dict, times: int) -> None:
    """Store ``times`` distinct versions (identical training would reuse the first one)."""
    for seed in range(times):
        settings = [*quick("sentiment"), "--set", f"models.sentiment.seed={seed}"]
        result = run_heirloom("train", "finance-sentiment", *settings, env=env, timeout=300)
        assert result.returncode == 0, result.stderr


def test_a_daemon_under_load_swaps_versions_without_failing_a_request(env, tmp_path):
    _train_finance(env, 2)
    assert run_heirloom("models", "promote", "finance/sentiment@1", "production", env=env).returncode == 0
    profile = write(
        tmp_path / "served.toml",
        """
extends = ["finance-sentiment"]
project = "finance"

[models.sentiment]
serve = "production"

[server]
reload_interval = 0.2
""",
    ).read_text()
    daemon = Daemon(tmp_path, profile=profile, env=env)
    daemon.wait_ready()
    versions: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def steady_load() -> None:
        with daemon.client(timeout=10, retries=0) as client:
            while not stop.is_set():
                futures = [client.submit("sentiment.predict", {"text": f"Profit rose {i}%"}) for i in range(16)]
                for future in futures:
                    try:
                        versions.append(future.result().version)
                    except Exception as exc:  # noqa: BLE001 - any failure fails the test
                        errors.append(exc)

    workers = [threading.Thread(target=steady_load) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    promoted = run_heirloom("models", "promote", "finance/sentiment@2", "production", env=env)
    assert promoted.returncode == 0, promoted.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not versions or versions[-1] != "finance/sentiment@2"):
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join()
    assert errors == []
    assert versions[0] == "finance/sentiment@1" and versions[-1] == "finance/sentiment@2"
    switch = versions.index("finance/sentiment@2")
    assert len(versions) > switch + 10 and "finance/sentiment@1" in versions[:switch]
    assert daemon.terminate() == 0
    assert re.search(r"now serving finance/sentiment@2, digest [0-9a-f]{12} \(was finance/sentiment@1\)", daemon.log())


def test_acknowledged_feedback_survives_kill_9_and_feeds_the_next_train(env, tmp_path):
    _train_finance(env, 1)
    daemon = Daemon(tmp_path, profile=(REPO / "profiles" / "finance-sentiment.toml").read_text(), env=env)
    daemon.wait_ready()
    with daemon.client(timeout=10) as client:
        for i in range(20):
            client.call("sentiment.feedback", {"text": f"Shares plunged {i}", "label": "negative"},
                        idempotency_key=f"fb-{i}")  # fmt: skip
        daemon.process.send_signal(signal.SIGKILL)  # right after the last acknowledgement
    daemon.process.wait()
    retrain = write(
        tmp_path / "with-feedback.toml",
        """
extends = ["finance-sentiment"]
project = "finance"

[sources.corrections]
use = "feedback"
api = "sentiment"

[sources.training]
use = "union"
sources = ["news", "corrections"]

[models.sentiment]
data = "training"
""",
    )
    stats = json.loads(run_heirloom("data", "stats", str(retrain), "corrections", "--json", env=env).stdout)
    assert stats["records"]["train"] == 20
    shown = run_heirloom("data", "show", str(retrain), "corrections", "--limit", "0", "--json", env=env)
    assert "Shares plunged 19" in shown.stdout  # the last acknowledged write before the kill
    trained = run_heirloom("train", str(retrain), *quick("sentiment"), env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    listed = json.loads(run_heirloom("models", "list", "--json", env=env).stdout)
    latest = max(listed, key=lambda a: a["ref"])
    assert latest["ref"] == "finance/sentiment@2"


def test_a_data_error_under_a_parent_of_another_type_names_the_data_not_the_inherit_key(tmp_path):
    """A source failing as a model inheriting another model type's version read it was blamed on
    the parent: ``models.encoder.inherit: pretrained/minilm@1 is a pretrained model: faq.xml: ...``."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    rows = "".join(f"my card {i} is lost,lost_card\nthe rate {i} today,exchange_rate\n" for i in range(10))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    csv = '[sources.s]\nuse = "csv"\ntrain = "{}"\n'
    team = write(
        tmp_path / "team.toml", csv.format("train.csv") + '[models.intent]\nuse = "text-classifier"\ndata = "s"\n'
    )
    assert run_heirloom("train", str(team), env=toys).returncode == 0
    write(tmp_path / "broken.csv", 'text,label\nfine,a\n"a quote never closed,b')
    kid = csv.format("broken.csv") + '[models.m]\nuse = "toy-model"\ndata = "s"\ninherit = "team/intent@1"\n'
    trained = run_heirloom("train", str(write(tmp_path / "kid.toml", kid)), env=toys)
    said = " ".join(trained.stderr.split())
    assert trained.returncode == 1 and "reading the train split of s: " in said and "broken.csv" in said, said
    assert "inherit" not in said and "text-classifier" not in said


def toy_team(folder: Path, source_settings: str) -> Path:
    """A profile ``team.toml`` in ``folder`` training toy-model on toy-source ``rows`` with ``source_settings``."""
    tables = f'[sources.rows]\nuse = "toy-source"\n{source_settings}[models.m]\nuse = "toy-model"\ndata = "rows"\n'
    return write(folder / "team.toml", tables)


def train_toys(profile: Path, setting: str) -> tuple[subprocess.CompletedProcess, str]:
    """``heirloom train PROFILE --set SETTING`` with the toy plugins: the run and its last line on stderr."""
    trained = run_heirloom("train", str(profile), "--set", setting, env={"HEIRLOOM_PLUGINS": "tests.toys"})
    return trained, trained.stderr.strip().splitlines()[-1]


def test_a_data_change_is_shown_up_to_where_the_two_fingerprints_differ(tmp_path):
    """Two fingerprints alike in their first 12 characters read ``daed03fe7868 -> daed03fe7868`` (checker h451 F2)."""
    profile = toy_team(tmp_path, 'fingerprint_prefix = "daed03fe7868ab"\n')
    assert train_toys(profile, "sources.rows.rows=20")[0].returncode == 0
    trained, _ = train_toys(profile, "sources.rows.rows=21")
    assert "rows differs from the data team/m@1 trained on (daed03fe7868abtoy-20 -> daed03fe7868abtoy-21;" in " ".join(
        trained.stderr.split()
    ), trained.stderr


def test_a_sources_error_while_train_scores_a_split_names_the_source(tmp_path):
    """Checker h317 F2: a source's HeirloomError while ``train`` scored the validation or test split read
    ``error: scoring the model on the test split: ...``, naming no source of several; it is said as the train
    split's read says it. ``eval`` names the version it evaluates and the source."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    profile = toy_team(tmp_path, "validation = true\n")
    for split in ("validation", "test"):
        trained, last = train_toys(profile, f"sources.rows.bad_split={split}")
        said = f"error: reading the {split} split of rows: rows.csv:7: 'temp' is not a number (the {split} split)"
        assert trained.returncode == 1 and last == said, trained.stderr
    assert run_heirloom("train", str(profile), env=toys).returncode == 0
    evaluated = run_heirloom("eval", str(profile), "m", "--set", "sources.rows.bad_split=test", env=toys)
    last = evaluated.stderr.strip().splitlines()[-1]
    said = "error: evaluating team/m@1 on test: reading the test split of rows: rows.csv:7: 'temp' is not a number"
    assert evaluated.returncode == 1 and last.startswith(said), evaluated.stderr


def test_a_source_yielding_no_record_is_named_with_its_plugin_split_and_record_number(tmp_path):
    """Checker h356 F2: a source yielding a list where a record (a dict or an attrs object) belongs went to the model,
    whose failure blamed the model's plugin (another distribution's); ``data show`` printed it as a record."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    profile = toy_team(tmp_path, "list_record = 2\n")
    whose = "record 2 of sources.rows (toy-source, plugin tests.toys) is a list ['i', 1], not a dict or attrs object"
    trained, last = train_toys(profile, "sources.rows.rows=3")
    assert trained.returncode == 1 and last == f"error: reading the train split of rows: {whose} (a plugin bug?)", last
    assert run_heirloom("train", str(profile), "--set", "sources.rows.list_record=0", env=toys).returncode == 0
    evaluated = run_heirloom("eval", str(profile), "m", env=toys)
    last = evaluated.stderr.strip().splitlines()[-1]
    assert evaluated.returncode == 1 and "reading the test split of rows: " + whose in last, evaluated.stderr
    for split in ("train", None):
        shown = run_heirloom("data", "show", str(profile), "rows", *(["--split", split] if split else []), env=toys)
        read = f"the {split} split" if split else "every split"
        last = shown.stderr.strip().splitlines()[-1]
        assert shown.returncode == 1 and last == f"error: reading {read} of rows: {whose} (a plugin bug?)", last
        assert "{'i': 0}" in shown.stdout and "['i', 1]" not in shown.stdout, "the records before it are shown"


def test_records_returned_as_a_dict_are_refused_naming_the_source_not_read_as_its_keys(tmp_path):
    """A source whose ``records()`` returned a dict was read key by key: ``record 1 ... is a str 'i'`` (checker
    h433 F10)."""
    profile = toy_team(tmp_path, "dict_records = true\n")
    trained, last = train_toys(profile, "sources.rows.rows=3")
    said = "error: reading the train split of rows: ToySource.records('train') returned a dict, not records one by one"
    assert trained.returncode == 1 and last.startswith(said), last


def test_a_sources_bug_is_named_as_the_sources_even_when_it_also_fails_to_stop(tmp_path):
    """A third-party source's KeyError read as ``training models.m (toy-model) failed``, and with
    a ``stop`` that failed too, only the stop's error was shown: the first failure was lost."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    profile = toy_team(tmp_path, "bug = true\n")
    for stop in ("false", "true"):
        trained, last = train_toys(profile, f"sources.rows.fail_stop={stop}")
        assert trained.returncode == 1 and "KeyError: 'body'" in trained.stderr, trained.stderr
        whose = "sources.rows (toy-source, plugin tests.toys)"  # its plugin named, as a bad record's (h433 F10)
        assert last.startswith(f"error: reading the train split of {whose} failed: KeyError"), last
    assert "rows refuses to stop" in trained.stderr  # said too, after the failure it followed
    shown = run_heirloom("data", "show", str(profile), "rows", env=toys)
    last = shown.stderr.strip().splitlines()[-1]
    assert shown.returncode == 1 and last.startswith(
        "error: reading sources.rows (toy-source, plugin tests.toys) failed: KeyError"
    ), last
    hashed = run_heirloom(  # was "training models.m (toy-model) failed: ValueError: cannot hash"
        "train", str(profile), "--set", "sources.rows.bug=false", "--set", "sources.rows.bad_fingerprint=true", env=toys
    )
    last = hashed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: computing the fingerprint of sources.rows (toy-source, plugin tests.toys) failed: ValueError"
    ), last
    listed = run_heirloom(  # was "training models.m (toy-model, plugin ...) failed": the model's (checker h451 F1)
        "train", str(profile), "--set", "sources.rows.bug=false", "--set", "sources.rows.bad_splits=true", env=toys
    )
    said = "error: listing the splits of sources.rows (toy-source, plugin tests.toys) failed: NotADirectoryError"
    assert listed.stderr.strip().splitlines()[-1].startswith(said), listed.stderr
    counted = run_heirloom("data", "stats", str(profile), "rows", "--set", "sources.rows.bad_splits=true", env=toys)
    assert counted.stderr.strip().splitlines()[-1].startswith(said), counted.stderr  # as train says it (v40 F6)
    text = run_heirloom(  # a str read letter by letter: "lists 't', a split heirloom never reads" (checker v41 F6)
        "train", str(profile), "--set", "sources.rows.bug=false", "--set", "sources.rows.text_splits=true", env=toys
    )
    said = "error: listing the splits of source 'rows': ToySource.splits() returned {}, not a list of split names"
    assert text.returncode == 1 and text.stderr.strip().splitlines()[-1] == said.format("'train'"), text.stderr
    forgot = run_heirloom("data", "stats", str(profile), "rows", "--set", "sources.rows.none_splits=true", env=toys)
    assert forgot.stderr.strip() == said.format("None"), forgot.stderr  # no traceback into heirloom's code (v42 F1)


def test_data_stats_prints_its_counts_before_a_source_that_fails_to_stop(tmp_path):
    """Checker h341 F1: a source whose stop() raised made ``data stats`` print nothing (--json too) and exit 1,
    losing counts that took minutes to read; train and eval print what they did first."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    profile = toy_team(tmp_path, "fail_stop = true\n")
    for json_flag in (("--json",), ()):
        counted = run_heirloom("data", "stats", str(profile), "rows", *json_flag, env=toys)
        assert counted.returncode == 1, counted.stderr
        assert "fingerprint" in (json.loads(counted.stdout) if json_flag else counted.stdout), counted.stdout
        last = counted.stderr.strip().splitlines()[-1]
        said = "error: the counts of sources.rows were printed; then sources.rows (toy-source, plugin tests.toys)"
        assert last.startswith(said) and "rows refuses to stop" in last, counted.stderr


def test_a_child_warm_starts_from_the_version_its_parent_got_in_the_same_train(tmp_path):
    """An encoder equal to an older version (@1) while a later one (@2) was fitted on other data: the intent and
    FAQ models inheriting ``project/encoder`` warm-started from @2, and recorded it. Such a version is now stored
    as the next, @3 (equal to @1): named as identical, @2 stayed the latest, served (checker h441 F2)."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    profile = write(
        tmp_path / "team.toml",
        '[sources.s]\nuse = "toy-source"\n[models.a]\nuse = "toy-model"\ndata = "s"\nnote = "one"\n'
        '[models.b]\nuse = "toy-model"\ndata = "s"\ninherit = "team/a"\n',
    )
    for note in ("one", "two", "one"):
        trained = run_heirloom("train", str(profile), "--json", "--set", f"models.a.note={note}", env=toys)
        assert trained.returncode == 0, trained.stderr
    models = json.loads(trained.stdout)["models"]
    assert (models["a"]["ref"], models["a"]["stored"]) == ("team/a@3", True)  # the same as the first a
    assert models["b"]["parent"] == "team/a@3" and "warm start from team/a@3" in trained.stderr
    listed = json.loads(run_heirloom("models", "list", "--json", env=toys).stdout)
    digests = {row["ref"]: row["digest"] for row in listed}
    assert digests["team/a@3"] == digests["team/a@1"] != digests["team/a@2"]


def test_training_data_that_changes_neither_the_weights_nor_the_scored_records_stores_nothing(tmp_path):
    """A customer-service handoff resolved ``out_of_scope`` changed the intent data's fingerprint, which the
    model leaves out: every such train stored a copy of the last version (SUPPORT.md: "A train with nothing
    new stores nothing"). New test records still make a new version, scored on them."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    write(tmp_path / "train.csv", "text,label\nmy card is lost,lost_card\n")
    write(tmp_path / "test.csv", "text,label\nI lost my card,lost_card\n")
    profile = write(
        tmp_path / "team.toml",
        '[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n[models.m]\nuse = "toy-model"\ndata = "s"\n',
    )
    assert run_heirloom("train", str(profile), env=toys).returncode == 0
    write(tmp_path / "train.csv", "text,label\nmy card is lost,lost_card\nnone of them,out_of_scope\n")
    again = run_heirloom("train", str(profile), env=toys)
    said = " ".join(again.stdout.split())
    assert again.returncode == 0 and "unchanged: identical to team/m@1" in said, said
    assert "same weights and scores from changed training data" in said
    write(tmp_path / "test.csv", "text,label\nI lost my card,lost_card\nwhere is my card,lost_card\n")
    assert "stored team/m@2" in run_heirloom("train", str(profile), env=toys).stdout


def test_a_models_complaint_about_its_records_names_the_model_and_its_source(tmp_path):
    """A source yielding records without a text said only "error: record 0 needs a 'text' (str)
    and a 'label'": of which model, reading which source, in a profile training several?"""
    profile = write(
        tmp_path / "team.toml",
        '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "text-classifier"\ndata = "rows"\n',
    )
    trained = run_heirloom("train", str(profile), env={"HEIRLOOM_PLUGINS": "tests.toys"})
    last = trained.stderr.strip().splitlines()[-1]
    assert trained.returncode == 1 and last.startswith("error: models.m (text-classifier) on source 'rows': record 0 ")


def test_a_parent_of_another_model_type_is_named_by_the_inherit_key(tmp_path):
    """``inherit`` naming a recommender's version in a text-classifier said only "the parent
    is not a text-classifier state", not which key or what the parent was. The text-classifier's
    ``check_parent`` says so with the file before any data is read (exit 2: checker 275 F6)."""
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    toy = '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "s"\n'
    other = write(tmp_path / "other.toml", toy)
    assert run_heirloom("train", str(other), env=toys).returncode == 0
    rows = "".join(f"my card {i} is lost,lost_card\nthe rate {i} today,exchange_rate\n" for i in range(10))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    profile = write(
        tmp_path / "team.toml",
        '[sources.s]\nuse = "csv"\ntrain = "train.csv"\n'
        '[models.intent]\nuse = "text-classifier"\ndata = "s"\ninherit = "other/m@1"\n',
    )
    trained = run_heirloom("train", str(profile), env=toys)
    assert trained.returncode == 2
    said = " ".join(trained.stderr.split())
    refused = f"{profile}: models.intent.inherit: other/m@1 is of model type toy-model: the parent was not written by"
    assert refused in said
    # A parent of the model's own type it refuses is named too (the message alone named nothing)
    child = write(tmp_path / "child.toml", toy + 'inherit = "other/m@1"\ntags = ["refuse-parent"]\n')
    refused = run_heirloom("train", str(child), env=toys)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 1 and "error: models.m.inherit: other/m@1: the parent has dim 64" in said, said
    # Only a refused parent is put on inherit, not another error that happens to say "parent".
    assert run_heirloom("train", str(profile), "--set", "models.intent.inherit=", env=toys).returncode == 0
    write(tmp_path / "train.csv", "text,label\n" + "".join(f"text {i},parent\n" for i in range(5)))
    alone = run_heirloom("train", str(profile), "--set", "models.intent.inherit=team/intent@1", env=toys)
    said = " ".join(alone.stderr.split())
    assert alone.returncode == 1 and "needs at least two labels to fit, got ['parent']" in said
    assert "inherit" not in said, said


def test_a_parent_the_model_cannot_warm_start_from_is_refused_at_its_key_by_check_and_by_train(tmp_path, data_dir):
    """``inherit = "pretrained:minilm"`` in a text-classifier, or a parent hashing text otherwise (``fold``), passed
    ``profile check``; train read the data, then failed with exit 1 naming no file (checker 275 F6). A parent
    sharing no label with the data warm-started without a word (F7). A refused train stores no pretrained state,
    and the recommender and medical models refuse another type's parent as the text-classifier does (h444)."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    rows = "".join(f"my card {i} is lost,lost_card\nthe rate {i} today,exchange_rate\n" for i in range(10))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    team = write(
        tmp_path / "team.toml",
        'project = "team"\n[sources.s]\nuse = "csv"\ntrain = "train.csv"\n'
        '[models.intent]\nuse = "text-classifier"\ndata = "s"\nbuckets = 1024\n',
    )
    assert run_heirloom("train", str(team), env=env).returncode == 0
    kid = write(
        tmp_path / "kid.toml",
        'extends = ["team.toml"]\nproject = "kid"\n[models.intent]\ninherit = "team/intent@1"\nfold = true\n',
    )
    hashes = "team/intent@1: the parent hashes text differently, so its weights would sit on other features"
    refused = f"{kid}: models.intent.fold: {hashes}: set it as the parent has; fold (parent false, this model true)"
    for command in ("profile check", "train"):
        done = run_heirloom(*command.split(), str(kid), env=env)
        assert done.returncode == 2 and refused in done.stderr, done.stderr
    assert "warm start" not in done.stderr  # refused before the data was read
    pretrained = ("--set", "models.intent.inherit=pretrained:minilm", "--set", "models.intent.fold=false")
    checked = run_heirloom("profile", "check", str(kid), *pretrained, env=env)
    foreign = "--set: models.intent.inherit: pretrained:minilm is of model type pretrained: the parent was not written"
    assert checked.returncode == 2 and f"{foreign} by text-classifier (format 'heirloom.encoder/1'" in checked.stderr
    refused = run_heirloom("train", str(kid), *pretrained, env=env)  # it stored 87 MB of MiniLM first (h444 F1)
    assert refused.returncode == 2 and foreign in refused.stderr, refused.stderr
    listed = run_heirloom("models", "list", "--json", env=env).stdout
    assert [artifact["ref"] for artifact in json.loads(listed)] == ["team/intent@1"]
    for shipped, model, wrote in [("recommend", "recs", "hybrid-recommender"), ("medical", "treatment", "medical")]:
        other = run_heirloom("profile", "check", shipped, "--set", f"models.{model}.inherit=team/intent@1", env=env)
        said = f"models.{model}.inherit: team/intent@1 is of model type text-classifier: the parent was not written by"
        assert other.returncode == 2 and f"{said} {wrote}" in other.stderr, other.stderr  # h444 F3
    write(tmp_path / "mood.csv", "text,label\n" + "".join(f"great {i},happy\nawful {i},sad\n" for i in range(10)))
    moods = ("--set", "sources.s.train=mood.csv", "--set", "models.intent.fold=false")
    trained = run_heirloom("train", str(kid), *moods, cwd=tmp_path, env=env)
    said = " ".join(trained.stdout.split() + trained.stderr.split())
    assert trained.returncode == 0, trained.stderr
    assert "warning: the parent knows none of the 2 labels of source 's' (its labels: exchange_rate, lost_card)" in said


def test_a_parent_removed_while_its_child_trains_is_said_so_not_as_a_ref_naming_nothing(tmp_path):
    """``models gc`` removed the parent while the child fitted: the fit finished, then "parent ...
    is not in the store", exit 2, as if the profile named nothing; it was there when the train began."""
    store = tmp_path / "store"
    toys = {"HEIRLOOM_PLUGINS": "tests.toys", "HEIRLOOM_STORE": str(store)}
    toy = '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "s"\n'
    other = write(tmp_path / "other.toml", toy)
    for note in ("one", "two"):  # other/m@2: gc --keep 1 may remove other/m@1
        assert run_heirloom("train", str(other), "--set", f"models.m.note={note}", env=toys).returncode == 0
    child = write(tmp_path / "team.toml", toy + 'inherit = "other/m@1"\nstart_seconds = 5\n')  # a window after resolve
    training = subprocess.Popen(
        [*HEIRLOOM, "train", str(child)], stderr=subprocess.PIPE, text=True, env={**os.environ, **toys}, cwd=REPO
    )
    try:
        for line in training.stderr:
            if "warm start from other/m@1" in line:  # resolved and loaded: it is in the store
                break
        assert [row["version"] for row in ArtifactStore(store).gc(1).versions] == [1]
        said = " ".join(training.stderr.read().split())
        assert training.wait(timeout=60) == 1, said
    finally:
        training.kill()
    removed = f"was removed from the store at {store} while this model trained (models gc?); nothing was stored"
    assert "error: parent other/m@1 (" in said and said.endswith(removed), said
    assert not ArtifactStore(store).list("team", "m")
