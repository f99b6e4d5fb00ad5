"""Ready workers serving different versions of one model, said in the broker's log.

A rolling swap (a promote or a new train, each worker's model watcher loading the new version
within its ``[server] reload_interval``) passes through a mix of two versions for a few seconds.
A worker started with another profile, ``--set models.NAME.serve=N`` or another artifact store
serves its own version for good: clients get replies of each version by share, and ``_stats``
``models`` shows only the first ready worker's. The broker warns once ready workers have served
different versions of a model for longer than a rolling swap takes (:func:`swap_grace`), again
every ``REPEAT_SECONDS`` while it lasts, and says when they serve one version again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from heirloom.limits import shortened
from heirloom.wire.broker_workers import Worker

#: Heartbeats past ``[server] reload_interval`` a rolling swap may take before a mix of versions is
#: warned about: each worker finds the new version within one reload interval, loads it (seconds for
#: a large model, longer on a busy host) and says so at its next heartbeat; 30 s with the defaults.
SWAP_HEARTBEATS = 30
#: Seconds between two warnings about one model while its mix of versions lasts.
REPEAT_SECONDS = 600.0
#: Worker pids named per version in a warning (past them, a count).
MAX_PIDS = 10


def swap_grace(heartbeat: float, reload_interval: float) -> float:
    """Seconds a mix of versions may last before it is no rolling swap: SWAP_HEARTBEATS heartbeats
    past one reload interval (``_reload`` and ``reload_interval = 0`` swap every worker at once)."""
    return SWAP_HEARTBEATS * heartbeat + reload_interval


def mixed_versions(ready: Iterable[Worker]) -> dict[str, dict[str, list[int]]]:
    """``{model: {version: [pid, ...]}}`` of each model the ready workers serve in more than one
    version, as their heartbeats' ``models`` say; one version of two digests (two artifact stores)
    is told apart by digest. A worker whose model serves nothing (its error) counts for none."""
    served: dict[str, dict[str, dict[str | None, list[int]]]] = {}
    for worker in ready:
        models = worker.status.get("models")
        for name, entry in models.items() if isinstance(models, dict) else ():
            version = entry.get("version") if isinstance(entry, dict) else None
            if isinstance(name, str) and isinstance(version, str):  # a peer's map is untrusted: checked
                digest = entry.get("digest") if isinstance(entry.get("digest"), str) else None
                served.setdefault(name, {}).setdefault(version, {}).setdefault(digest, []).append(worker.pid)
    mixed: dict[str, dict[str, list[int]]] = {}
    for name, versions in served.items():
        if len(versions) > 1:
            mixed[name] = {version: sorted(p for pids in by.values() for p in pids) for version, by in versions.items()}
        elif len(digests := next(iter(versions.values()))) > 1 and None not in digests:  # an older worker: none
            (version,) = versions
            mixed[name] = {f"{version} (digest {digest[:12]})": sorted(pids) for digest, pids in digests.items()}
    return mixed


def _whose(pids: list[int]) -> str:
    named = ", ".join(map(str, pids[:MAX_PIDS])) + (f" and {len(pids) - MAX_PIDS} more" if len(pids) > MAX_PIDS else "")
    return f"worker pid{'s' if len(pids) > 1 else ''} {named}"


class VersionWatch:
    """Which models the ready workers have served in more than one version, since when; checked
    once a heartbeat interval (a worker's models change at most that often)."""

    def __init__(self, heartbeat: float, reload_interval: float):
        self.heartbeat = heartbeat
        self.grace = swap_grace(heartbeat, reload_interval)
        self._next = 0.0
        self._since: dict[str, float] = {}  # model -> when its ready workers began to differ
        self._warned: dict[str, float] = {}  # model -> when that was last said

    def check(self, ready: Iterable[Worker], now: float) -> list[tuple[int, str]]:
        """The ``(level, line)`` to log now: a warning for each model whose mix outlasted the grace
        (then every REPEAT_SECONDS), a line for each that ended after it was warned about."""
        if now < self._next:
            return []
        self._next = now + self.heartbeat
        ready = list(ready)
        mixed, lines = mixed_versions(ready), []
        for name in [name for name in self._since if name not in mixed]:
            del self._since[name]
            if self._warned.pop(name, None) is not None:
                lines.append((logging.INFO, f"the ready workers serve one version of model {name} again"))
        for name, versions in sorted(mixed.items()):
            since = self._since.setdefault(name, now)
            warned = self._warned.get(name)
            if now - since >= self.grace and (warned is None or now - warned >= REPEAT_SECONDS):
                self._warned[name] = now
                lines.append((logging.WARNING, shortened(self._line(name, versions, now - since, ready))))
        return lines

    def _line(self, name: str, versions: dict[str, Any], lasted: float, ready: list[Worker]) -> str:
        each = "; ".join(f"{version} by {_whose(pids)}" for version, pids in sorted(versions.items()))
        failed = [f"worker pid {worker.pid}: {error}" for worker in ready if (error := _load_error(worker, name))]
        why = (
            f"; {'; '.join(failed)}"
            if failed
            # the guess hid a failed load (checker h428 F1)
            else (f" (a worker started with another profile, --set models.{name}.serve or artifact store?)")
        )
        return (
            f"the ready workers have served model {name} in {len(versions)} versions for {lasted:.0f}s, longer than"
            f" a rolling swap takes ({self.grace:g}s): {each}; clients get replies of each version by share{why}"
        )


def _load_error(worker: Worker, name: str) -> str | None:
    """The error ``worker``'s heartbeat gives for its model ``name`` (a version it could not load), if any."""
    models = worker.status.get("models")
    entry = models.get(name) if isinstance(models, dict) else None
    error = entry.get("error") if isinstance(entry, dict) else None
    return error if isinstance(error, str) else None
