"""Real daemon subprocesses for tests: start, wait until ready, stop, read their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from heirloom.wire.client import Client
from tests.helpers import HEIRLOOM, REPO, write

PROFILE = """
[resources]
max_in_flight = 10000

[server]
max_queue = {max_queue}
grace = {grace}

[apis.echo]
use = "echo"

[apis.t]
use = "testing"
"""


#: Every daemon started in this process, in order: conftest kills those a failing test left running.
STARTED: list[Daemon] = []


class Daemon:
    """``heirloom serve`` in a subprocess on an ipc:// endpoint in a temp folder."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        profile: str | None = None,
        max_queue: int = 1024,
        grace: float = 10,
        env: dict[str, str] | None = None,
        address: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ):
        self.address = address or f"ipc://{tmp}/heirloom.sock"
        profile_path = write(tmp / "daemon.toml", profile or PROFILE.format(max_queue=max_queue, grace=grace))
        self.log_path = tmp / "daemon.log"
        self.process = subprocess.Popen(
            [*HEIRLOOM, "serve", str(profile_path), "--bind", self.address, *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("w"),
            cwd=REPO,
            env={**os.environ, "HEIRLOOM_PLUGINS": "tests.testing_api", **(env or {})},
            preexec_fn=preexec_fn,
        )
        STARTED.append(self)

    def client(self, **kwargs) -> Client:
        return Client(self.address, **kwargs)

    def wait_ready(self, timeout: float = 30.0, **client_kwargs) -> None:
        deadline = time.monotonic() + timeout
        with self.client(timeout=1.0, **client_kwargs) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.call("_ready")["ready"]:
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.1)
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_logged(self, said: str, timeout: float = 30.0) -> None:
        """Until the daemon's log holds ``said`` (a hot swap it refused, say); fails with the log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while said not in self.log():
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
