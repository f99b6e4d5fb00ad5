"""``heirloom data show|stats`` through the real CLI: a tiny hand-written source plugin
(installed as a distribution on PYTHONPATH) and the fhir source of the medical profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, pythonpath, run_heirloom, write

ROWS_PLUGIN = """
import attrs
import heirloom


@attrs.define
class Rows(heirloom.Source):
    count: int = 3

    def records(self, split=None):
        for i in range(self.count):
            side = "test" if i % 3 == 2 else "train"
            if split in (None, side):
                yield {"i": i, "split": side, "text": "row " * 200}

    def fingerprint(self):
        return f"rows-{self.count}"


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("rows", Rows)
"""


@pytest.fixture
def rows(tmp_path) -> dict[str, str]:
    """A one-module plugin distribution (dist-info with an entry point) and a profile using it."""
    site = tmp_path / "site"
    write(site / "heirloom_rows.py", ROWS_PLUGIN)
    info = site / "heirloom_rows-0.1.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: heirloom-rows\nVersion: 0.1.0\n")
    write(info / "entry_points.txt", "[heirloom]\nrows = heirloom_rows\n")
    write(tmp_path / "rows.toml", "[sources.numbers]\nuse = 'rows'\ncount = 7\n\n[sources.other]\nuse = 'rows'\n")
    return {"PYTHONPATH": pythonpath(site), "profile": str(tmp_path / "rows.toml")}


def test_show_prints_records_of_any_source(rows):
    result = run_heirloom("data", "show", rows["profile"], "numbers", "--limit", "2", env=rows)
    assert result.returncode == 0, result.stderr
    assert "numbers record 1" in result.stdout and "numbers record 2" in result.stdout
    assert "numbers record 3" not in result.stdout
    assert "'i': 1" in result.stdout
    assert "2 shown; the source has more" in result.stderr  # a short listing says it is one
    everything = run_heirloom("data", "show", rows["profile"], "numbers", "--limit", "7", env=rows)
    assert "numbers record 7" in everything.stdout and "shown" not in everything.stderr


def test_show_json_prints_one_object_per_line(rows):
    result = run_heirloom(
        "data", "show", rows["profile"], "numbers", "--limit", "0", "--split", "test", "--json", env=rows
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["i"] for line in lines] == [2, 5]
    assert lines[0]["text"] == "row " * 200


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "table"])
def test_show_into_a_pipe_closed_early_stops_quietly(rows, tmp_path, form):
    """``data show ... | head -1`` printed a BrokenPipeError traceback, then blamed the source;
    the table exited 1 (rich's own handling), "it failed" to a pipeline under pipefail."""
    import os
    import subprocess

    from tests.helpers import HEIRLOOM

    write(tmp_path / "many.toml", "[sources.numbers]\nuse = 'rows'\ncount = 20000\n")
    command = [*HEIRLOOM, "data", "show", str(tmp_path / "many.toml"), "numbers", "--limit", "0", *form]
    shown = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **rows}, cwd=REPO
    )
    first = shown.stdout.readline().decode()
    assert json.loads(first)["i"] == 0 if form else "numbers record 1" in first
    shown.stdout.close()  # as head does once it has its line
    said = shown.stderr.read().decode()
    assert shown.wait(60) == 141 and said == "", said


def test_stats_defaults_to_records_per_split(rows):
    result = run_heirloom("data", "stats", rows["profile"], "numbers", "--json", env=rows)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats.pop("fingerprint") and stats == {"records": {"train": 5, "test": 2}}
    table = run_heirloom("data", "stats", rows["profile"], "numbers", env=rows)
    assert table.returncode == 0, table.stderr
    assert "records.train" in table.stdout
    changed = run_heirloom(
        "data", "stats", rows["profile"], "numbers", "--json", "--set", "sources.numbers.count=3", env=rows
    )
    assert json.loads(changed.stdout)["records"] == {"train": 2, "test": 1}  # --set, as train and serve take it


def test_unknown_source_or_split_is_a_usage_error(rows):
    result = run_heirloom("data", "show", rows["profile"], "numbrs", env=rows)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert (
        message.startswith("error: profile")
        and "has no source 'numbrs'; did you mean 'numbers'? (sources: numbers, other)" in message
    )
    result = run_heirloom("data", "show", rows["profile"], "numbers", "--split", "dev", env=rows)
    assert result.returncode == 2
    assert "no split 'dev' (splits: train, test)" in " ".join(result.stderr.split())
    result = run_heirloom("data", "show", rows["profile"], "numbers", "--limit", "9" * 23, env=rows)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr  # not islice's traceback
    assert result.stdout == run_heirloom("data", "show", rows["profile"], "numbers", "--limit", "0", env=rows).stdout
    refused = run_heirloom("data", "show", rows["profile"], "numbers", "--limit", "-1", env=rows)
    assert refused.returncode == 2 and "Invalid value for '--limit'" in refused.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("keys", "new", "", "--name", "x"),
        ("data", "fetch", "banking77", "--to", ""),
        ("data", "list", "--to", ""),
        ("feedback", "export", "finance-sentiment", "--output", ""),
        ("eval", "finance-sentiment", "--html", ""),
        ("models", "list", "--store", ""),
        ("serve", "finance-sentiment", "--curve-secret", ""),
        ("new", "plugin", "x", "--dir", ""),
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_working_directory(tmp_path, command):
    """``Path("")`` is the working directory: ``keys new ""`` wrote keys there (exit 0) and
    ``data fetch --to ""`` fetched there; every path option and argument refuses ``""`` as
    ``models backup ""`` did (an unset variable in a script)."""
    result = run_heirloom(*command, cwd=tmp_path, env={"HEIRLOOM_HOME": str(tmp_path / "home")})
    assert result.returncode == 2, result.stderr
    assert "is empty (an unset variable?): name a" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_heirloom_home_that_is_a_file_is_named(tmp_path):
    """Was: 'cannot use HOME/store as a store: HOME/store/blobs: Not a directory', naming no variable."""
    (tmp_path / "homefile").write_text("")
    refused = run_heirloom("models", "list", env={"HEIRLOOM_HOME": str(tmp_path / "homefile")})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: HEIRLOOM_HOME={tmp_path / 'homefile'} is not a folder" in refused.stderr


@pytest.mark.parametrize("variable", ["HEIRLOOM_STORE", "HEIRLOOM_DATA"])
def test_a_store_or_data_variable_set_but_empty_or_naming_a_file_is_refused_alike_by_every_command(tmp_path, variable):
    """``HEIRLOOM_DATA=`` (an unset variable in a script) meant ``$HEIRLOOM_HOME/data`` unsaid, and one naming a file
    said ``path does not exist: FILE/financial-phrasebank``; a ``HEIRLOOM_STORE`` naming a file exited 2 from ``models
    list`` but 1 from ``profile check`` and ``train``, naming no variable (checker 305 F8, F14)."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "loop").symlink_to("loop")  # profile check said ok, train exited 1 (checker v13 F4)
    empty, filed, looped = (
        f"error: {variable} is set but empty (an unset variable?)",
        f"error: {variable}=afile is not a folder",
        f"error: {variable}=loop is a symbolic link loop: set it to",
    )
    for command in (("models", "list"), ("profile", "check", "minimal"), ("train", "minimal")):
        for value, said in (("", empty), ("afile", filed), ("loop", looped)):
            refused = run_heirloom(*command, cwd=tmp_path, env={variable: value})
            assert refused.returncode == 2 and refused.stderr.startswith(said), (command, value, refused.stderr)


def test_bad_profile_is_reported_like_profile_check(tmp_path):
    profile = write(tmp_path / "bad.toml", "[sources.x]\nuse = 'nope'\n")
    result = run_heirloom("data", "stats", str(profile), "x")
    check = run_heirloom("profile", "check", str(profile))
    assert result.returncode == check.returncode == 2
    assert result.stderr == check.stderr and "unknown source type 'nope'" in result.stderr


# -- the fhir source of the medical profiles (23 patients: medical-small) ------------------------
def test_fhir_stats_json(data_dir):
    result = run_heirloom("data", "stats", "medical-small", "patients", "--json", env={"HEIRLOOM_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["records"] == 23
    assert stats["resources"]["Observation"] == 2033 and stats["resources"]["Patient"] == 23
    assert stats["unresolved_references"] == 0
    assert stats["errors"] == {"on_error": "fail", "skipped_files": 0, "skipped_resources": 0, "messages": []}


def test_fhir_show_json(data_dir):
    result = run_heirloom(
        "data", "show", "medical-small", "patients", "--limit", "2", "--json", env={"HEIRLOOM_DATA": str(data_dir)}
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    assert {"id", "birth_date", "gender", "timeline", "text", "codes"} <= records[0].keys()
    assert records[0]["timeline"][0]["kind"] == "encounter"


def _truncated_profile(data_dir: Path, tmp_path: Path, on_error: str) -> tuple[Path, Path]:
    folder = tmp_path / "set"
    folder.mkdir()
    bundles = sorted((data_dir / "fhir-synthea-smart-r4" / "bundles").glob("*.json"))
    for path in bundles[1:4]:
        (folder / path.name).symlink_to(path)
    victim = folder / bundles[0].name
    victim.write_bytes(bundles[0].read_bytes()[:1000])
    profile = write(
        tmp_path / "cut.toml",
        f'extends = ["{REPO / "profiles" / "medical.toml"}"]\n\n'
        f'[sources.patients]\npath = "{folder}"\non_error = "{on_error}"\n',
    )
    return profile, victim


def test_fhir_truncated_bundle_fails_naming_the_file(data_dir, tmp_path):
    profile, victim = _truncated_profile(data_dir, tmp_path, "fail")
    result = run_heirloom("data", "stats", str(profile), "patients", env={"HEIRLOOM_DATA": str(data_dir)})
    assert result.returncode == 1
    assert f"error: {victim}: malformed JSON" in result.stderr.replace("\n", "")


def test_fhir_truncated_bundle_is_skipped_and_counted(data_dir, tmp_path):
    profile, victim = _truncated_profile(data_dir, tmp_path, "skip")
    result = run_heirloom("data", "stats", str(profile), "patients", "--json", env={"HEIRLOOM_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["records"] == 3
    assert stats["errors"]["skipped_files"] == 1
    assert stats["errors"]["messages"][0].startswith(f"{victim}: malformed JSON")


def test_a_plugin_both_installed_and_named_in_heirloom_plugins_loads_once(rows):
    """PLUGINS.md's development shortcut next to an installed copy of the same package was a
    raw pluggy 'already registered under a different name' for every command."""
    env = {**rows, "HEIRLOOM_PLUGINS": "heirloom_rows"}
    result = run_heirloom("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    listed = [p for p in json.loads(result.stdout) if "rows" in p["provides"]["source"]]
    assert [(p["name"], p["status"]) for p in listed] == [("rows", "loaded")]
    assert run_heirloom("data", "show", rows["profile"], "numbers", env=env).returncode == 0


def test_a_data_error_at_line_100_keeps_its_line_number(tmp_path):
    """rich read ``:100`` of ``train.csv:100:`` as an emoji code: the error said ``train.csv💯``, the
    line the user had to find gone (``:1234`` too; and a label ``:smile:`` in train's report)."""
    rows = ["text,label"] + [f"text number {i},{'a' if i % 2 else 'b'}" for i in range(1, 150)]
    rows[99] = "text number 99,"
    write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    write(tmp_path / "p.toml", f"[sources.s]\nuse = 'csv'\ntrain = '{tmp_path / 'train.csv'}'\n")
    result = run_heirloom("data", "stats", str(tmp_path / "p.toml"), "s", env={})
    assert result.returncode != 0
    assert f"{tmp_path / 'train.csv'}:100: the 'label' column is empty or blank" in result.stderr
