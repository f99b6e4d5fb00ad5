"""Where a project's durable logs lie in the home: ``KIND/PROJECT/NAME.jsonl``, in every folder but ``store/``,
``cache/`` and ``data/`` (docs/OPERATIONS.md, "What to back up"), whichever process or api wrote them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: The home's folders that hold no logs.
NOT_LOGS = frozenset({"store", "cache", "data"})


def project_log_files(home: Path, project: str) -> list[Path]:
    """Every log file of ``project`` under ``home`` now (none where the home cannot be read). An entry that cannot be
    read (a symbolic link loop) is skipped alone: one stopped the listing, and the quota counted no other log (v14)."""
    try:
        names = [entry.name for entry in os.scandir(home) if entry.name not in NOT_LOGS]
    except OSError:
        return []
    found: list[Path] = []
    for name in names:
        with contextlib.suppress(OSError):
            found += (home / name / project).glob("*.jsonl")
    return found
