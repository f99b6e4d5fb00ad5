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
import re
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
from heirloom.store.private_logs import UnsafeLog, file_problem, open_private

log = logging.getLogger("heirloom.store.logs")


#: What ends a torn last line before the next record: no JSON value ends with ')', so the
#: line stays unreadable whatever was cut (a record whole but for its newline included).
TORN_END = b" (torn)\n"


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
    (``kind`` is what it holds, e.g. ``feedback``; ``name`` the api that writes it)."""
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
        except OSError as exc:  # a folder (EISDIR), a socket (ENXIO): which, not the errno's words
            kind = irregular(self.path) if exc.errno in (errno.EISDIR, errno.ENXIO) else None
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
                if (record := _record(path, number, line, check)) is not None:
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
        replaced or shrank since the last read (then they are all of its records)."""
        handle = _open_regular(self.path)
        if handle is None:  # renamed away (rotation) or removed: a new file is read from its start
            restarted, self._offset, self._lines, self._file = self._file is not None, 0, 0, None
            self._tail = b""
            return [], restarted
        found = []
        with handle:
            stat = os.fstat(handle.fileno())
            restarted = self._file not in (None, (stat.st_dev, stat.st_ino)) or stat.st_size < self._offset
            if not restarted and self._tail:
                handle.seek(self._offset - len(self._tail))
                restarted = handle.read(len(self._tail)) != self._tail
            if restarted:
                self._offset = self._lines = 0
                self._tail = b""
            self._file = (stat.st_dev, stat.st_ino)
            start = self._offset
            handle.seek(start)
            for size, line in _lines(handle):
                if not line.endswith(b"\n"):
                    break
                self._lines += 1
                if (record := _record(self.path, self._lines, line, self.check)) is not None:
                    found.append((self._offset, record))
                self._offset += size
            if self._offset != start:
                handle.seek(max(0, self._offset - TAIL_BYTES))
                self._tail = handle.read(self._offset - max(0, self._offset - TAIL_BYTES))
        return found, restarted

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


def _record(
    path: Path, number: int, line: bytes, check: Callable[[dict[str, Any]], str | None] | None
) -> dict[str, Any] | None:
    """Line ``number`` of a log as its record, or None (reported) when it is unusable."""
    record = _object(line) if line.endswith(b"\n") else None
    if not isinstance(record, dict):
        if line.strip():
            warn_line(path, number, f" {_unusable(line)}; skipped")
        return None
    fault = _surrogate_fault(line, record) or _time_fault(record.get("time"))
    fault = fault or (check(record) if check is not None else None)
    if fault is not None:
        warn_line(path, number, f": {fault}; skipped")
        return None
    if (later := future_time(record.get("time"))) is not None:  # the year 2100 was read without a word
        warn_line(path, number, f": 'time' is {record['time']}, {later}; read as it is")
    return record


def _object(line: bytes) -> Any:
    """The JSON value ``line`` holds, or None."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _unusable(line: bytes) -> str:
    """What a reader says of a line that is no record: a whole JSON object without its newline (a
    hand edit saved without a final newline looked torn, or passed unsaid) and one a writer ended with
    TORN_END for that reason (it never counts: the writer cannot tell it from a record a crash cut just
    before its newline, never acknowledged) say what to do; else torn or no object."""
    if not line.endswith(b"\n") and isinstance(_object(line), dict):
        return (
            "has no newline at its end: a record being written now, one a crash cut before it was acknowledged, "
            "or a line added by hand without a final newline (end it with one, or the next record written ends "
            "it with ' (torn)' and it never counts)"
        )
    if line.endswith(TORN_END) and isinstance(_object(line[: -len(TORN_END)]), dict):
        return (
            "was ended with ' (torn)' by a writer, as it had no newline (a crash cut it before it was "
            "acknowledged, or it was added by hand without a final newline); it never counts: a record "
            "you added by hand, add it again ending with a newline"
        )
    return "is torn (a crash cut it short before it was acknowledged) or no JSON object (edited, or too long)"


#: Seconds past now a record's time may be without a word (clocks a little apart).
FUTURE = 86_400


def future_time(stamp: float | None) -> str | None:
    """For a Unix time more than FUTURE after now, its date and what may be wrong (a clock set
    wrong, a hand edit), for a reader's warning; else None. Readers keep such a record."""
    if stamp is None or stamp <= time.time() + FUTURE:
        return None
    return f"{time.strftime('%Y-%m-%d', time.gmtime(stamp))} (UTC), more than a day after now (a clock set wrong?)"


#: The (file, line, what) already warned of in this process: a train reads each source several
#: times (its fingerprint, its splits, each epoch), and each read said every bad line again.
_warned: set[tuple[str, int, str]] = set()
#: How many are remembered: past it, a new one is still said, each time it is read.
WARNED_LIMIT = 65_536


def warn_line(path: Path, number: int, what: str) -> None:
    """Log ``PATH: line N`` and ``what`` (``": ..."``, ``" is ..."``) once per process for each file,
    line and reason: every log reader reports its unusable lines through here."""
    key = (str(path), number, what)
    if key in _warned:
        return
    if len(_warned) < WARNED_LIMIT:
        _warned.add(key)
    log.warning("%s: line %d%s", path, number, what)


#: What a line holds when one of its strings may be half a UTF-16 pair: the escape ``\\ud800``
#: to ``\\udfff`` (as Python's ``json.dumps`` writes one), or those code points in raw UTF-8
#: (``json.loads`` reads them); any other line is not searched.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _surrogate_fault(line: bytes, record: dict[str, Any]) -> str | None:
    """Whether a key or string of ``record`` is a lone surrogate, which is no text: UTF-8 cannot
    write it, so every reader (a listing, an export, a training run's fingerprint) failed on it."""
    if not _MAYBE_SURROGATE.search(line) or (bad := lone_surrogate(record)) is None:
        return None
    return (
        f"the string {bad[:40]!a} holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which is "
        "no text: UTF-8 cannot write it"
    )


def lone_surrogate(value: Any) -> str | None:
    """The first string of ``value`` (dict keys included, lists and dicts walked without
    recursion) holding a lone surrogate, which ``json.loads`` reads from an escape such as
    ``"\\ud800"`` but UTF-8 cannot write; None when there is none."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _time_fault(stamp: Any) -> str | None:
    """What is wrong with a record's ``time`` (``append`` writes the Unix time), or None."""
    if stamp is None or (type(stamp) in (int, float) and 0 <= stamp < 1e11):  # not past the year 5000
        return None
    return f"'time' is {str(stamp)[:40]}, not a Unix time"


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
            raise HeirloomError(f"the log {path} is a symbolic link (logs are never read through one)") from None
        raise HeirloomError(f"cannot read the log {path}: {exc.strerror}") from None
