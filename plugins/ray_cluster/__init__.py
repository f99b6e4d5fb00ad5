"""The ``ray`` resource manager: serve's workers as Ray actors, training as a Ray task.

Each process keeps the ``local`` manager's threads, device, admission and quotas; what Ray
adds is where ``serve``'s workers run. ray is imported only when workers are placed, so
``profile check`` works (and names the extra) on machines without it. See docs/SCALE.md.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any

import attrs

import heirloom
from heirloom_plugins.local_resources import LocalResources

_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")
EXTRA_HINT = "pip install 'heirloom[ray]'"
#: The most workers a pool without ``max_workers`` keeps (``workers``, ``_scale``): a ``_scale`` of 3,000 stalled the
#: broker (a thread per removed worker) and its refresh (checker h348 F2). ``max_workers`` bounds a pool instead.
MAX_WORKERS = 256


def too_many(count: int) -> str:
    return (
        f"{count} workers is more than {MAX_WORKERS}, the most a ray pool without resources.max_workers keeps "
        "(docs/SCALE.md)"
    )


def _ray_installed(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if importlib.util.find_spec("ray") is None:
        raise ValueError(f"the ray resource manager needs the 'ray' extra, which is not installed: {EXTRA_HINT}")
    if not _ADDRESS.match(value):
        raise ValueError(f"'{attribute.name}' must be auto, local, ray://HOST:PORT or HOST:PORT, got {value!r}")


@attrs.define
class RayResources(LocalResources):
    """Places ``serve``'s workers on a Ray cluster; each worker still enforces the local limits."""

    #: The cluster: ``auto`` (the one this machine belongs to), ``local`` (start one here),
    #: ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (a head's GCS address).
    address: str = attrs.field(default="auto", validator=_ray_installed)
    #: Workers to keep; with ``min_workers``/``max_workers`` the start count, then scaled on
    #: the broker's queue depth (``target_in_flight`` per worker).
    workers: int = attrs.field(default=2, validator=heirloom.at_least(1))
    min_workers: int = attrs.field(default=0, validator=heirloom.at_least(0))
    max_workers: int = attrs.field(default=0, validator=heirloom.at_least(0))
    target_in_flight: int = attrs.field(default=8, validator=heirloom.at_least(1))
    #: What each worker actor reserves on its node.
    num_cpus: float = attrs.field(default=1.0, validator=heirloom.at_least(0))
    num_gpus: float = attrs.field(default=0.0, validator=heirloom.at_least(0))
    memory_mb: int = attrs.field(default=0, validator=heirloom.mebibytes(zero_allowed=True))
    #: Times Ray restarts a worker whose actor or node died (-1: without end).
    max_restarts: int = attrs.field(default=3, validator=heirloom.at_least(-1))
    #: ``spread``: one worker per node where possible; ``pack``: fill a node first.
    placement: str = attrs.field(default="spread", validator=attrs.validators.in_(("spread", "pack")))

    def __attrs_post_init__(self) -> None:
        if not self.max_workers and self.workers > MAX_WORKERS:
            raise ValueError(f"'workers': {too_many(self.workers)}")
        if bool(self.min_workers) != bool(self.max_workers):  # said at the key set: the other's default read as
            given, other = ("min_workers", "max_workers") if self.min_workers else ("max_workers", "min_workers")
            raise ValueError(f"'{given}' needs '{other}' too (set both to scale, or neither)")  # refused (h430 F3)
        if self.max_workers and not (1 <= self.min_workers <= self.workers <= self.max_workers):
            raise ValueError(
                f"need 1 <= min_workers <= workers <= max_workers, got min_workers = {self.min_workers}, "
                f"workers = {self.workers}, max_workers = {self.max_workers}"
            )

    def run_fit(self, task: Callable[[], heirloom.State]) -> heirloom.State:
        from heirloom_plugins.ray_cluster.cluster import run_on_cluster

        return run_on_cluster(self, task)

    def place_workers(self, argv: list[str]) -> heirloom.WorkerPool:
        from heirloom_plugins.ray_cluster.cluster import RayWorkerPool

        return RayWorkerPool(self, argv)


@heirloom.hookimpl
def heirloom_register_resource_managers(register):
    register("ray", RayResources)
