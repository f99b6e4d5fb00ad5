"""Shared fixtures: every test gets its own HEIRLOOM_HOME; data tests find the real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import daemons

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


@pytest.fixture(autouse=True)
def heirloom_home(tmp_path, monkeypatch) -> Path:
    """An isolated store and plugin catalog per test."""
    home = tmp_path / "heirloom-home"
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
def support_home(tmp_path_factory, data_dir) -> Path:
    """The support profile trained once per session on tests/test_support.py's small slices,
    with the network blocked (about a minute of CPU); each module serves a copy of it."""
    from tests.test_support import train_small

    home = tmp_path_factory.mktemp("support-trained") / "home"
    train_small(home, data_dir)
    return home
