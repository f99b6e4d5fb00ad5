"""Durable append-only logs: records a served api accepted, synced before it answers OK.

Feedback corrections, recorded interactions, handed-off queries: any api that promises
"nothing acknowledged is lost" appends JSON lines here. Each record is written with one
``write`` on an ``O_APPEND`` descriptor and ``fsync``ed before ``append`` returns, so an
acknowledged record survives ``kill -9`` and concurrent writers (several workers) never
interleave inside a line. A reader skips a torn last line (a crash mid-write of a record
that was never acknowledged). The matching source reads the same file for training.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from heirloom.core.paths import home


def log_path(kind: str, project: str, name: str) -> Path:
    """The default place of a durable log: ``$HEIRLOOM_HOME/KIND/PROJECT/NAME.jsonl``
    (``kind`` is what it holds, e.g. ``feedback``; ``name`` the api that writes it)."""
    return home() / kind / project / f"{name}.jsonl"


class AppendLog:
    """An append-only, fsynced JSON-lines file; safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` (with a ``time`` stamp) and return only once it is on disk."""
        line = (json.dumps({**record, "time": time.time()}, ensure_ascii=False) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        """The records of a log at ``path`` (none if it does not exist), skipping a torn
        final line."""
        if not path.exists():
            return
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    return  # torn by a crash before the reply: never acknowledged
                yield json.loads(line)
