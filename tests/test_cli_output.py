"""The CLI's own output where stdout cannot take it, through real subprocesses: a reader that went away, a full
disk, an encoding that cannot write every character, a closed stdout. None is a plugin's failure (checker h342)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import heirloom
from tests.helpers import HEIRLOOM, REPO, pythonpath, run_heirloom, write

#: A source whose records and counts hold letters ASCII and latin-1 cannot write, and the toys' model.
ACCENTS = """
import attrs
import heirloom


@attrs.define
class Accents(heirloom.Source):
    def records(self, split=None):
        for i, side in enumerate(["train", "train", "test"]):
            if split in (None, side):
                yield {"i": i, "split": side, "text": "A\\u00f1o caf\\u00e9 \\u2026 \\U0001f600"}

    def stats(self):
        return {"se\\u00f1al \\u2192": 3}

    def fingerprint(self):
        return "f1" * 32


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("accents", Accents)
"""
PROFILE = 'project = "team"\n[sources.rows]\nuse = "accents"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
TEXT = "A\u00f1o caf\u00e9 \u2026 \U0001f600"


@pytest.fixture
def team(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The profile (path) and the environment: its own store, the toys and the accents source."""
    write(tmp_path / "site" / "accents.py", ACCENTS)
    env = {
        "HEIRLOOM_STORE": str(tmp_path / "store"),
        "HEIRLOOM_PLUGINS": "tests.toys,accents",
        "PYTHONPATH": pythonpath(tmp_path / "site"),
    }
    return str(write(tmp_path / "team.toml", PROFILE)), env


def _versions(env: dict[str, str]) -> list[str]:
    listed = run_heirloom("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return [version["ref"] for version in json.loads(listed.stdout)]


def _run(args: list[str], env: dict[str, str], **streams: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEIRLOOM, *args], text=True, env={**os.environ, **env}, cwd=REPO, timeout=120, **streams)


@pytest.mark.parametrize("form", [[], ["--json"]], ids=["report", "json"])
def test_train_into_a_pipe_whose_reader_went_away_stops_quietly(team, form):
    """``heirloom train P | head -0``: exit 141 as every other command, nothing more on stderr, and the version is
    stored; it printed two tracebacks and "training models.m (toy-model, plugin ...) failed: BrokenPipeError",
    exit 1, after storing it (F5)."""
    profile, env = team
    read, written = os.pipe()
    os.close(read)  # the reader is gone before train writes its report
    try:
        result = _run(["train", profile, *form], env, stdout=written, stderr=subprocess.PIPE)
    finally:
        os.close(written)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "failed" not in result.stderr and "error" not in result.stderr
    assert _versions(env) == ["team/m@1"]


@pytest.mark.parametrize(
    "args",
    [["train", "{profile}"], ["train", "{profile}", "--json"], ["data", "show", "{profile}", "rows", "--json"]],
    ids=["train", "train-json", "data-show"],
)
def test_a_full_disk_under_stdout_is_one_line_naming_stdout_not_a_plugin(team, args):
    """``>/dev/full``: one line saying stdout could not be written, exit 1; it was a traceback and the model's (or
    the source's) plugin named as the one that failed (F12)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    profile, env = team
    with open("/dev/full", "w") as full:
        result = _run([arg.format(profile=profile) for arg in args], env, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "failed" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == "error: cannot write the output to stdout: No space left on device"


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_stdout_that_cannot_encode_a_record_shows_it_escaped(team, encoding):
    """PYTHONIOENCODING=ascii or latin-1: ``data show`` and ``data stats`` print, exit 0, the letters stdout cannot
    write escaped; ``--json`` stays JSON, with the same text. They raised UnicodeEncodeError with a traceback, and
    ``data show`` blamed the source's plugin (F2)."""
    profile, env = team

    def run(*args: str) -> str:
        result = _run([*args], {**env, "PYTHONIOENCODING": encoding}, capture_output=True, encoding=encoding)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    lines = run("data", "show", profile, "rows", "--json")
    assert lines.isascii(), lines  # latin-1's own byte for ñ failed UTF-8 readers, which RFC 8259 asks (h407 F5)
    assert [json.loads(line)["text"] for line in lines.splitlines()] == [TEXT] * 3
    assert json.loads(run("data", "stats", profile, "rows", "--json")) == {
        "se\u00f1al \u2192": 3,
        "fingerprint": "f1" * 32,
    }
    shown, counted = run("data", "show", profile, "rows"), run("data", "stats", profile, "rows")
    written = "\u00f1" if encoding == "latin-1" else "\\xf1"  # what the encoding can write stays as it is
    assert f"A{written}o" in shown and "\\u2026 \\U0001f600" in shown
    assert f"se{written}al \\u2192" in counted
    assert f"fingerprint {'f1' * 32}" in counted.splitlines()  # whole, in a pipe 80 wide: cut with '…' (F10)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "cp1252"])
def test_json_on_a_stdout_of_a_wide_encoding_is_utf_8_bytes(team, encoding):
    """v25 F3: under PYTHONIOENCODING=utf-16 ``--json`` wrote UTF-16 (a mark, NUL bytes), which no JSON reader
    takes; it writes ASCII bytes, each character past ASCII as its escape, whatever stdout's encoding."""
    profile, env = team
    result = subprocess.run(
        [*HEIRLOOM, "data", "stats", profile, "rows", "--json"],
        env={**os.environ, **env, "PYTHONIOENCODING": encoding},
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii(), result.stdout[:80]
    assert json.loads(result.stdout.decode())["se\u00f1al \u2192"] == 3


@pytest.mark.parametrize(
    "args",
    [["train", "{profile}", "--json"], ["train", "{profile}"], ["data", "stats", "{profile}", "rows", "--json"]],
    ids=["train-json", "train", "data-stats-json"],
)
def test_a_closed_stdout_is_an_error_and_no_json_on_stderr(team, args):
    """``heirloom ... >&-``: exit 1 saying stdout is closed, as ``echo hi >&-`` fails; ``--json`` went to stderr,
    into the log, exit 0, and the report was dropped unsaid (F3)."""
    profile, env = team
    command = " ".join(map(repr, [*HEIRLOOM, *(arg.format(profile=profile) for arg in args)]))
    result = subprocess.run(
        f"exec {command} >&-",
        shell=True,
        text=True,
        capture_output=False,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == "error: cannot write the output to stdout: stdout is closed"
    assert '"models"' not in result.stderr and '"fingerprint"' not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store holding team/m@1 and @2 (the toys' model), trained once for the commands below."""
    folder = tmp_path_factory.mktemp("trained")
    write(folder / "site" / "accents.py", ACCENTS)
    env = {"HEIRLOOM_STORE": str(folder / "store")}
    plugins = {"HEIRLOOM_PLUGINS": "tests.toys,accents", "PYTHONPATH": pythonpath(folder / "site")}
    profile = str(write(folder / "team.toml", PROFILE))
    for _ in range(2):
        assert _run(["train", profile], {**env, **plugins}, capture_output=True).returncode == 0
    return env


#: Commands that printed with click.echo: under ``>&-`` they exit 0 having said nothing (promote's move, backup's
#: copy, keys new's files made with no word of it); under ``>/dev/full`` the older ``error: No space left on
#: device`` (checker v8 F3). ``{tmp}``: a folder of the case's own.
ECHOING = {
    "models-history": ["models", "history", "team/m"],
    "models-promote": ["models", "promote", "team/m@1", "closedout"],
    "models-gc-dry-run": ["models", "gc", "--keep", "1", "--dry-run"],
    "models-backup": ["models", "backup", "{tmp}/backup"],
    "keys-new": ["keys", "new", "{tmp}/keys"],
    "new-plugin": ["new", "plugin", "heirloom-closedout", "--dir", "{tmp}/plugin"],
    "medical-drug": ["medical", "drug", "amoxicillin"],
    "medical-drug-json": ["medical", "drug", "amoxicillin", "--json"],
}


@pytest.mark.parametrize("stdout", ["closed", "full"])
@pytest.mark.parametrize("case", list(ECHOING))
def test_commands_printing_lines_say_their_stdout_cannot_be_written(trained, tmp_path, case, stdout):
    """Every command's own output that cannot be written is one line naming stdout, exit 1, as README's exit code
    1 says; what the command did before is kept (the alias moved, the backup and the keys written)."""
    if stdout == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    command = [*HEIRLOOM, *(arg.format(tmp=tmp_path) for arg in ECHOING[case])]
    environment = {**os.environ, **trained}
    if stdout == "closed":
        result = subprocess.run(
            f"exec {' '.join(map(repr, command))} >&-",
            shell=True,
            text=True,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=REPO,
            timeout=120,
        )
        said = "stdout is closed"
    else:
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                command, text=True, stdout=full, stderr=subprocess.PIPE, env=environment, cwd=REPO, timeout=120
            )
        said = "No space left on device"
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"error: cannot write the output to stdout: {said}"], result.stderr
    if case == "models-promote":
        shown = _run(["models", "show", "team/m@closedout", "--json"], trained, capture_output=True)
        assert json.loads(shown.stdout)["version"] == 1, shown.stderr
    if case == "keys-new":
        assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == ["heirloom.key", "heirloom.key_secret"]


LAZY_GROUP_PLUGIN = """
import click
import heirloom


class Lazy(click.Group):
    def list_commands(self, ctx):
        return ["sub"]

    def get_command(self, ctx, name):
        return click.Command("sub", help="Built on demand.", callback=lambda: None) if name == "sub" else None


@heirloom.hookimpl
def heirloom_register_commands(cli):
    cli.add_command(Lazy("lazy", help="A group that builds its subcommands on demand."))
"""


@pytest.mark.parametrize("stdout", ["closed", "full", "gone"])
@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["-h"],
        ["models", "--help"],
        ["train", "--help"],
        ["models", "list", "-h"],
        ["lazy", "sub", "--help"],  # a plugin's group building its subcommands in get_command (checker v10 F1)
    ],
)
def test_version_and_help_follow_the_readmes_exit_codes_where_stdout_cannot_take_them(tmp_path, args, stdout):
    """``--version`` and ``--help`` skipped the CLI's stdout writer (checker v9 F4): exit 0 saying nothing under
    ``>&-``, the older ``error: No space left on device`` under ``>/dev/full``, and ``--version`` exit 1 without a
    word when the reader went away. Now README's exit codes: 1 with the one line naming stdout, or 141 quietly."""
    if stdout == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    command = [*HEIRLOOM, *args]
    environment = {**os.environ, "HEIRLOOM_HOME": str(tmp_path / "home")}
    if args[0] == "lazy":
        (tmp_path / "lazy_group_plugin.py").write_text(LAZY_GROUP_PLUGIN)
        environment |= {"PYTHONPATH": str(tmp_path), "HEIRLOOM_PLUGINS": "lazy_group_plugin"}
    if stdout == "closed":
        run = {"args": f"exec {' '.join(map(repr, command))} >&-", "shell": True}
        result = subprocess.run(**run, text=True, stderr=subprocess.PIPE, env=environment, cwd=REPO, timeout=120)
    else:
        read, write_end = os.pipe()
        os.close(read)  # the reader went away before a byte was written
        target = open("/dev/full", "w") if stdout == "full" else os.fdopen(write_end, "w")  # noqa: SIM115
        with target:
            result = subprocess.run(
                command, text=True, stdout=target, stderr=subprocess.PIPE, env=environment, cwd=REPO, timeout=120
            )
        if stdout == "full":
            os.close(write_end)
    if stdout == "gone":
        assert (result.returncode, result.stderr) == (141, ""), result.stderr
        return
    said = "stdout is closed" if stdout == "closed" else "No space left on device"
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"error: cannot write the output to stdout: {said}"], result.stderr
    shown = subprocess.run(command, text=True, capture_output=True, env=environment, cwd=REPO, timeout=120)
    assert shown.returncode == 0 and shown.stdout.startswith(("heirloom, version", "Usage: ")), shown.stderr


def test_help_and_mistakes_say_what_the_docs_say(tmp_path):
    """h383: --help hid the range a duration takes and the profile's [server] workers default; a mistyped split or
    kind named no closest value; ``models history P/M@ALIAS`` dropped the alias, unsaid."""
    serve, call = (" ".join(run_heirloom(command, "--help").stdout.split()) for command in ("serve", "call"))
    assert "[0<x<=86400]" in serve and "default: [server] workers, else 1" in serve
    assert "[default: 10.0; 0<x<=86400]" in call
    kinds = run_heirloom("new", "plugin", "heirloom-zzq", "--kinds", "modle", "--dir", str(tmp_path / "p"))
    assert kinds.returncode == 2 and "got 'modle' ('modle'; did you mean 'model'?)" in kinds.stderr
    heirloom.ArtifactStore(tmp_path / "store")
    history = run_heirloom("models", "history", "team/m@production", "--store", str(tmp_path / "store"))
    said = "'team/m@production': history takes PROJECT/MODEL, every move of its aliases; for one alias's moves: "
    assert history.returncode == 2 and f"{said}team/m --alias production" in history.stderr, history.stderr
    version = run_heirloom("models", "history", "team/m@3", "--store", str(tmp_path / "store"))  # no --alias 3 (v18)
    assert version.returncode == 2 and "history takes PROJECT/MODEL, every move of its aliases\n" in version.stderr


def test_a_mistyped_split_names_the_closest(data_dir):
    shown = run_heirloom("data", "show", "finance-sentiment", "news", "--split", "tset")
    said = "error: source 'news' has no split 'tset'; did you mean 'test'? (splits: train, validation, test)"
    assert shown.returncode == 2 and said in shown.stderr, shown.stderr


@pytest.mark.parametrize("columns", ["0", "3"])
def test_a_terminal_width_of_0_or_a_few_columns_still_prints_every_table(columns):
    """h409 F1: ``COLUMNS=0`` (a script's ``$(tput cols)`` where no terminal is sized) printed every table and
    report as nothing, exit 0, and 1 to 5 columns as empty cells: 0 reads as unset, a few as 40."""
    shown = run_heirloom("profiles", env={"COLUMNS": columns})
    assert shown.returncode == 0 and "finance-sentiment" in shown.stdout, shown.stdout
    assert "finance-sentiment" in run_heirloom("profile", "show", "finance-sentiment", env={"COLUMNS": columns}).stdout


def test_a_table_too_wide_to_read_prints_each_row_as_a_block_and_a_roomy_one_as_a_table():
    """h409 F5: at 20 to 40 columns ``profiles`` showed only its first column (the file 2 columns wide,
    ``pr/of/il/es``), ``data list`` left its license empty, and ``models list`` ran past the terminal's edge."""
    narrow = run_heirloom("profiles", env={"COLUMNS": "40"}).stdout
    assert "profile: finance-sentiment\nfile: profiles/finance-sentiment.toml\nfrom: profiles\n" in narrow, narrow
    assert all(len(line) <= 40 for line in narrow.splitlines() if not line.startswith("file: "))
    wide = run_heirloom("profiles", env={"COLUMNS": "100"}).stdout
    assert "profile: " not in wide and "┃ profile" in wide and "profiles/finance-sentiment.toml" in wide
    datasets = run_heirloom("data", "list", env={"COLUMNS": "40"}).stdout
    assert "name: financial-phrasebank" in datasets and "license: " in datasets, datasets


def test_a_name_too_long_for_a_file_is_named_by_its_long_part_not_the_last():
    """h409 F3: ``profile show <300 a's>/x`` said ``File name too long: x... (1 characters)``: the last part, short,
    with a cut mark where nothing was cut; the long part is the one too long."""
    long = "a" * 300
    for command in (["profile", "show", f"{long}/x"], ["profile", "check", f"{long}/sub/y.toml"]):
        refused = run_heirloom(*command)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == f"error: File name too long: {'a' * 80}... (300 characters)\n", refused.stderr


def test_a_reply_larger_than_a_pipe_whose_reader_leaves_exits_141_not_0(tmp_path):
    """h409 F4: ``heirloom call`` of a 170 KB reply into ``head -c 1``: the pipe took 64 KiB, Python's buffered
    write dropped the rest in silence and the call exited 0; a reader that reads on gets every byte."""
    from tests.daemons import Daemon

    daemon = Daemon(tmp_path)
    try:
        daemon.wait_ready()
        call = [*HEIRLOOM, "call", "echo.echo", json.dumps(list(range(20000))), "--connect", daemon.address]
        env = {**os.environ, "PYTHONPATH": pythonpath()}
        left = subprocess.Popen(call, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        left.stdout.read(1)
        left.stdout.close()
        assert left.wait(60) == 141 and left.stderr.read() == b""
        whole = subprocess.run(call, capture_output=True, env=env, timeout=60)
        assert whole.returncode == 0 and json.loads(whole.stdout) == list(range(20000))
    finally:
        assert daemon.terminate() == 0
