"""A storage quota shared by a project's files: one limit, the files it covers, their use.

The durable logs of one project (feedback, events, ...) are written by several processes (``serve --workers N``, a
daemon per api): the use is the sum of their sizes, read from the file system at each check. Two processes appending
at the same instant may each pass the check: the quota is then exceeded by at most one record per process."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from heirloom.core.components import Resources, manager_name
from heirloom.core.errors import HeirloomError, ResourceExhaustedError
from heirloom.core.paths import home
from heirloom.log_files import project_log_files

MIB = 1 << 20


def quota_mb(resources: Resources, area: str) -> int | None:
    """``resources.storage_quota_mb(area)``, checked: a wrong answer failed ``_stats`` (INTERNAL)
    and ``train`` after fitting (a TypeError read as the model's), naming no manager."""
    named = f"the resource manager {manager_name(resources)}: storage_quota_mb({area!r})"
    try:
        mb = resources.storage_quota_mb(area)
    except Exception as exc:
        raise HeirloomError(f"{named} raised {type(exc).__name__}: {exc}") from exc
    if mb is not None and (type(mb) is not int or mb < 1):
        raise HeirloomError(f"{named} returned {mb!r}; it must be None or an int >= 1")
    return mb


class StorageQuota:
    """``limit_mb`` (None: unlimited) over the files added with :meth:`cover`."""

    def __init__(self, area: str, project: str, limit_mb: int | None):
        self.area, self.project = area, project
        self.limit = None if limit_mb is None else limit_mb * MIB
        self._paths: set[Path] = set()
        self._lock = threading.Lock()

    def cover(self, path: Path) -> None:
        with self._lock:
            self._paths.add(Path(path))

    def used(self) -> int:
        """Bytes the covered files and the project's other logs hold now (a daemon of one api counted its own files
        only, and wrote past a quota its project's other apis had filled: h369 F2); each file once."""
        with self._lock:
            paths = [*self._paths]
        sizes = {}
        for path in [*paths, *project_log_files(home(), self.project)]:
            with contextlib.suppress(OSError):  # gone, or a symbolic link loop (v15 F3): it holds nothing
                stat = os.stat(path)
                sizes[stat.st_dev, stat.st_ino] = stat.st_size
        return sum(sizes.values())

    def check(self, adding: int, what: str) -> None:
        """Raise ResourceExhaustedError when ``adding`` bytes would pass the limit."""
        if self.limit is not None and (used := self.used()) + adding > self.limit:
            raise ResourceExhaustedError(
                f"{what}: project {self.project!r} holds {used} bytes of {self.area}; {adding} more would pass "
                f"its {self.area} quota of {self.limit // MIB} MiB; nothing was written"
            )

    def usage(self) -> dict[str, float | None]:
        """``{"used_mb", "quota_mb"}`` for ``_stats``."""
        return {"used_mb": round(self.used() / MIB, 3), "quota_mb": None if self.limit is None else self.limit // MIB}
