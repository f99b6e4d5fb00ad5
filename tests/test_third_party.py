"""A third-party plugin package written only from docs/PLUGINS.md, really pip-installed.

The package's files are the code blocks of docs/PLUGINS.md, so the docs cannot drift from
what works. A second, deliberately broken package must not break the first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import heirloom
from tests.helpers import REPO, pythonpath, run_heirloom, write

DOCS = (REPO / "docs" / "PLUGINS.md").read_text()


def _block_after(label: str) -> str:
    match = re.search(re.escape(label) + r"\n\n```\w+\n(.*?)```", DOCS, re.S)
    assert match, f"docs/PLUGINS.md has no code block after {label}"
    return match.group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder with both packages pip-installed into it (--target), put on PYTHONPATH."""
    root = tmp_path_factory.mktemp("third-party")
    good = root / "heirloom-shout"
    write(good / "pyproject.toml", _block_after("`pyproject.toml`:"))
    write(good / "heirloom_shout.py", _block_after("`heirloom_shout.py`:"))
    broken = root / "heirloom-broken"
    write(
        broken / "pyproject.toml",
        _block_after("`pyproject.toml`:")
        .replace("heirloom-shout", "heirloom-broken")
        .replace('shout = "heirloom_shout"', 'broken = "heirloom_broken"'),
    )
    write(broken / "heirloom_broken.py", "import heirloom\nimport a_module_that_does_not_exist\n")
    listener = root / "heirloom-listener"  # only listens: uses no component of any profile
    write(
        listener / "pyproject.toml",
        _block_after("`pyproject.toml`:")
        .replace("heirloom-shout", "heirloom-listener")
        .replace('shout = "heirloom_shout"', 'listener = "heirloom_listener"'),
    )
    write(
        listener / "heirloom_listener.py",
        "import os\nimport heirloom\n\n\n@heirloom.hookimpl\ndef heirloom_system_started(system):\n"
        "    with open(os.environ['LISTENED'], 'a') as log:\n"
        "        log.write(','.join(sorted(system.components())) + '\\n')\n",
    )
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(good),
            str(broken),
            str(listener),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _env(site):
    return {"PYTHONPATH": pythonpath(site)}


def test_installed_plugin_is_listed_and_broken_one_is_reported(site):
    result = run_heirloom("plugins", "--json", env=_env(site))
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["shout"]["status"] == "loaded"
    assert plugins["shout"]["distribution"] == "heirloom-shout"
    assert plugins["shout"]["version"] == "0.1.0"
    assert plugins["shout"]["provides"] == {"source": [], "model": [], "api": ["shout"], "resources": []}
    assert plugins["broken"]["status"] == "failed"
    assert plugins["broken"]["distribution"] == "heirloom-broken"
    error = plugins["broken"]["error"]  # where: a NameError or attrs' error at class creation names no file
    assert "a_module_that_does_not_exist" in error and error.endswith(f"(at {site / 'heirloom_broken.py'}:2)")
    assert plugins["echo"]["status"] == "loaded"


def test_installed_component_works_in_a_profile(site, tmp_path):
    profile = write(tmp_path / "loud.toml", '[apis.loud]\nuse = "shout"\nsuffix = "!!"\n')
    check = run_heirloom("profile", "check", str(profile), env=_env(site))
    assert check.returncode == 0, check.stderr
    script = (
        "import sys, heirloom\n"
        f"with heirloom.Kernel().system({str(profile)!r}) as system:\n"
        "    route = system.apis()['loud'].routes()[0]\n"
        "    print(route.name, route.handler('hi'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **_env(site)}, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "shout HI!!"


def test_a_plugin_that_only_listens_hears_every_system_start(site, tmp_path):
    """The catalog imports only the plugins a profile uses: a plugin whose only hook is a
    notification heard the first start after it was installed, and never one again."""
    profile = write(tmp_path / "echo.toml", '[apis.e]\nuse = "echo"\n')
    listened = tmp_path / "listened.txt"
    env = {**os.environ, **_env(site), "LISTENED": str(listened), "HEIRLOOM_HOME": str(tmp_path / "home")}
    script = f"import heirloom\nwith heirloom.Kernel().system({str(profile)!r}):\n    pass\n"
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
        assert run.returncode == 0, run.stderr
    assert listened.read_text().splitlines() == ["e,resources"] * 2


def test_hook_heirloom_register_commands(site):
    result = run_heirloom("shout", "hello", env=_env(site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "HELLO!"
    assert "shout" in run_heirloom("--help", env=_env(site)).stdout


def test_profile_needing_the_broken_plugin_says_so(site, tmp_path):
    profile = write(tmp_path / "p.toml", '[apis.b]\nuse = "broken-api"\n')
    result = run_heirloom("profile", "check", str(profile), env=_env(site))
    assert result.returncode == 2
    assert "apis.b.use: unknown api type 'broken-api'" in result.stderr
    assert "This profile needs it and these plugins failed to load: broken (heirloom-broken 0.1.0)" in result.stderr


def test_the_testing_example_of_the_docs_passes(site, tmp_path):
    """The docs' tests for the shout package, run by pytest with heirloom's pytest plugin."""
    write(tmp_path / "test_shout.py", _block_after("`tests/test_shout.py`, for the two-file package above:"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_shout.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **_env(site)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


GATE_PROFILE = """
project = "gate"
[resources]
use = "gate"
max_in_flight = 1
keep = 1
[sources.s]
use = "toy-source"
rows = 50
[models.m]
use = "toy-model"
data = "s"
[apis.t]
use = "testing"
"""


def test_the_resource_manager_example_of_the_docs_admits_refuses_and_names_its_retention(tmp_path, heirloom_daemon):
    """The docs' minimal manager, loaded the documented dev way (HEIRLOOM_PLUGINS). `train`'s retention line said
    `keep_versions = 1`, the local manager's key, for any manager's retention(): this one's key is `keep`."""
    write(tmp_path / "mods" / "heirloom_gate.py", _block_after("`heirloom_gate.py`, a complete minimal manager:"))
    env = {
        "PYTHONPATH": pythonpath(tmp_path / "mods"),
        "HEIRLOOM_PLUGINS": "heirloom_gate,tests.toys,tests.testing_api",
    }
    profile = write(tmp_path / "gate.toml", GATE_PROFILE)
    said = []
    for rows in (50, 51):  # other data each time: an identical training would reuse the stored version
        result = run_heirloom("train", str(profile), "--set", f"sources.s.rows={rows}", env=env)
        assert result.returncode == 0, result.stderr
        said.append(result.stderr)
    assert "retention" not in said[0] and "keep_versions" not in said[1]
    assert "retention (the newest 1 per model, by resource manager 'gate'): removed gate/m@1, " in said[1]
    assert [a.ref for a in heirloom.ArtifactStore.default().list("gate")] == ["gate/m@2"]

    daemon = heirloom_daemon(profile, env=env)
    futures = [daemon.client.submit("t.slow", {"ms": 500}) for _ in range(3)]  # sent at once: one is in flight
    outcomes = [f.exception() or f.result() for f in futures]
    refused = [o for o in outcomes if isinstance(o, heirloom.RemoteError)]
    assert refused and all(r.code == "RESOURCE_EXHAUSTED" for r in refused), outcomes
    assert all("resources.max_in_flight (1) reached" in r.message for r in refused)
    assert len(refused) < 3  # the first was admitted
    assert daemon.client.call("_stats")["resources"] == {"in_flight": 0, "max_in_flight": 1}
