"""Durable append-only logs: records a served api accepted, synced before it answers OK.

Feedback corrections, recorded interactions, handed-off queries: any api that promises
"nothing acknowledged is lost" appends JSON lines here. A record is written whole or not
at all, then ``fsync``ed, before ``append`` returns: a short write (a full disk, a file
size limit) is retried until it fails, then the partial line is cut off again and
:class:`LogWriteError` tells the caller, so it never acknowledges it. Writers in several
threads or processes (workers) take the file's ``flock`` around each record. A torn line
left by a crash (never acknowledged) is ended before the next record is appended, so two
records are never glued, and readers report and skip it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from heirloom.core.errors import HeirloomError
from heirloom.core.paths import home

log = logging.getLogger("heirloom.store.logs")


class LogWriteError(HeirloomError):
    """A record did not reach the disk whole; nothing of it remains in the log."""


class LogFull(LogWriteError):
    """The log reached its size limit; the record was not written."""


def log_path(kind: str, project: str, name: str) -> Path:
    """The default place of a durable log: ``$HEIRLOOM_HOME/KIND/PROJECT/NAME.jsonl``
    (``kind`` is what it holds, e.g. ``feedback``; ``name`` the api that writes it)."""
    return home() / kind / project / f"{name}.jsonl"


class AppendLog:
    """An append-only, fsynced JSON-lines file; safe across threads and processes.

    ``max_bytes`` caps the file: past it, ``append`` raises :class:`LogFull`.
    """

    def __init__(self, path: Path, *, max_bytes: int | None = None):
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` (with a ``time`` stamp) and return only once it is on disk."""
        line = (json.dumps({**record, "time": time.time()}, ensure_ascii=False) + "\n").encode()
        with self._lock, self._flock():
            start = os.fstat(self._fd).st_size
            if start and os.pread(self._fd, 1, start - 1) != b"\n":
                log.warning("%s ends with a torn record (a crash cut it short); it is skipped on read", self.path)
                line = b"\n" + line
            if self.max_bytes is not None and start + len(line) > self.max_bytes:
                raise LogFull(f"{self.path} holds {start} bytes; a {len(line)}-byte record passes its {self.max_bytes}")
            try:
                self._write_all(line)
                os.fsync(self._fd)
            except OSError as exc:
                self._cut(start)
                raise LogWriteError(f"cannot append to {self.path}: {exc.strerror or exc}; nothing was kept") from None

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            if written == 0:
                raise OSError(errno.ENOSPC, "the write made no progress")
            view = view[written:]

    def _cut(self, size: int) -> None:
        """Remove a partly written record (under the flock, so it is ours alone)."""
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError as exc:  # readers still skip the torn tail, and the next append ends it
            log.error("could not cut a partly written record off %s: %s", self.path, exc)

    @contextmanager
    def _flock(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        """The records of a log at ``path`` (none if it does not exist); a torn line (a crash
        before the record was acknowledged) is reported with its line number and skipped."""
        if not path.exists():
            return
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    yield record
                elif line.strip():
                    log.warning("%s: line %d is torn (cut short before it was acknowledged); skipped", path, number)
