"""``heirloom eval`` evaluates apis with checks of their own beside the models, and puts
every report that has a summary row into one table (docs/PLUGINS.md, ``Api.evaluate``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HEIRLOOM, pythonpath, run_heirloom, write

PROFILE = """
[sources.rows]
use = "toy-source"
rows = 4

[models.m]
use = "toy-model"
data = "rows"

[apis.m]
use = "toy-api"
model = "m"

[apis.checks]
use = "toy-checks"
data = "rows"
"""


@pytest.fixture
def trained(tmp_path):
    profile = write(tmp_path / "toy.toml", PROFILE)
    env = {"HEIRLOOM_PLUGINS": "tests.toys"}
    assert run_heirloom("train", str(profile), env=env).returncode == 0
    return str(profile), env


def test_eval_reports_models_and_evaluated_apis_in_one_table(trained):
    profile, env = trained
    result = run_heirloom("eval", profile, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "precision" in line)
    assert lines[header + 2].split() == ["checks", "0.800", "1.000", "0.889", "4"]
    assert lines[header + 4].split()[:2] == ["micro", "avg"] and lines[header + 4].split()[-1] == "4"
    assert "4 checks passed" in result.stdout and "perfect" in result.stdout  # each component's own report


def test_eval_json_has_models_apis_and_the_summary(trained):
    profile, env = trained
    result = run_heirloom("eval", profile, "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["models"]["m"]["accuracy"] == 1.0 and report["models"]["m"]["version"].endswith("/m@1")
    assert report["apis"]["checks"]["summary"]["tp"] == 4
    assert report["summary"]["rows"] == {"checks": {"precision": 0.8, "recall": 1.0, "f1": 8 / 9, "support": 4}}
    assert report["summary"]["micro_avg"]["precision"] == 0.8 and set(report["summary"]) == {
        "rows",
        "micro_avg",
        "macro_avg",
        "weighted_avg",
    }
    assert "apis.m" not in result.stdout and "m" not in report.get("apis", {})  # apis without checks are skipped


def test_eval_names_pick_components_and_unknown_names_list_the_choices(trained):
    profile, env = trained
    only = json.loads(run_heirloom("eval", profile, "checks", "--json", env=env).stdout)
    assert only["models"] == {} and set(only["apis"]) == {"checks"}
    result = run_heirloom("eval", profile, "chekcs", env=env)
    assert result.returncode == 2  # a name that names nothing (README, exit codes)
    said = " ".join(result.stderr.split())
    assert "has no evaluated component 'chekcs'; did you mean 'checks'? (evaluated components: m, checks)" in said
    trained_typo = run_heirloom("train", profile, "mm", env=env)
    assert trained_typo.returncode == 2 and "has no model 'mm'; did you mean 'm'? (models: m)" in trained_typo.stderr


def test_an_api_whose_optional_source_is_unset_is_left_out_of_eval_not_a_failure(trained):
    """Its optional 'data' unset, the api failed the whole eval (exit 1), the models unevaluated."""
    profile, env = trained
    unset = ("--set", "apis.checks.data=null")
    result = run_heirloom("eval", profile, "--json", *unset, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"]["m"]["accuracy"] == 1.0 and "checks" not in result.stdout
    named = run_heirloom("eval", profile, "checks", *unset, env=env)
    assert named.returncode == 1 and "apis.checks: cannot tell which source its records come from" in named.stderr


def test_eval_of_an_untrained_model_says_why_once(tmp_path):
    """The reason (and what to run) is the command's error, not also a log warning above it; nor is an empty
    line (a transient progress bar where stderr is no terminal)."""
    profile = write(tmp_path / "toy.toml", PROFILE)
    env = {"HEIRLOOM_PLUGINS": "tests.toys"}
    result = run_heirloom("eval", str(profile), env=env)  # where no store is, it makes none (checker h342 F1)
    assert result.returncode == 1 and result.stderr.count("no version trained") == 1, result.stderr
    assert result.stderr.startswith("error: no store yet: "), result.stderr
    write(tmp_path / "other.toml", PROFILE)  # project "other": a store, without toy/m
    assert run_heirloom("train", str(tmp_path / "other.toml"), env=env).returncode == 0
    result = run_heirloom("eval", str(profile), env=env)
    assert result.returncode == 1
    assert result.stderr.count("has no trained version yet") == 1, result.stderr
    said = "error: toy/m has no trained version yet (run heirloom train on this profile)"
    assert result.stderr.startswith(said), result.stderr
    assert run_heirloom("train", str(profile), env=env).returncode == 0
    pinned = run_heirloom("eval", str(profile), "--set", "models.m.serve=9", env=env)  # a typed ref naming nothing
    assert pinned.returncode == 2 and "has no version 9 (latest: toy/m@1)" in pinned.stderr, pinned.stderr
    assert pinned.stderr.startswith("error: --set: models.m.serve: toy/m has no version 9"), pinned.stderr  # F9 (275)
    write(tmp_path / "pinned.toml", f'extends = ["{profile}"]\nproject = "toy"\n[models.m]\nserve = "9"\n')
    pinned = run_heirloom("eval", str(tmp_path / "pinned.toml"), env=env)  # where the value is: as profile check says
    assert pinned.stderr.startswith(f"error: {tmp_path / 'pinned.toml'}: models.m.serve: toy/m has no"), pinned.stderr


def test_an_html_report_path_that_cannot_be_written_is_a_usage_error_naming_it(tmp_path):
    """Before any work, and saying what the path is (once only "not a regular file"); a device or a
    missing folder was exit 1, as if the evaluation had failed, where click's own refusals are exit 2
    (checker 277 F10)."""
    os.mkfifo(tmp_path / "report.html")
    cases = {
        tmp_path / "report.html": "is a FIFO, not a regular file; name a file",
        Path("/dev/full"): "is a device, not a regular file; name a file",
        tmp_path / "missing" / "r.html": f"the folder {tmp_path / 'missing'} does not exist",
    }
    for path, why in cases.items():
        refused = run_heirloom("eval", "minimal", "--html", str(path))
        assert refused.returncode == 2, refused.stderr
        assert f"Invalid value for '--html': {path}{':' * ('folder' in why)} {why}" in refused.stderr
    long = tmp_path / ("f" * 300 + ".html")  # checker 307 F6: exit 1 after the evaluation, the name printed whole
    refused = run_heirloom("eval", "minimal", "--html", str(long))
    assert refused.returncode == 2, refused.stderr
    assert f"Invalid value for '--html': File name too long: {'f' * 80}... (305 characters)\n" in refused.stderr


def test_an_html_report_to_an_open_descriptor_is_refused_not_put_in_its_place(tmp_path):
    """With stdout a file, ``--html /dev/stdout`` passed the checks (it resolves to a regular file) and the
    report's rename put a file in place of the host's ``/dev/stdout`` link (found beside checker h343 F5)."""
    with open(tmp_path / "out.txt", "w") as out:
        for name in ("/dev/fd/1", "/proc/self/fd/1"):  # as /dev/stdout, without risking the host's on a regression
            refused = subprocess.run(
                [*HEIRLOOM, "eval", "minimal", "--html", name],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": pythonpath()},
                timeout=120,
            )
            assert refused.returncode == 2, refused.stderr
            assert f"{name} is an open descriptor of this process, not a file" in refused.stderr


def test_html_to_a_dash_is_refused_not_written_to_a_file_named_dash(trained, tmp_path):
    profile, env = trained
    result = run_heirloom("eval", profile, "--html", "-", env={**env, "PYTHONPATH": pythonpath()}, cwd=tmp_path)
    assert result.returncode == 2
    assert "'-' would be stdout, which has the text report" in result.stderr
    assert not (tmp_path / "-").exists()


def test_html_over_the_store_or_the_profile_it_reads_is_refused(trained, tmp_path):
    """h426 F2: ``--html $HEIRLOOM_HOME/store/index.sqlite`` replaced the store's index with the report, exit 0:
    every stored version was lost."""
    profile, env = trained
    index = Path(os.environ["HEIRLOOM_HOME"]) / "store" / "index.sqlite"
    before = index.read_bytes(), Path(profile).read_bytes()
    for path, why in ((index, f"it is inside {index.parent}, which heirloom"), (profile, f"it is {profile}, which")):
        refused = run_heirloom("eval", profile, "--html", str(path), env=env)
        assert refused.returncode == 2 and f"error: --html {path}: {why}" in refused.stderr, refused.stderr
    assert (index.read_bytes(), Path(profile).read_bytes()) == before
    assert run_heirloom("models", "list", env=env).returncode == 0


def test_labels_the_fonts_lack_are_said_once_a_process_not_warned_twice_a_picture():
    """matplotlib warned per missing glyph, twice a picture (184 lines after 90 ui views); now one
    line says what the boxes are, or none where a font has them."""
    pytest.importorskip("matplotlib", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
    script = (
        "from heirloom.reports import confusion_png\n"
        "labels = ['café ☕ 日本 Ünïcødé', 'a label of forty-four characters, cut short!', 'x']\n"
        "for _ in range(3):\n"
        "    confusion_png({'labels': labels, 'matrix': [[1, 0, 0], [0, 2, 0], [0, 0, 3]]})\n"
    )
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Glyph" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "the confusion-matrix picture draws them as boxes" in line]
    assert said == [] or (len(said) == 1 and "日本" in said[0]), result.stderr
