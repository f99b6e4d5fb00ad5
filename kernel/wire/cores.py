"""How many cores this process should keep busy: its share when it is one of several workers."""

from __future__ import annotations

import os

#: Set by ``serve --workers N`` for the local workers it spawns: each one's share of the cores.
CPU_SHARE_ENV = "HEIRLOOM_CPU_SHARE"
#: The pid of the broker that spawned a local worker: the worker stops once it is gone (a broker killed by
#: SIGKILL cannot stop its workers itself), and leaves the environment's warnings to it (``heirloom.cli.main``).
PARENT_ENV = "HEIRLOOM_PARENT_BROKER"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_share() -> int:
    """Cores this process should use for compute (torch intra-op threads): all available, or this
    worker's share when a broker spawned it beside others (N workers using every core oversubscribe)."""
    share = os.environ.get(CPU_SHARE_ENV, "")
    cores = available_cores()
    return max(1, min(int(share), cores)) if share.isdigit() and int(share) > 0 else cores
