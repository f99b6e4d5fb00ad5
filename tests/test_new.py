"""``heirloom new plugin``: from an empty folder to an installed plugin whose own tests pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.helpers import pythonpath, run_heirloom, write

PIP = [sys.executable, "-m", "pip"]


def _build_flags() -> list[str]:
    """Build with the environment's setuptools when it is recent enough (offline, fast)."""
    try:
        major = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if major >= 69 else []


def _its_tests(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The generated plugin's own pytest run, from its folder."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(command, capture_output=True, text=True, cwd=project, env=env, timeout=300)


def _install(folder: Path, site: Path) -> dict[str, str]:
    """Install the project into ``site``, a folder of its own, and return the environment that finds it.

    Installing into this virtualenv showed the plugin, half-written, to every test other pytest
    workers ran at that moment."""
    result = subprocess.run(
        [*PIP, "install", "--quiet", "--no-deps", *_build_flags(), "--target", str(site), str(folder)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return {**os.environ, "PYTHONPATH": pythonpath(site)}


def _plugins(env: dict[str, str]) -> dict[str, dict]:
    listed = run_heirloom("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return {plugin["name"]: plugin for plugin in json.loads(listed.stdout)}


@pytest.mark.parametrize(
    ("kinds", "tests", "provides"),
    [
        ("source,model,api", 8, {"source": ["demo-texts"], "model": ["demo-model"], "api": ["demo-api"]}),
        ("model", 4, {"source": [], "model": ["demo-model"], "api": []}),
        ("api", 3, {"source": [], "model": [], "api": ["demo-api"]}),
    ],
)
def test_a_new_plugin_installs_and_passes_its_own_tests(tmp_path, kinds, tests, provides):
    created = run_heirloom("new", "plugin", "heirloom-demo", "--kinds", kinds, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "heirloom-demo"
    assert (project / "pyproject.toml").is_file() and (project / "heirloom_demo" / "profiles" / "demo.toml").is_file()
    env = _install(project, tmp_path / "site")

    result = _its_tests(project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{tests} passed" in result.stdout

    plugin = _plugins(env)["demo"]
    assert plugin["status"] == "loaded" and plugin["distribution"] == "heirloom-demo"
    assert {kind: plugin["provides"][kind] for kind in provides} == provides
    assert plugin["profiles"] == ["demo"]
    assert run_heirloom("profile", "check", "demo", env=env).returncode == 0
    if "source" in kinds:  # its source reports a user's bad line as theirs: file and line, no traceback
        sample = (project / "heirloom_demo" / "data" / "sample.jsonl").read_text().splitlines()
        write(tmp_path / "bad.jsonl", "\n".join([*sample[:5], '{"text": "bad line"', *sample[5:]]) + "\n")
        tables = '[sources.texts]\nuse = "demo-texts"\npath = "bad.jsonl"\n'
        write(tmp_path / "bad.toml", f'project = "bad"\n{tables}[models.m]\nuse = "demo-model"\ndata = "texts"\n')
        trained = run_heirloom("train", str(tmp_path / "bad.toml"), env={**env, "HEIRLOOM_HOME": str(tmp_path / "h")})
        assert trained.returncode == 1 and "Traceback" not in trained.stderr, trained.stderr
        assert f"error: reading the train split of texts: {tmp_path / 'bad.jsonl'}:6: invalid JSON at column 20" in (
            trained.stderr
        )


def test_a_new_plugins_tests_pass_uninstalled_as_its_readme_says(tmp_path):
    """Run from its folder with HEIRLOOM_PLUGINS (the dev path PLUGINS.md gives), the discovery test failed
    with a bare StopIteration: the plugin is then named by its module, with no distribution."""
    assert run_heirloom("new", "plugin", "heirloom-demo", cwd=tmp_path).returncode == 0
    project = tmp_path / "heirloom-demo"
    command = "PYTHONPATH=. HEIRLOOM_PLUGINS=heirloom_demo pytest"
    assert command in (project / "README.md").read_text()
    env = {**os.environ, "PYTHONPATH": pythonpath(project), "HEIRLOOM_PLUGINS": "heirloom_demo"}
    result = _its_tests(project, env)
    assert result.returncode == 0 and "8 passed" in result.stdout, result.stdout + result.stderr


def test_the_next_line_quotes_a_folder_with_spaces_so_it_pastes_into_a_shell(tmp_path):
    created = run_heirloom("new", "plugin", "heirloom-z", "--dir", "new é dir/x", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    line = next(line for line in created.stdout.splitlines() if line.startswith("next: "))
    assert line == "next: cd 'new é dir/x' && pip install -e '.[test]' && pytest"  # was: cd new é dir/x
    pasted = subprocess.run(["sh", "-c", line.removeprefix("next: ").split(" && ")[0] + " && pwd"], cwd=tmp_path)
    assert pasted.returncode == 0
    (tmp_path / "here").mkdir()
    here = run_heirloom("new", "plugin", "heirloom-z", "--dir", ".", cwd=tmp_path / "here")  # "cd . &&" (h453 F5)
    assert "next: pip install -e '.[test]' && pytest" in here.stdout.splitlines(), here.stdout + here.stderr


def test_it_refuses_a_taken_folder_a_bad_name_and_unknown_kinds(tmp_path):
    (tmp_path / "heirloom-x").mkdir()
    (tmp_path / "heirloom-x" / "keep.txt").write_text("mine")
    taken = run_heirloom("new", "plugin", "heirloom-x", cwd=tmp_path)
    assert taken.returncode == 2 and "heirloom-x exists and is not empty" in taken.stderr
    bad = run_heirloom("new", "plugin", "Heirloom_X", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid plugin name 'Heirloom_X'" in bad.stderr
    digit = run_heirloom("new", "plugin", "heirloom-1x", cwd=tmp_path)  # wrote `class 1xModel` (checker 277 F5)
    assert digit.returncode == 2 and "the part after heirloom- must start with a letter" in digit.stderr
    for unusable in ("import", "a" * 300):  # a keyword module would not parse; a long name is no file name
        refused = run_heirloom("new", "plugin", unusable, cwd=tmp_path)
        assert refused.returncode == 2 and "at most 80 characters, and not a Python keyword" in refused.stderr
    kinds = run_heirloom("new", "plugin", "heirloom-y", "--kinds", "source,modle", cwd=tmp_path)
    assert kinds.returncode == 2 and "expected a comma list of source, model, api" in kinds.stderr
    assert not (tmp_path / "heirloom-y").exists() and not (tmp_path / "Heirloom_X").exists()
    assert not (tmp_path / "heirloom-1x").exists()


def test_it_refuses_a_name_whose_profile_or_types_a_plugin_here_registers(tmp_path):
    """``heirloom-minimal`` scaffolded a package whose profile ``minimal`` the shipped one's name took: two plugins
    registering it made it an error to use, and 2 of the package's own tests failed (checker h301 F3)."""
    shipped = run_heirloom("new", "plugin", "heirloom-minimal", cwd=tmp_path)
    profile = "error: heirloom-minimal would register profile 'minimal', as shipped-profiles (heirloom "
    assert shipped.returncode == 2 and profile in shipped.stderr, shipped.stderr
    env = {"HEIRLOOM_PLUGINS": "tests.toys", "PYTHONPATH": pythonpath()}
    typed = run_heirloom("new", "plugin", "heirloom-toy", "--kinds", "model,api", cwd=tmp_path, env=env)
    types = "would register model type 'toy-model', as tests.toys does; api type 'toy-api', as tests.toys does"
    assert typed.returncode == 2 and types in typed.stderr, typed.stderr
    source = run_heirloom("new", "plugin", "heirloom-toy", "--kinds", "source", cwd=tmp_path, env=env)
    assert source.returncode == 0 and not (tmp_path / "heirloom-minimal").exists(), "the refused wrote nothing"


def test_a_folder_option_refuses_a_device_or_fifo_at_parse_time_naming_it(tmp_path):
    """click refuses a regular file where a folder is needed but let a device or FIFO through:
    ``new plugin --dir /dev/null`` failed late (exit 1), ``data list --to /dev/null`` listed it as
    an empty folder (exit 0), ``keys new FIFO`` said only "File exists" (checker 277 F10, F11)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for command, option in (
        (["new", "plugin", "heirloom-zz", "--dir", "/dev/null"], "'--dir': '/dev/null'"),
        (["data", "list", "--to", str(fifo)], f"'--to': '{fifo}'"),
        (["keys", "new", str(fifo)], f"'DIRECTORY': '{fifo}'"),
    ):
        refused = run_heirloom(*command, cwd=tmp_path)
        assert refused.returncode == 2 and f"{option} is a device, FIFO or socket, not a folder" in refused.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fifo"]


def test_a_folder_option_refuses_a_link_to_nothing_or_a_file_above_naming_it(tmp_path):
    """h426 F3: ``keys new LINK`` and ``new plugin --dir LINK`` (LINK to nothing, or LINK/sub) said "File exists",
    exit 1, of a folder ``ls`` says is not there; a path under a file said "Not a directory"."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("a file")
    links = f"dangling links to {tmp_path / 'nowhere'}, which does not exist"
    for command, option, why in (
        (["keys", "new", "dangling"], "DIRECTORY", links),
        (["keys", "new", "dangling/sub"], "DIRECTORY", links),
        (["new", "plugin", "heirloom-zz", "--dir", "dangling/sub"], "--dir", links),
        (["keys", "new", "afile/x"], "DIRECTORY", "afile is a file, not a folder"),
        (["data", "fetch", "banking77", "--to", "afile/x"], "--to", "afile is a file, not a folder"),
    ):
        refused = run_heirloom(*command, cwd=tmp_path)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 2 and f"Invalid value for '{option}': {why}" in said, refused.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile", "dangling"]


WAREHOUSE = """
import os
import attrs
import heirloom

if os.environ.get("WAREHOUSE_FAIL"):
    raise RuntimeError("the warehouse is closed")


@attrs.define
class Rows(heirloom.Source):
    def records(self, split=None):
        return iter([])

    def fingerprint(self):
        return "rows"


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("wh-texts", Rows)
"""


def test_it_refuses_the_names_of_a_plugin_that_failed_to_load_or_is_left_out_and_an_installed_distribution(
    tmp_path,
):
    """With the installed plugin failing to import, or left out by HEIRLOOM_DISABLE_PLUGINS, a package registering
    its names (and of its very distribution) was created, exit 0: the clash came back as soon as it loaded again, or
    installing the new one replaced it (checker h341 F2)."""
    site = tmp_path / "site"
    write(site / "wh_tools.py", WAREHOUSE)
    info = site / "wh_tools-2.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: wh-tools\nVersion: 2.0\n")
    write(info / "entry_points.txt", "[heirloom]\nwh = wh_tools\n")
    env = {"PYTHONPATH": pythonpath(site)}
    assert run_heirloom("plugins", env=env).returncode == 0  # loaded once: the catalog remembers 'wh-texts'
    said = "would register source type 'wh-texts', as wh (wh-tools 2.0)"
    for why, more in [
        ("(it failed to load this time)", {"WAREHOUSE_FAIL": "1"}),
        ("(left out by HEIRLOOM_DISABLE_PLUGINS=wh-tools)", {"HEIRLOOM_DISABLE_PLUGINS": "wh-tools"}),
    ]:
        made = run_heirloom("new", "plugin", "heirloom-wh", "--kinds", "source", cwd=tmp_path, env={**env, **more})
        assert made.returncode == 2 and f"{said} {why} does" in " ".join(made.stderr.split()), made.stderr
        mine = run_heirloom("new", "plugin", "wh-tools", "--kinds", "api", cwd=tmp_path, env={**env, **more})
        installed = "error: wh-tools is installed here already (wh (wh-tools 2.0)): choose another plugin name"
        assert mine.returncode == 2 and installed in " ".join(mine.stderr.split()), mine.stderr
    assert not (tmp_path / "heirloom-wh").exists() and not (tmp_path / "wh-tools").exists()
    # a library's name: `pip install -e` of the package replaced attrs, and heirloom no longer imported (checker v8)
    for name, what in (("attrs", "the distribution attrs "), ("json", "the module json")):
        made = run_heirloom("new", "plugin", name, "--kinds", "api", cwd=tmp_path)
        assert made.returncode == 2 and f"error: {name} is installed here already ({what}" in made.stderr, made.stderr
        assert not (tmp_path / name).exists()


def test_it_refuses_a_name_whose_entry_point_an_installed_package_has_naming_that_distribution(tmp_path):
    """``heirloom-echo`` scaffolded a package whose entry point ``echo`` was the built-in plugin's: installed, it was
    never loaded, its profile 'no such profile' and one of its own tests failed (checker h354 F1)."""
    for name, short in (("heirloom-echo", "echo"), ("heirloom-text", "text"), ("heirloom-gateway", "gateway")):
        refused = run_heirloom("new", "plugin", name, cwd=tmp_path)
        said = f"error: {name}'s entry point {short!r} is heirloom {version('heirloom')}'s already"
        assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr
        assert not (tmp_path / name).exists()
    site = tmp_path / "site"  # another distribution's, left out by the environment: it has the name all the same
    write(site / "zed_tools-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: zed-tools\nVersion: 1.0\n")
    write(site / "zed_tools-1.0.dist-info" / "entry_points.txt", "[heirloom]\nzed = zed_tools\n")
    env = {"PYTHONPATH": pythonpath(site), "HEIRLOOM_DISABLE_PLUGINS": "zed"}
    refused = run_heirloom("new", "plugin", "heirloom-zed", "--kinds", "api", cwd=tmp_path, env=env)
    said = "error: heirloom-zed's entry point 'zed' is zed-tools 1.0's already (a second one of a name is never loaded)"
    assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr
    assert not (tmp_path / "heirloom-zed").exists()
    # h374 F4: heirloom-heirloom-zed's entry point 'heirloom-zed' would be another plugin's distribution name
    write(site / "heirloom_zed-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: heirloom-zed\nVersion: 1.0\n")
    write(site / "heirloom_zed-1.0.dist-info" / "entry_points.txt", "[heirloom]\nzedd = zed_tools\n")
    refused = run_heirloom("new", "plugin", "heirloom-heirloom-zed", "--kinds", "api", cwd=tmp_path, env=env)
    said = "error: heirloom-heirloom-zed's entry point 'heirloom-zed' is the distribution name of zedd "
    said += "(heirloom-zed 1.0)"
    assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr


def test_a_name_starting_with_test_is_refused(tmp_path):
    """h374 F3: ``tests`` and ``heirloom-test`` made classes pytest took for tests (TestModel: 3 collection warnings)
    and, as ``tests``, a package named like the test folder."""
    for name in ("tests", "heirloom-test", "heirloom-testing-tools"):
        refused = run_heirloom("new", "plugin", name, cwd=tmp_path)
        said = f"error: invalid plugin name {name!r}: a name starting with 'test': its classes (TestModel) would read"
        assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr
        assert not (tmp_path / name).exists()


def test_the_readme_says_heirloom_ui_needs_the_ui_extra_and_aligns_its_comments(tmp_path):
    """Checker h356 F5: the generated README ran ``heirloom ui`` after ``pip install -e '.[test]'`` alone (the plugin
    has no ui extra: heirloom has), and the substituted name moved the comments of its code block out of line."""
    for name in ("heirloom-x", "heirloom-a-much-longer-plugin-name"):
        made = run_heirloom("new", "plugin", name, "--dir", str(tmp_path / name))
        assert made.returncode == 0, made.stderr
        readme = (tmp_path / name / "README.md").read_text()
        block = readme.split("## Try it\n\n```sh\n")[1].split("```")[0].splitlines()
        assert len({line.index("   # ") + 3 for line in block if "   # " in line}) == 1, block
        assert len({line.index("#") for line in block}) == 1, "one column, every line"
        commands = [line.partition("   # ")[0].rstrip() for line in block]
        assert commands.index("pip install 'heirloom[ui]'") == commands.index("heirloom ui") - 1, commands


def test_the_ui_extra_hint_names_the_checkouts_way_only_in_heirlooms_checkout(tmp_path):
    """Checker h356 F5: in a plugin's folder, ``pip install -c constraints.txt -e '.[ui]'`` meant the plugin's own
    (absent) extra and a constraints.txt not there; outside the checkout only ``pip install 'heirloom[ui]'`` is said."""
    probe = [sys.executable, "-c", "from heirloom.reports import extra_hint; print(extra_hint())"]
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    elsewhere = subprocess.run(probe, cwd=tmp_path, capture_output=True, text=True, env=env, check=True)
    assert elsewhere.stdout == "pip install 'heirloom[ui]'\n"
    checkout = subprocess.run(
        probe, cwd=Path(__file__).parent.parent, capture_output=True, text=True, env=env, check=True
    )
    assert checkout.stdout == "pip install -c constraints.txt -e '.[ui]' (or pip install 'heirloom[ui]')\n"
