"""Worker actors on a Ray cluster: Ray places and restarts them; ZeroMQ carries requests.

Each actor runs ``python -m heirloom worker ... --connect BROKER`` as a child process (the
same worker loop as a local worker, with its own main thread for signals), killed with its
actor: the child holds PR_SET_PDEATHSIG, and the actor exits when the child does, so Ray
restarts the pair (up to ``max_restarts``). A worker that vanishes with its node is noticed
by the broker through its lapsed heartbeats, which answers its in-flight requests UNAVAILABLE.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray

import heirloom

if TYPE_CHECKING:
    from heirloom_plugins.ray_cluster import RayResources

log = logging.getLogger("heirloom.ray")

#: Seconds between refreshes of where each worker runs (read by ``_ready``).
REFRESH_S = 1.0
#: Seconds an autoscaling pool waits after a change, and the queue must stay low before a scale-down.
SCALE_COOLDOWN_S = 5.0
SCALE_DOWN_AFTER_S = 30.0
#: Seconds a worker removed by a scale-down may take to finish its requests.
RETIRE_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the actor process dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def connect(config: RayResources) -> bool:
    """Join the configured cluster unless this process has already; True if it joined now."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=config.address, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise heirloom.HeirloomError(
            f"resources.address = {config.address!r}: no Ray cluster answers there ({exc}); start one "
            '(`ray start --head`, docs/SCALE.md), or set address = "local" for a cluster of this host alone'
        ) from None
    return True


def options(config: RayResources) -> dict[str, Any]:
    """What each worker actor or training task reserves on its node."""
    chosen: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus}
    if config.memory_mb:
        chosen["memory"] = config.memory_mb * 2**20
    return chosen


def heirloom_env() -> dict[str, str]:
    """The HEIRLOOM_* settings (home, store, data, plugins) a remote process gets from here."""
    return {key: value for key, value in os.environ.items() if key.startswith("HEIRLOOM_")}


def _in_env(env: dict[str, str], cwd: str, task: Callable[[], Any]) -> Any:
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return task()


def run_on_cluster(config: RayResources, task: Callable[[], Any]) -> Any:
    """Run a training ``task`` as one Ray task with the configured resources; its result
    (the fitted state) comes back here."""
    joined = connect(config)
    try:
        remote = ray.remote(_in_env).options(**options(config), max_retries=0)
        return ray.get(remote.remote(heirloom_env(), os.getcwd(), task))
    finally:
        if joined:
            ray.shutdown()


class WorkerActor:
    """One ``heirloom worker`` child process, supervised inside a Ray actor."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "heirloom", *argv],
            cwd=cwd if os.path.isdir(cwd) else None,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        context = ray.get_runtime_context()
        self.where = {"node_id": context.get_node_id(), "actor_id": context.get_actor_id()}
        self.stopping = False
        threading.Thread(target=self._exit_with_child, daemon=True).start()

    def _exit_with_child(self) -> None:
        code = self.process.wait()
        if self.stopping:
            return  # asked to stop: the pool ends this actor itself
        print(f"heirloom worker pid {self.process.pid} exited with {code}; restarting its actor", flush=True)
        os._exit(1)  # the actor dies with its worker, so Ray restarts both

    def info(self) -> dict[str, Any]:
        return {"pid": self.process.pid, **self.where}

    def stop(self, grace: float) -> None:
        self.stopping = True
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()


class RayWorkerPool(heirloom.WorkerPool):
    """Keeps ``size`` worker actors on the cluster and reports where each one runs."""

    def __init__(self, config: RayResources, argv: list[str]):
        self.config = config
        self.argv = argv
        self._owns_ray = connect(config)
        self._actor = ray.remote(WorkerActor).options(
            **options(config),
            max_restarts=config.max_restarts,
            scheduling_strategy="SPREAD" if config.placement == "spread" else "DEFAULT",
        )
        # the worker's torch threads match what its actor reserved (heirloom.cpu_share())
        self._env = {**heirloom_env(), "HEIRLOOM_CPU_SHARE": str(max(1, math.ceil(config.num_cpus)))}
        self._actors: list[Any] = []
        self._lock = threading.Lock()
        self._placements: dict[int, dict[str, Any]] = {}
        self._changed = 0.0
        self._low_since: float | None = None
        self._closed = threading.Event()
        self.scale(config.workers)
        threading.Thread(target=self._refresh_loop, name="heirloom-ray-placements", daemon=True).start()

    @property
    def size(self) -> int:
        return len(self._actors)

    def scale(self, count: int) -> int:
        if self.config.max_workers:
            count = max(self.config.min_workers, min(self.config.max_workers, count))
        with self._lock:
            while len(self._actors) < count:
                self._actors.append(self._actor.remote(self.argv, os.getcwd(), self._env))
            while len(self._actors) > count:
                threading.Thread(target=self._retire, args=(self._actors.pop(),), daemon=True).start()
        self._changed = time.monotonic()
        log.info("keeping %d ray worker(s)", count)
        return count

    def observe(self, in_flight: int, ready: int) -> None:
        if not self.config.max_workers:
            return
        now = time.monotonic()
        if now - self._changed < SCALE_COOLDOWN_S:
            return
        target = self.config.target_in_flight
        if in_flight > target * self.size and self.size < self.config.max_workers:
            self.scale(self.size + 1)
        elif in_flight < target * (self.size - 1) and self.size > self.config.min_workers:
            self._low_since = self._low_since or now
            if now - self._low_since >= SCALE_DOWN_AFTER_S:
                self._low_since = None
                self.scale(self.size - 1)
        else:
            self._low_since = None

    def _retire(self, actor: Any) -> None:
        """Let the worker drain (the broker stops sending it work), then end its actor for good."""
        with contextlib.suppress(Exception):  # already gone: nothing to drain
            ray.get(actor.stop.remote(RETIRE_GRACE_S), timeout=RETIRE_GRACE_S + 5)
        ray.kill(actor, no_restart=True)

    def placements(self) -> dict[int, dict[str, Any]]:
        return self._placements

    def _refresh_loop(self) -> None:
        while not self._closed.wait(REFRESH_S):
            with self._lock:
                actors = list(self._actors)
            found: dict[int, dict[str, Any]] = {}
            for actor in actors:
                try:
                    info = ray.get(actor.info.remote(), timeout=REFRESH_S)
                except ray.exceptions.ActorDiedError as exc:  # its restarts are used up: Ray gives up on it
                    self._replace(actor, exc)
                    continue
                except Exception:  # noqa: BLE001 - restarting or unreachable: no worker to describe now
                    continue
                found[info.pop("pid")] = {**info, "state": "ALIVE"}
            self._placements = found

    def _replace(self, dead: Any, why: Exception) -> None:
        """Start a new actor in place of one Ray will not restart again, so the pool keeps its size."""
        with self._lock:
            if dead not in self._actors:
                return  # removed meanwhile (a scale-down or close)
            self._actors[self._actors.index(dead)] = self._actor.remote(self.argv, os.getcwd(), self._env)
        first = str(why).strip().splitlines()[0][:200] if str(why).strip() else type(why).__name__
        log.error(
            "a ray worker actor died for good (max_restarts = %d used up: %s); starting a new one",
            self.config.max_restarts,
            first,
        )

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            actors, self._actors = self._actors, []
        stops = [actor.stop.remote(2.0) for actor in actors]
        with contextlib.suppress(Exception):  # a dead actor has nothing left to stop
            ray.get(stops, timeout=5.0)
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if self._owns_ray:
            ray.shutdown()
