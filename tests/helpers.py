"""Helpers shared by tests: run the real CLI, write files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEIRLOOM = [sys.executable, "-m", "heirloom"]


def run_heirloom(
    *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``heirloom`` CLI in a subprocess (``env``: more variables; None unsets one)."""
    return subprocess.run(
        [*HEIRLOOM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={name: value for name, value in {**os.environ, **(env or {})}.items() if value is not None},
        cwd=cwd or REPO,
    )


def pythonpath(*folders: Path | str) -> str:
    """A subprocess's PYTHONPATH: ``folders`` (modules a test wrote), the repository (the ``tests``
    package), then this run's own PYTHONPATH, which may point at the heirloom under test (a git
    worktree's): a test replacing it would run the installed heirloom instead."""
    return os.pathsep.join([*map(str, folders), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_log(path: Path, content: bytes) -> Path:
    """A log file written by hand as heirloom makes one (0600 in 0700 folders): a writer refuses a log
    others may read (a restore under umask 022 is chmod 600'd first)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o600)
    return path


#: A uid that is neither root nor the tests' user, and has no name here: another local user's files.
FOREIGN_UID = 4242


def foreign_owned(path: Path) -> str:
    """``path`` handed to another local user (FOREIGN_UID), as heirloom names its owner; skips the test unless
    it runs as root (only root can give a file away)."""
    if os.geteuid() != 0:
        pytest.skip("only root can make a file another user's")
    os.chown(path, FOREIGN_UID, FOREIGN_UID, follow_symlinks=False)
    return f"uid {FOREIGN_UID}"


def free_port() -> int:
    """A loopback TCP port that is free right now, below the kernel's ephemeral range (32768 and up): a port
    the kernel handed out was taken again, before the daemon bound it, as the local port of some test's
    outgoing connection (CI: "Address already in use")."""
    import random
    import socket

    for _ in range(200):
        port = random.SystemRandom().randrange(20000, 32000)  # whatever a test seeded
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-31999")


def free_tcp_address() -> str:
    """A loopback tcp:// endpoint on a port that is free right now."""
    return f"tcp://127.0.0.1:{free_port()}"


QUIET_API = """
@attrs.define
class Quiet(heirloom.Api):
    def routes(self):
        return []


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("quiet", Quiet)
"""


def quiet_api_plugin(prelude: str) -> str:
    """A plugin module registering the api type ``quiet`` (no routes) whose import runs
    ``prelude`` first (a slow import, a failing one)."""
    return f"import os, pathlib, time\n\nimport attrs\n\nimport heirloom\n\n{prelude}\n{QUIET_API}"
