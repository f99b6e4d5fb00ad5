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

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from heirloom.core.errors import HeirloomError, ResourceExhaustedError
from heirloom.core.paths import home
from heirloom.core.quota import StorageQuota
from heirloom.files import NotRegularFile, irregular, open_regular
from heirloom.store.log_records import TORN_END, line_record
from heirloom.store.private_logs import UnsafeLog, file_problem, open_private

log = logging.getLogger("heirloom.store.logs")
#: The home's folders that hold no logs (OPERATIONS.md: logs are every folder but these).
NOT_LOGS = frozenset({"store", "cache", "data"})
#: Why a log's path is refused when a link stands there: opened without following links, the OS says "Too many
#: levels of symbolic links", which reads as a loop.
LINKED = "is a symbolic link (logs are never read or written through one: put the file itself there)"


class LogWriteError(HeirloomError):
    """A record did not reach the disk whole; nothing of it remains in the log."""


class LogFull(LogWriteError, ResourceExhaustedError):
    """The log reached its size limit or the project's log quota; the record was not written. ``limit`` names which
    and its value, without the log's path (what a client may hear); ``quota`` is True for the project's log quota."""

    def __init__(self, message: str, *, limit: str = "its size limit", quota: bool = False):
        super().__init__(message)
        self.limit = limit
        self.quota = quota


def log_path(kind: str, project: str, name: str) -> Path:
    """The default place of a durable log: ``$HEIRLOOM_HOME/KIND/PROJECT/NAME.jsonl``
    (``kind`` is what it holds, e.g. ``feedback``; ``name`` the api that writes it). ValueError for a part that
    would leave that place (``..``, a ``/``, an absolute path: a plugin's own strings wrote outside the home,
    checker h426 F6) or a ``kind`` of the home's other folders."""
    for part, value in (("kind", kind), ("project", project), ("name", name)):
        if not value or value in (".", "..") or "/" in value or os.sep in value or "\x00" in value:
            raise ValueError(f"log_path: {part} {value!r} is no folder or file name (no '/', '.' or '..')")
    if kind in NOT_LOGS:
        raise ValueError(f"log_path: kind {kind!r} is the home's {kind}/ folder, which holds no logs")
    return home() / kind / project / f"{name}.jsonl"


class AppendLog:
    """An append-only, fsynced JSON-lines file; safe across threads and processes.

    ``max_bytes`` caps the file, ``quota`` (``ctx.log_quota()``) the project's logs together:
    past either, ``append`` raises :class:`LogFull` and writes nothing.
    """

    def __init__(self, path: Path, *, max_bytes: int | None = None, quota: StorageQuota | None = None):
        self.path = path
        self.max_bytes = max_bytes
        self.quota = quota
        if quota is not None:
            quota.cover(path)
        self._fd = self._open()
        self._lock = threading.Lock()

    def _open(self) -> int:
        """A descriptor of the log file, created if missing (its folders too, each private to
        this user: clients' texts): never through a link planted in its place or on its way below
        HEIRLOOM_HOME (it would append to the link's target), never a FIFO, a device or a folder, never
        another user's file or one others may read (``private_logs``)."""
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK)
        except UnsafeLog as exc:
            raise LogWriteError(f"cannot open the log {self.path}: {exc}") from None
        except OSError as exc:  # a folder (EISDIR), a socket (ENXIO), a link (ELOOP, h426 F4): which, not the errno's
            kind = irregular(self.path) if exc.errno in (errno.EISDIR, errno.ENXIO) else None
            kind = LINKED if exc.errno == errno.ELOOP else kind  # "Too many levels of symbolic links" read as a loop
            raise LogWriteError(f"cannot open the log {self.path}: {f'it {kind}' if kind else exc.strerror}") from None
        if (problem := file_problem(os.fstat(fd))) is not None:
            os.close(fd)
            raise LogWriteError(f"cannot open the log {self.path}: it {problem}")
        return fd

    def _names_our_file(self) -> bool:
        """Whether the log's path still names the file we hold open: an operator may replace
        it under a running daemon (a restore from backup, rsync, logrotate)."""
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except OSError:  # gone, or a folder on its path became a file: reopening says which
            return False
        held = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def append(self, record: dict[str, Any], max_bytes: int | None = None) -> None:
        """Write ``record`` (with a ``time`` stamp) and return only once it is on disk, in the
        file the log's path names at that moment (a replaced log is reopened first: a record
        written to the replaced file would be acknowledged and lost). ``max_bytes``: a lower
        cap for this record than the log's own, so one kind of record leaves room for another."""
        self.append_all([record], max_bytes)

    def append_all(self, records: list[dict[str, Any]], max_bytes: int | None = None) -> None:
        """``append`` for several records at once: one write and one ``fsync`` for them all, all
        kept or none (a thousand tombstones took a thousand fsyncs)."""
        with self.locked() as write:
            write(records, max_bytes)

    @contextmanager
    def locked(self) -> Iterator[Callable[..., None]]:
        """The log held for the caller alone (its thread lock and its file's flock) through the block,
        which gets ``append_all`` as ``write(records, max_bytes=None)``: a reader of the file in the block
        (a ``LogCursor``) sees every record appended before it, by any thread or process, and no other
        record is appended until it ends, so checking what the log holds and appending is one step (a
        request resent to two workers at once, appended once). The file is the one the path names as
        the block starts (reopened first when it was replaced). Keep the block short: every writer waits."""
        held = True

        def write(records: list[dict[str, Any]], max_bytes: int | None = None) -> None:
            if not held:  # kept past its block: the lock that made the caller's check hold is gone
                raise LogWriteError(f"{self.path}: written after its locked() block ended; nothing was written")
            self._append_held(self._encoded(records), self._cap(max_bytes))

        with self._lock, self._ours():
            try:
                yield write
            finally:
                held = False

    @contextmanager
    def _ours(self) -> Iterator[None]:
        """The file's flock held, on the file the log's path names now: an operator may have replaced it
        (a restore, rsync, logrotate), and a record written to the replaced file would be acknowledged and
        lost. The caller holds the thread lock."""
        for _ in range(3):
            if self._fd < 0:  # closed after a replacement; a failed reopen leaves it so
                self._fd = self._open()
            with self._flock():
                if self._names_our_file():
                    yield
                    return
            log.warning("%s was replaced or removed since it was opened: reopening it", self.path)
            os.close(self._fd)
            self._fd = -1
        raise LogWriteError(f"{self.path} keeps being replaced; the record was not written")

    @staticmethod
    def _encoded(records: list[dict[str, Any]]) -> bytes:
        stamp = time.time()
        return b"".join((json.dumps({**r, "time": stamp}, ensure_ascii=False) + "\n").encode() for r in records)

    def _cap(self, max_bytes: int | None) -> float:
        return min(c for c in (self.max_bytes, max_bytes, float("inf")) if c is not None)

    def _append_held(self, line: bytes, cap: float) -> None:
        """Append ``line`` to the open file, unless it would pass ``cap`` bytes; the caller holds its flock."""
        start = os.fstat(self._fd).st_size
        if start and os.pread(self._fd, 1, start - 1) != b"\n":  # under the flock: no writer is mid-record
            log.warning(
                "%s: line %d has no newline at its end (a record a crash cut short before it was acknowledged, or "
                "a line added by hand without a final newline): ended with ' (torn)' so it never counts; readers "
                "skip it",
                self.path,
                self._lines_before(start) + 1,
            )
            # ended so it can never parse: a bare newline made a whole record of one cut just before its own
            line = TORN_END + line
        if start + len(line) > cap:
            limit = f"its size limit of {cap:.0f} bytes"
            raise LogFull(f"{self.path} holds {start} bytes; a {len(line)}-byte record passes {limit}", limit=limit)
        if self.quota is not None:
            try:
                self.quota.check(len(line), f"log {self.path.name}")
            except ResourceExhaustedError as exc:
                limit = f"the project's log quota of {self.quota.limit >> 20} MiB"
                raise LogFull(str(exc), limit=limit, quota=True) from None
        try:
            self._write_all(line)
            os.fsync(self._fd)
        except OSError as exc:
            self._cut(start)
            raise LogWriteError(f"cannot append to {self.path}: {exc.strerror or exc}; nothing was kept") from None

    def _lines_before(self, size: int) -> int:
        """How many newlines the first ``size`` bytes of the file hold (read only for a torn last line)."""
        count, offset = 0, 0
        while offset < size and (chunk := os.pread(self._fd, min(1 << 20, size - offset), offset)):
            count, offset = count + chunk.count(b"\n"), offset + len(chunk)
        return count

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
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    def read(path: Path, check: Callable[[dict[str, Any]], str | None] | None = None) -> Iterator[dict[str, Any]]:
        """The records of a log at ``path`` (none if it does not exist). A line that is not a
        whole JSON object (torn by a crash before it was acknowledged, edited by hand, longer
        than LINE_LIMIT, nested past the parser) is reported with its line number and skipped;
        so is one holding a lone surrogate (``"\\ud800"``: no text), and a record ``check`` finds
        fault with (it returns what is wrong, else None). A
        path that is not a regular file is an error naming it (a FIFO would block the reader)."""
        return (record for _, record in AppendLog.numbered(path, check))

    @staticmethod
    def numbered(
        path: Path, check: Callable[[dict[str, Any]], str | None] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``read``'s records with the line number of each in the file (skipped lines counted), for
        a reader that names a record by its line or says a line: the count of records read is not it."""
        handle = _open_regular(path)
        if handle is None:
            return
        with handle:
            for number, (_, line) in enumerate(_lines(handle), 1):
                if (record := line_record(path, number, line, check)) is not None:
                    yield number, record


class LogCursor:
    """A reader that keeps its place in a growing log: each ``read()`` returns the records
    appended since the last one (by any thread or process: a broker's workers share a log),
    with the byte offset each starts at, so a route answering from a log reads each record
    once rather than the whole file per request. A last line without its newline (a record
    being written, or torn by a crash) is left for a later read. A log that was replaced,
    shrank (restored from a backup) or no longer holds what was read last where it was (truncated
    in place by ``copytruncate`` and grown again) is read again from its start, and ``read`` says so."""

    def __init__(self, path: Path, check: Callable[[dict[str, Any]], str | None] | None = None):
        self.path = path
        self.check = check
        self._offset = 0  # where the next read starts: just past the last whole line read
        self._lines = 0
        self._file: tuple[int, int] | None = None  # (device, inode) of the file read so far
        #: The last bytes read, which end at the offset: a log truncated in place (copytruncate)
        #: and grown past the offset again no longer holds them there.
        self._tail = b""

    def read(self) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        """``([(offset, record), ...], restarted)``: the new records, and whether the log was
        replaced or shrank since the last read (then they are all of its records). It holds them
        all at once: a reader of a log that may be large (a catch-up) takes ``stream``."""
        restarted, records = self.stream()
        return list(records), restarted

    def stream(self) -> tuple[bool, Iterator[tuple[int, dict[str, Any]]]]:
        """``(restarted, records)``: ``read``'s answer with the new records one at a time, so a catch-up
        over a full log holds one parsed record, not all of them (663,665 lines of 250 MiB held 1.2 GiB,
        pinned for good by what the reader kept of them). The cursor moves past each record as it is
        taken; one left untaken is read again next time. Take them before the next ``stream``."""
        handle = _open_regular(self.path)
        if handle is None:  # renamed away (rotation) or removed: a new file is read from its start
            restarted, self._offset, self._lines, self._file = self._file is not None, 0, 0, None
            self._tail = b""
            return restarted, iter(())
        try:
            stat = os.fstat(handle.fileno())
            restarted = self._file not in (None, (stat.st_dev, stat.st_ino)) or stat.st_size < self._offset
            if not restarted and self._tail:
                handle.seek(self._offset - len(self._tail))
                restarted = handle.read(len(self._tail)) != self._tail
        except BaseException:
            handle.close()
            raise
        if restarted:
            self._offset = self._lines = 0
            self._tail = b""
        self._file = (stat.st_dev, stat.st_ino)
        return restarted, self._records(handle)

    def _records(self, handle: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        """The whole lines from the cursor's offset on, as ``(offset, record)``; the offset and the tail
        follow each line taken, also when the taker stops early."""
        start = self._offset
        with handle:
            try:
                handle.seek(start)
                for size, line in _lines(handle):
                    if not line.endswith(b"\n"):
                        break
                    self._lines += 1
                    offset, self._offset = self._offset, self._offset + size
                    if (record := line_record(self.path, self._lines, line, self.check)) is not None:
                        yield offset, record
            finally:
                if self._offset != start:
                    handle.seek(max(0, self._offset - TAIL_BYTES))
                    self._tail = handle.read(self._offset - max(0, self._offset - TAIL_BYTES))

    def records_at(self, offsets: list[int]) -> list[dict[str, Any]]:
        """The records ``read`` returned at ``offsets`` read back from the file (the caller
        keeps offsets, not records, in memory); one the log no longer holds is left out."""
        handle = _open_regular(self.path)
        if handle is None:
            return []
        records = []
        with handle:
            for offset in offsets:
                handle.seek(offset)
                line = handle.readline(LINE_LIMIT)
                with contextlib.suppress(ValueError, RecursionError):
                    if isinstance(record := json.loads(line), dict):
                        records.append(record)
        return records


#: Bytes a cursor keeps of what it read last, to tell the same log from one rewritten in place.
TAIL_BYTES = 64

#: Longest log line read: a record is a few kilobytes (texts are capped by the api); a longer
#: line is skipped in pieces, never held whole in memory.
LINE_LIMIT = 16 << 20


def _lines(handle: Any) -> Iterator[tuple[int, bytes]]:
    """The file's lines with their sizes in bytes; a line past LINE_LIMIT comes back as
    ``b"?\\n"`` (not JSON: skipped), or ``b"?"`` when it has no newline yet."""
    while True:
        line = handle.readline(LINE_LIMIT)
        if not line:
            return
        size = len(line)
        if size == LINE_LIMIT and not line.endswith(b"\n"):
            ended = False
            while not ended and (more := handle.readline(LINE_LIMIT)):
                size += len(more)
                ended = more.endswith(b"\n")
            line = b"?\n" if ended else b"?"
        yield size, line


def _open_regular(path: Path) -> Any:
    """``path`` opened for reading if it exists (None if not); HeirloomError naming it when it
    is not a regular file, or a link (as the writer refuses it: a link planted in a log's
    place read as an empty queue)."""
    try:
        return os.fdopen(open_regular(path, os.O_NOFOLLOW), "rb")
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise HeirloomError(f"the log {path} {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HeirloomError(f"the log {path} {LINKED}") from None
        raise HeirloomError(f"cannot read the log {path}: {exc.strerror}") from None
