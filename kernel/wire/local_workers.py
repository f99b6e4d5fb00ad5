"""The broker's local worker processes: spawned with a share of the cores, respawned with backoff.

Kept apart from the broker's message loop: this is process bookkeeping (who runs, who
exited, how soon to restart one that keeps dying), the broker only hears which pids left.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from heirloom.core.errors import HeirloomError
from heirloom.wire.cores import CPU_SHARE_ENV, PARENT_ENV, available_cores

log = logging.getLogger("heirloom.wire.broker")
#: The secret a local worker's heartbeats carry, so that the broker knows its own processes.
TOKEN_ENV = "HEIRLOOM_LOCAL_WORKER"
#: Why a local worker was counted lost before its exit: its start failed (its exit 1 is that failure).
START_FAILED = "its start failed"
#: This worker's secret once taken out of its environment (``take_token``).
_TAKEN: dict[str, str] = {}


def take_token() -> None:
    """Move the secret out of the environment as a worker starts: nothing it starts (a
    plugin's subprocess) inherits it; ``local_token`` reads it from here."""
    token = os.environ.pop(TOKEN_ENV, "")
    if token:
        _TAKEN["local"] = token


def local_token() -> dict[str, str]:
    """``{"local": secret}`` for a worker its broker spawned, else ``{}``."""
    return dict(_TAKEN)


#: Local workers per core at most: each is a CPU-bound process with its own copy of the models, so
#: more only compete for the cores (``--workers 100000``, a typo, spawned 1,146 and ran the machine
#: out of memory). Workers on other hosts join with ``heirloom worker --connect``.
WORKERS_PER_CORE = 8
RESPAWN_BACKOFF_MAX = 30.0
#: A worker that lived this long before exiting starts its failure count afresh.
STABLE_SECONDS = 60.0


def too_many_workers(count: int) -> str | None:
    """Why ``count`` local workers cannot run on this host (``serve`` and ``profile check`` say it), or None."""
    if count <= (most := WORKERS_PER_CORE * available_cores()):
        return None
    return (
        f"at most {most} local ones on this machine's {available_cores()} core(s) ({WORKERS_PER_CORE} per core: "
        "more only compete for the cores); workers on other hosts join with heirloom worker --connect"
    )


class LocalProcess:
    __slots__ = ("failures", "process", "started")

    def __init__(self, process: subprocess.Popen, started: float, failures: int = 0):
        self.process = process
        self.started = started
        self.failures = failures


#: Exit codes of a worker that stopped cleanly: 0, or the SIGTERM it got while already exiting.
STOPPED = (0, -signal.SIGTERM)


class LocalWorkers:
    """``count`` ``heirloom worker`` processes on this host, each running ``argv``."""

    def __init__(self, argv: list[str], count: int):
        if too_many := too_many_workers(count):
            raise HeirloomError(f"{count} workers (--workers, [server] workers): {too_many}")
        self.argv = argv
        self.count = count
        self.processes: list[LocalProcess] = []
        #: ``(when, failures so far)`` of each replacement waiting out its backoff: the
        #: broker's loop keeps answering meanwhile, and a drain cancels them.
        self.respawns: list[tuple[float, int]] = []
        #: Whether a worker stopping for good (not to be replaced) exited other than 0.
        self.unclean = False
        #: Given to each process in its environment: its messages carry it (``vouches``).
        self.token = secrets.token_hex(16)
        #: Workers whose system failed to start (the broker said so): their exit 1 is that
        #: failure, already reported, not an unclean stop of the daemon.
        self.failed_starts: set[int] = set()

    def start(self, stopping: Callable[[], bool]) -> None:
        """Spawn the workers, fewer once ``stopping()`` (a stop signal while they spawn: 1,079 more
        were spawned after one, for six minutes)."""
        for _ in range(self.count):
            if stopping():
                return
            self._spawn()

    def pids(self) -> set[int]:
        return {local.process.pid for local in self.processes}

    def reap(self, now: float, *, respawn: bool) -> list[tuple[int, int, str]]:
        """``(pid, exit code, reason)`` of each process that exited since the last call; each is replaced
        when ``respawn`` (not while draining), after a backoff if it keeps dying young."""
        exited = []
        for local in list(self.processes):
            code = local.process.poll()
            if code is None:
                continue
            self.processes.remove(local)
            exited.append((local.process.pid, code, f"worker pid {local.process.pid} exited with {code}"))
            self.unclean |= not respawn and code not in STOPPED and not self._failed_start(local.process.pid, code)
            self.failed_starts.discard(local.process.pid)
            if respawn:
                failures = 0 if now - local.started > STABLE_SECONDS else local.failures + 1
                delay = min(RESPAWN_BACKOFF_MAX, 0.5 * 2 ** (failures - 1)) if failures > 1 else 0.0
                if delay:
                    log.warning("worker keeps dying; respawning in %.1fs", delay)
                self.respawns.append((now + delay, failures))
        due = [entry for entry in self.respawns if entry[0] <= now] if respawn else []
        self.respawns = [entry for entry in self.respawns if entry not in due] if respawn else []
        for _, failures in due:
            self._spawn(failures)
        return exited

    def _failed_start(self, pid: int, code: int | None) -> bool:
        """Whether ``pid`` exited 1 after saying its start failed (a crash after it, -11, is no such exit)."""
        return code == 1 and pid in self.failed_starts

    def vouches(self, said: dict[str, Any]) -> bool:
        """Whether a heartbeat or GONE message ``said`` comes from one of these processes: it
        carries their secret (given in their environment) and one of their pids. A peer on the
        worker endpoint naming a local pid (``_ready`` shows them) got the broker to kill that
        process once it fell silent; a remote worker of the same pid (another host, or container)
        is no local process either."""
        token = said.get("local")
        return isinstance(token, str) and hmac.compare_digest(token, self.token) and said.get("pid") in self.pids()

    def kill(self, pid: int) -> bool:
        """SIGKILL the local process ``pid`` (a hung worker); ``reap`` then reports and replaces
        it. False when ``pid`` is none of them (a worker on another host)."""
        for local in self.processes:
            if local.process.pid == pid:
                local.process.kill()
                return True
        return False

    def stop(self, grace: float, meanwhile: Callable[[], None]) -> bool:
        """SIGTERM every process, then SIGKILL those still running after ``grace`` seconds;
        True when every worker that stopped since the drain began exited 0. ``meanwhile`` is
        called over and over as they stop (it must return within a fraction of a second)."""
        for local in self.processes:
            if local.process.poll() is None:
                local.process.terminate()
        until = time.monotonic() + grace
        while any(local.process.poll() is None for local in self.processes) and time.monotonic() < until:
            meanwhile()
        for local in self.processes:
            try:
                local.process.wait(timeout=max(0.0, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not exit within %.1f s of SIGTERM; killing it", local.process.pid, grace)
                local.process.kill()
                local.process.wait()
        for local in self.processes:
            if local.process.returncode not in STOPPED and not self._failed_start(
                local.process.pid, local.process.returncode
            ):
                self.unclean = True
                log.warning("worker pid %d exited with %s", local.process.pid, local.process.returncode)
        return not self.unclean

    def _spawn(self, failures: int = 0) -> None:
        # each local worker's share of the cores: N workers each using all of them would
        # oversubscribe the machine (torch threads fighting) and run CPU-bound routes slower
        share = max(1, available_cores() // self.count)
        env = {**os.environ, CPU_SHARE_ENV: str(share), PARENT_ENV: str(os.getpid()), TOKEN_ENV: self.token}
        process = subprocess.Popen([sys.executable, "-m", "heirloom", *self.argv], stdin=subprocess.DEVNULL, env=env)
        self.processes.append(LocalProcess(process, time.monotonic(), failures))
        log.info("spawned worker pid %d", process.pid)
