"""Shared fixtures: every test gets its own HEIRLOOM_HOME; data tests find the real data."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import daemons
from tests.helpers import HEIRLOOM

#: Each test's reports by phase (setup, call, teardown), for fixtures that act on failure.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(autouse=True)
def no_daemon_left_running() -> Iterator[None]:
    """Kill the daemons a test started and left running: one whose assertion failed before its
    ``terminate()`` left the process (a broker, with its workers) up until the session ended.
    Daemons of wider-scoped fixtures, started before this, are theirs to stop."""
    before = len(daemons.STARTED)
    yield
    for daemon in daemons.STARTED[before:]:
        daemon.kill()
    del daemons.STARTED[before:]


@pytest.fixture(scope="session")
def warm_catalog(tmp_path_factory) -> Path:
    """The plugin catalog's cache as ``heirloom plugins`` leaves it, every built-in plugin imported once: what a
    user's home holds after its first command. Seeded into each test's home, a test's first command imports only
    the plugins its profile uses, as a user's later ones do; cold, it imported all of them (0.6 s a test)."""
    home = tmp_path_factory.mktemp("catalog-home")
    unset = {"HEIRLOOM_PLUGINS", "HEIRLOOM_DISABLE_PLUGINS", "HEIRLOOM_LOAD_PLUGINS"}
    env = {name: value for name, value in os.environ.items() if name not in unset} | {"HEIRLOOM_HOME": str(home)}
    listed = subprocess.run([*HEIRLOOM, "plugins", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    (catalog,) = (home / "cache").glob("plugins-*.json")
    return catalog


@pytest.fixture(autouse=True)
def heirloom_home(request, tmp_path_factory, monkeypatch) -> Path:
    """An isolated store and plugin catalog per test, in a home that is there, as a user's is once a command made
    it (the catalog's cache is written only in a home that exists), beside the test's ``tmp_path``, not in it. The
    catalog starts as ``warm_catalog``'s copy, or empty for a test marked ``cold_catalog``."""
    home = tmp_path_factory.mktemp("heirloom-home")
    if request.node.get_closest_marker("cold_catalog") is None:
        catalog = request.getfixturevalue("warm_catalog")
        (home / "cache").mkdir()
        shutil.copy(catalog, home / "cache" / catalog.name)
    monkeypatch.setenv("HEIRLOOM_HOME", str(home))
    monkeypatch.delenv("HEIRLOOM_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("HEIRLOOM_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HEIRLOOM_PLUGINS", raising=False)
    return home


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (HEIRLOOM_DATA). Missing data fails under HEIRLOOM_REQUIRE_DATA=1."""
    root = os.environ.get("HEIRLOOM_DATA")
    if root and Path(root).is_dir():
        return Path(root)
    message = f"real data not found: HEIRLOOM_DATA={root!r} (expected ../shared/data)"
    if os.environ.get("HEIRLOOM_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def support_home(tmp_path_factory, worker_id, data_dir) -> Path:
    """The support profile trained once per run on tests/test_support.py's small slices, with
    the network blocked (a minute or two of CPU); each module serves a copy of it. Under
    xdist the workers share one training: the first to take the lock trains, the others wait
    for it (two trainings at once on two cores cost each other as much as they take)."""
    from tests.test_support import train_small

    if worker_id == "master":
        home = tmp_path_factory.mktemp("support-trained") / "home"
        train_small(home, data_dir)
        return home
    folder = tmp_path_factory.getbasetemp().parent / "support-trained"  # this run's, shared by its workers
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            shutil.rmtree(folder / "home", ignore_errors=True)  # a worker's failed try
            train_small(folder / "home", data_dir)
            (folder / "done").touch()
    return folder / "home"
