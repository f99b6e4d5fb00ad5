"""Durable feedback: corrections appended to a JSON-lines log, synced before the reply.

Each record is written with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``ed
before the route answers OK, so an acknowledged correction survives ``kill -9`` and
concurrent writers (several workers) never interleave inside a line. A reader skips a
torn last line (a crash mid-write of a record that was never acknowledged).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from heirloom.paths import home


def default_log(project: str, api: str) -> Path:
    """Where the ``api`` of ``project`` keeps its feedback unless a path is configured."""
    return home() / "feedback" / project / f"{api}.jsonl"


class FeedbackLog:
    """An append-only, fsynced JSON-lines file."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` and return only once it is on disk."""
        line = (json.dumps({**record, "time": time.time()}, ensure_ascii=False) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a feedback log, skipping a torn final line."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # torn by a crash before the reply: never acknowledged
            yield json.loads(line)
