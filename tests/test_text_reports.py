"""What the reports of ``heirloom train`` and ``heirloom eval`` say about a text model's figures,
beyond the figures: a validation split that cannot rank versions, a tied majority baseline,
labels without records (docs/TEXT.md, docs/ITERATION.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from heirloom.cli.train import saturation_warning
from heirloom.reports import report_fragment
from heirloom_plugins.metrics import classification_metrics, classification_text
from tests.helpers import pythonpath, run_heirloom, write

ITEMS = ["order", "parcel", "package", "shipment", "box", "item", "purchase", "delivery"]
#: Worded unlike the templates the training file was made from (a team's generated data).
TEST_ROWS = [
    ("I want my money back", "refund"),
    ("money back for the broken order please", "refund"),
    ("give back what I paid", "refund"),
    ("the parcel never came", "shipping"),
    ("nothing arrived yet", "shipping"),
    ("tracking says lost", "shipping"),
    ("cannot sign in", "login"),
    ("my password does not work", "login"),
    ("locked out of my account", "login"),
    ("reset my money", "login"),
]


def _csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def templated(tmp_path_factory):
    """A profile whose training file repeats three templates, 40 texts each (so the labels tie),
    trained once: validation, carved from it, scores 1.0; the test file, worded otherwise, 0.6."""
    folder = tmp_path_factory.mktemp("templated")
    rows = []
    for i in range(40):
        item = ITEMS[i % len(ITEMS)]
        rows += [
            (f"please refund the money for my {item} number {i}", "refund"),
            (f"where is my {item} number {i}, it has not arrived", "shipping"),
            (f"i forgot the password of account {i}, reset it", "login"),
        ]
    _csv(folder / "train.csv", rows)
    _csv(folder / "test.csv", TEST_ROWS)
    profile = write(
        folder / "p.toml",
        'project = "sat"\n[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n'
        '[models.m]\nuse = "text-classifier"\ndata = "s"\n',
    )
    env = {"HEIRLOOM_HOME": str(folder / "home")}
    trained = run_heirloom("train", str(profile), env=env)
    assert trained.returncode == 0, trained.stderr
    return str(profile), env, trained.stdout


def test_train_and_eval_warn_when_validation_is_perfect_and_test_clearly_is_not(templated):
    """Every version scored validation accuracy 1.0 and `promote --if-better` could never
    choose (exit 3, `1 vs 1`), while test said 0.72-0.77: nothing said why."""
    profile, env, trained = templated
    assert "validation (compared by promote --if-better; " in trained and "accuracy 1.0000" in trained
    warning = "warning: validation accuracy is 1.0000 but test accuracy 0.6000: validation cannot tell versions apart"
    assert warning in trained and "carves validation out of its training file" in trained
    assert (
        'give a csv or jsonl source a file of its own, texts worded as production\'s, with validation = "valid.csv"'
        in (" ".join(trained.split()))
    )  # the way out: the team wrote its data with a few phrasings a label
    evaluated = run_heirloom("eval", profile, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert warning in evaluated.stdout  # the test figure now, the version's stored validation one
    on_validation = run_heirloom("eval", profile, "--split", "validation", "--json", env=env)
    assert on_validation.returncode == 0, on_validation.stderr
    assert json.loads(on_validation.stdout)["models"]["m"]["accuracy"] == 1.0  # stdout stays JSON
    assert warning in on_validation.stderr
    other = Path(profile).with_name("other.csv")  # records it was not scored on: the gap is theirs (h444 F4)
    _csv(other, TEST_ROWS[:-1])
    changed = run_heirloom("eval", profile, "--set", f"sources.s.test={other}", env=env)
    said = " ".join((changed.stdout + changed.stderr).split())
    assert changed.returncode == 0 and "are not the ones it was scored on" in said, said
    assert "cannot tell versions apart" not in said


def test_no_saturation_warning_when_test_is_as_good_or_validation_below_its_best():
    hint = "see the source's docs"
    assert saturation_warning({"accuracy": 1.0, "macro_f1": 1.0}, {"accuracy": 0.97, "macro_f1": 0.96}, hint) == ""
    assert saturation_warning({"accuracy": 0.99}, {"accuracy": 0.6}, hint) == ""
    assert saturation_warning({}, {"accuracy": 0.6}, hint) == ""
    unknown = {"accuracy": 0.0, "support": 10, "unknown_labels": {"Refund": 6, "Billing": 4}}  # a Title Case test file
    assert saturation_warning({"accuracy": 1.0}, unknown, hint) == ""  # the report says what to compare instead
    assert saturation_warning({"accuracy": 1.0}, {**unknown, "unknown_labels": {"Refund": 4}}, hint) != ""
    said = saturation_warning({"accuracy": 0.98, "macro_f1": 1.0}, {"accuracy": 0.97, "macro_f1": 0.9}, hint)
    assert said.startswith("warning: validation macro_f1 is 1.0000 but test macro_f1 0.9000")


def test_train_warns_when_a_new_version_scores_well_below_the_version_before_it(templated, tmp_path):
    """Checker h329: six resolutions took a support intent model's test oos_recall 0.5875 -> 0.1875, a daemon
    serving the latest version served it, and train said nothing. Any model: a retrain on mislabelled data
    (refund and login swapped) falls on the same test records, and train says so, naming both versions, the
    scores and the way out; a retrain that rises, or stores nothing new, says nothing of it."""
    profile, env, _ = templated
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}  # a store of its own: the fixture's keeps one version
    swapped = {"refund": "login", "login": "refund"}
    with (Path(profile).parent / "train.csv").open(newline="") as handle:
        rows = [(row["text"], swapped.get(row["label"], row["label"])) for row in csv.DictReader(handle)]
    _csv(tmp_path / "swapped.csv", rows)
    mislabelled = ("--set", f"sources.s.train={tmp_path / 'swapped.csv'}")
    first = run_heirloom("train", profile, env=env)
    assert first.returncode == 0, first.stderr
    fell = run_heirloom("train", profile, *mislabelled, env=env)
    assert fell.returncode == 0, fell.stderr
    said = " ".join(fell.stdout.split())
    assert "warning: sat/m@2 scores 0.1 or more below sat/m@1, the version before it, on the same records: " in said
    assert "test accuracy 0.6000 -> 0." in said  # its validation records (carved from the file) differ: no figure
    assert 'set serve = "production" on models.m' in said
    assert "heirloom models promote sat/m@2 production --if-better accuracy" in said
    other = ("--set", "models.m.l2=0.05")  # another setting: a new version, rising from @2, with no warning
    rose = run_heirloom("train", profile, *other, env=env)
    assert rose.returncode == 0 and "stored sat/m@3" in rose.stdout and "or more below" not in rose.stdout, rose.stdout
    served = ("--set", "models.m.serve=production")  # a profile serving an alias is not told to set it (h396 F2)
    as_json = run_heirloom("train", profile, *other, *mislabelled, *served, "--json", env=env)  # stdout stays JSON
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["models"]["m"]["ref"] == "sat/m@4"
    said = " ".join(as_json.stderr.split())
    assert "warning: sat/m@4 scores 0.1 or more below sat/m@3" in said and 'set serve = "production"' not in said
    assert "A daemon serves 'production', not it, until a promote (heirloom models promote sat/m@4 production" in said
    same = run_heirloom("train", profile, *other, *mislabelled, env=env)  # nothing new stored: nothing to compare
    assert "unchanged: identical to" in same.stdout and "or more below" not in same.stdout + same.stderr


#: A third party's source with a validation split of its own, and a model perfect on it, not on test.
SPLITTING_PLUGIN = """
import attrs

import heirloom
from tests.toys import ToyModel


@attrs.define
class Splits(heirloom.Source):
    def records(self, split=None):
        return iter([{"x": i, "hard": split == "test" and i % 2} for i in range(4)])

    def fingerprint(self):
        return "fixed"

    def splits(self):
        return ["train", "validation", "test"]


@attrs.define
class Scored(ToyModel):
    def evaluate(self, data):
        rows = list(data)
        return heirloom.Report({"accuracy": 1 - sum(bool(r["hard"]) for r in rows) / len(rows)}, "scored")


@attrs.define
class Forgetful(Scored):  # its load() restores nothing fit learnt (a plugin's bug): loaded, it scores 0
    learnt: bool = False

    def fit(self, data, parent=None, progress=None):
        super().fit(data, parent, progress)
        self.learnt = True

    def evaluate(self, data):
        return super().evaluate(data) if self.learnt else heirloom.Report({"accuracy": 0.0}, "forgot")


@attrs.define
class DocumentedSplits(Splits):
    validation_docs = "the shop source holds out last week: its README"


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("splits", Splits)
    register("documented-splits", DocumentedSplits)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("scored", Scored)
    register("forgetful", Forgetful)
"""


def train_splitting_plugin(
    tmp_path: Path, sources: str, data: str, use: str = "scored"
) -> tuple[Path, dict[str, str], Any]:
    """Train model ``m`` (SPLITTING_PLUGIN's ``use``) on source ``data`` of the ``sources`` tables."""
    write(tmp_path / "plugin" / "splitting.py", SPLITTING_PLUGIN)
    profile = write(tmp_path / "p.toml", f'project = "third"\n{sources}[models.m]\nuse = "{use}"\ndata = "{data}"\n')
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_PLUGINS": "tests.toys,splitting"}
    env["PYTHONPATH"] = pythonpath(tmp_path / "plugin")
    trained = run_heirloom("train", str(profile), env=env)
    assert trained.returncode == 0, trained.stderr
    return profile, env, trained


def test_the_saturation_warning_of_another_plugins_source_points_to_plugins_md_not_text_md(tmp_path):
    """A third party's source was told that 'a text source carves validation out of its training file: docs/TEXT.md'."""
    profile, env, trained = train_splitting_plugin(tmp_path, '[sources.s]\nuse = "splits"\n', data="s")
    warning = "warning: validation accuracy is 1.0000 but test accuracy 0.5000: validation cannot tell versions apart"
    hint = "(a source's validation split: docs/PLUGINS.md, heirloom_register_sources)"
    said = " ".join(trained.stdout.split())
    assert warning in said and hint in said and "docs/TEXT.md" not in said, trained.stdout
    evaluated = run_heirloom("eval", str(profile), env=env)
    assert evaluated.returncode == 0 and hint in " ".join(evaluated.stdout.split()), evaluated.stderr


def test_eval_says_a_loaded_version_does_not_score_what_it_stored_rather_than_blame_the_split(tmp_path):
    """A load() that restored nothing: train stored test accuracy 0.5, eval of the same records scored 0.0 and
    warned that validation (1.0) cannot tell versions apart, sending the author to fix their split."""
    profile, env, _ = train_splitting_plugin(tmp_path, '[sources.s]\nuse = "splits"\n', data="s", use="forgetful")
    for split, was in (("test", "0.5000"), ("validation", "1.0000")):
        evaluated = run_heirloom("eval", str(profile), "--split", split, "--json", env=env)
        assert evaluated.returncode == 0, evaluated.stderr
        assert json.loads(evaluated.stdout)["models"]["m"]["same_records_as_trained"] is True
        said = " ".join(evaluated.stderr.split())
        assert (
            f"warning: third/m@1 scored accuracy {was} on these same {split} records when trained; loaded now it "
            "scores 0.0000: the loaded version does not score what the stored one did. Its model's load() does not "
            "restore what state() saved, or its predict is not deterministic, or its plugin's evaluate() changed since "
            "it was stored (then retrain or re-evaluate: its stored metrics are the old code's) (docs/PLUGINS.md, "
            "heirloom.State;"
        ) in said, said
        assert "cannot tell versions apart" not in said


def test_the_saturation_warning_points_where_a_source_read_through_a_union_says_its_validation_is_made(tmp_path):
    """The kernel named the text plugin's module to choose TEXT.md; a source now declares ``validation_docs``."""
    sources = '[sources.s]\nuse = "documented-splits"\n[sources.u]\nuse = "union"\nsources = ["s"]\nexample_keys = []\n'
    _, _, trained = train_splitting_plugin(tmp_path, sources, data="u")
    said = " ".join(trained.stdout.split())
    assert "(the shop source holds out last week: its README)" in said and "PLUGINS.md" not in said, trained.stdout


def test_a_majority_baseline_tied_between_labels_says_so(templated):
    """40 texts a label: 'login' was called "the most frequent training label"."""
    profile, env, trained = templated
    assert "always answering 'login' (one of 3 labels tied as most frequent in training): accuracy 0.400" in trained
    assert "the most frequent training label" not in trained
    evaluated = run_heirloom("eval", profile, "--json", env=env)
    assert json.loads(evaluated.stdout)["models"]["m"]["majority"] == {"label": "login", "accuracy": 0.4, "tied": 3}


def test_eval_json_warns_on_stderr_of_test_labels_the_model_does_not_predict(templated, tmp_path):
    """A label only the test file had: train's report named it, `eval --json` said nothing while its
    records, each an error, pulled macro_f1 down."""
    profile, env, _ = templated
    _csv(tmp_path / "test.csv", [*TEST_ROWS, ("my car broke down", "roadside")])
    evaluated = run_heirloom("eval", profile, "--json", "--set", f"sources.s.test={tmp_path / 'test.csv'}", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["models"]["m"]["unknown_labels"] == {"roadside": 1}
    said = "warning: labels the model does not predict, each record an error: roadside (1)"
    assert said in evaluated.stderr


def test_a_test_file_whose_labels_the_model_does_not_predict_is_blamed_not_the_texts(templated, tmp_path):
    """A test export in Title Case (`Refund` for `refund`): every record an error, and the report's closing warning
    said "the texts may not tell these labels apart", the wrong fix (h347 F10)."""
    profile, env, _ = templated
    _csv(tmp_path / "test.csv", [(text, label.title()) for text, label in TEST_ROWS])
    evaluated = run_heirloom("eval", profile, "--set", f"sources.s.test={tmp_path / 'test.csv'}", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    said = " ".join(evaluated.stdout.split())
    assert (
        "warning: 10 of the 10 records have labels the model does not predict (above), each an error whatever the "
        "texts: compare the held-out file's labels with the training file's (another case or spelling?)"
    ) in said, evaluated.stdout
    assert "the texts may not tell these labels apart" not in said


def _table(text: str) -> dict[str, list[str]]:
    """The per-label rows of a report, by label (the lines above the accuracy line)."""
    lines = text.splitlines()
    rows = lines[2 : next(n for n, line in enumerate(lines) if line.split()[:1] == ["accuracy"])]
    return {line.split()[0]: line.split()[1:] for line in rows if line.strip()}


def test_a_label_without_records_or_predictions_is_marked_so_the_rows_average_to_the_macro_figure():
    """It printed `0.000 0.000 0.000 0` while the macro average left it out."""
    text = classification_text(classification_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b", "new"]))
    rows = _table(text)
    assert rows["new"] == ["-", "-", "-", "0"]
    assert "-: no records in this split and never predicted, so left out of the averages: new" in text
    macro = next(line for line in text.splitlines() if "macro avg" in line).split()
    assert macro[4] == f"{(float(rows['a'][2]) + float(rows['b'][2])) / 2:.3f}"  # the f1 rows average to it
    predicted = classification_text(classification_metrics(["a", "b"], ["a", "new"], ["a", "b", "new"]))
    assert _table(predicted)["new"] == ["0.000", "-", "-", "0"]  # predicted though absent: its precision alone
    assert "never predicted" not in predicted
    assert "left out of the averages (each answer an error): new" in predicted


def test_the_html_report_marks_a_label_without_records_or_predictions_as_the_text_report_does():
    """`eval --html` showed 0.000 for such a label, beside a macro average that left it out."""
    html = report_fragment(classification_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b", "new"]))
    assert '<tr class="absent"><td>new</td><td>-</td><td>-</td><td>-</td><td>0</td></tr>' in html
    assert "never predicted, so left out of the averages: new</p>" in html
    predicted = report_fragment(classification_metrics(["a", "b"], ["a", "new"], ["a", "b", "new"]))
    assert 'class="absent"' not in predicted and "never predicted" not in predicted
    assert "<td>new</td>\n        <td>0.000</td>\n        <td>-</td>\n        <td>-</td>" in predicted
    assert "left out of the averages (each answer an error): new</p>" in predicted


def test_data_stats_names_each_label_only_the_held_out_splits_have_with_its_first_file_line(tmp_path):
    """A label only the test file had was said only in train's report ("labels the model does not
    predict"), with no file or line; `profile check` and `data stats` said nothing."""
    _csv(
        tmp_path / "train.csv",
        [(f"where is my parcel {i}", "shipping") for i in range(6)] + [("refund me", "refund")] * 6,
    )
    _csv(tmp_path / "test.csv", [("refund it", "refund"), ("my car broke down", "roadside"), ("tow it", "roadside")])
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n')
    stats = run_heirloom("data", "stats", str(profile), "s", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["labels_only_held_out"] == {"roadside": "test test.csv:3"}
    assert "source 's': labels that no training record has" in stats.stderr
    assert "'roadside' (first at test test.csv:3)" in stats.stderr
    table = run_heirloom("data", "stats", str(profile), "s")
    assert "labels_only_held_out.roadside" in table.stdout and "'roadside' (first at test test.csv:3)" in table.stderr
    _csv(tmp_path / "test.csv", [("refund it", "refund")])
    quiet = run_heirloom("data", "stats", str(profile), "s", "--json")
    assert "labels_only_held_out" not in json.loads(quiet.stdout) and "no training record" not in quiet.stderr


def test_a_large_metric_that_moved_in_its_eighth_digit_is_no_unrestored_version():
    """A sum of squared errors of 10108.1631 came back 10108.1621 (floats summed in another order), and
    eval said the loaded version does not score what the stored one did (an absolute 1e-6 tolerance)."""
    from types import SimpleNamespace

    from heirloom.cli.train import unrestored_warning

    stored = SimpleNamespace(ref="p/m@1", metrics={"sse": 10108.1631, "accuracy": 0.5}, profile_digest="d")
    assert unrestored_warning(stored, "test", {"sse": 10108.1621, "accuracy": 0.5}, "d") == ""
    assert "scored accuracy 0.5000" in unrestored_warning(stored, "test", {"sse": 10108.1631, "accuracy": 0.4}, "d")
