"""The artifact store's SQLite index: which versions exist, their records, their aliases.

WAL journal and ``synchronous=FULL``: a committed write survives a crash, readers never
block the writer. Writes run under ``BEGIN IMMEDIATE``, SQLite's single write lock, which
also serialises version numbering and keeps gc from sweeping blobs a writer is adding.
One connection per transaction, so a store is safe across threads and forked processes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from heirloom.core.errors import HeirloomError
from heirloom.files import irregular
from heirloom.store import index_hints
from heirloom.store.index_hints import READ_ONLY
from heirloom.store.wal import into_wal

log = logging.getLogger("heirloom.store")

#: What marks a folder as a backup of a store (``models backup`` writes it first).
BACKUP_MARKER = "heirloom-backup.json"
#: 2 added ``alias_moves``: an older heirloom, which promotes without recording the move, must refuse it.
SCHEMA_VERSION = 2
#: The heirloom release that first wrote each schema: a new schema comes with a new release (pyproject.toml's
#: version; docs/OPERATIONS.md, Upgrading), so an error can say which release reads a store.
SCHEMA_RELEASES = {1: "0.1.0", 2: "0.2.0"}
#: Seconds a writer waits for another one to finish (big blobs are written under the lock).
BUSY_TIMEOUT = 120.0
#: Seconds storing a fitted model waits: a train's hours are not thrown away over a gc or an open sqlite3 shell.
FITTED_WAIT = 3600.0
#: Seconds a writer waits before it says once that it waits (a wait for a quick writer goes unsaid).
QUIET_WAIT = 2.0
#: Who may hold the write lock that long, for the messages that say it is held.
HOLDERS = "a train, gc, backup or an open sqlite3 shell"
JSON_COLUMNS = ("data_fingerprints", "metrics", "plugin_versions")
#: The largest version stored: a JSON reader that reads numbers as doubles (JavaScript) reads it exactly.
MAX_VERSION = 2**53
RECORD_COLUMNS = (
    "project",
    "model",
    "digest",
    "parent",
    "parent_digest",
    "profile_digest",
    *JSON_COLUMNS,
    "created_at",
    "heirloom_version",
    "model_type",
    "framework",
)
#: Every move of an alias, when, from which version: which version served when (an audit). Schema 2;
#: an index of schema 1 gets it with its first change (train, promote, gc), and kept none before.
ALIAS_MOVES = """
CREATE TABLE IF NOT EXISTS alias_moves (
    project TEXT NOT NULL,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    previous INTEGER,
    moved_at TEXT NOT NULL
)"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS artifacts (
    project TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    parent TEXT,
    parent_digest TEXT,
    profile_digest TEXT NOT NULL,
    data_fingerprints TEXT NOT NULL,
    metrics TEXT NOT NULL,
    plugin_versions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    heirloom_version TEXT NOT NULL,
    model_type TEXT NOT NULL,
    framework TEXT NOT NULL,
    weights_blob TEXT NOT NULL,
    metadata_blob TEXT NOT NULL,
    PRIMARY KEY (project, model, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    project TEXT NOT NULL,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (project, model, alias),
    FOREIGN KEY (project, model, version) REFERENCES artifacts (project, model, version)
);
{ALIAS_MOVES};
PRAGMA user_version = {SCHEMA_VERSION};
"""


def _schema(conn: sqlite3.Connection, path: Path) -> int:
    """The index's schema number (``PRAGMA user_version``); an error naming both numbers, and what to do,
    when it is newer than this heirloom reads: its tables may mean something else now."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        from heirloom.core.version import VERSION  # importlib.metadata: only for this error

        raise HeirloomError(
            f"{path} has schema {found}; this heirloom reads up to {SCHEMA_VERSION} (heirloom {VERSION}; "
            f"{index_hints.written_by(conn, VERSION)}): install a heirloom that reads schema {found}, or restore "
            "the backup taken before the upgrade (docs/OPERATIONS.md, Upgrading)"
        )
    return found


def _size(path: Path) -> int:
    """``path``'s size; 0 when it is not there (a writer may fold a -wal file in at any moment)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class StoreLocked(HeirloomError):
    """Another process held the store's write lock longer than a writer waits."""


class StoreIndex:
    """Opens transactions on ``index.sqlite``, created only when ``create`` allows it: a store whose blobs outlived its
    index must not get a fresh, empty index silently (gc would then see every blob as garbage). In a folder this
    process cannot write (a read-only volume), or with ``writes=False`` (a reader that must leave the folder as it
    found it), it is opened read-only and as immutable while its ``-wal`` holds no changes: SQLite's WAL mode would
    otherwise create its ``-wal`` and ``-shm`` files there even to read."""

    _opened = False
    read_only = False  # asked again at each connection

    def __init__(self, path: Path, *, create: bool = True, writes: bool = True):
        self.path = path
        self.writes = writes
        self.wal = _wal(path)
        if kind := irregular(path):  # it was "missing or empty", or SQLite's own words
            raise HeirloomError(f"the store index {path} {kind}")
        if not create and not _has_content(path):
            cut = "a backup cut short before its index was copied: run heirloom models backup into it again (restored"
            raise HeirloomError(  # the marker is written first
                f"the store index {path} is missing or empty, but {path.parent / 'blobs'} holds artifacts; "
                + (
                    f"it is {cut} from such a backup: restore again from a whole one)"
                    if (path.parent / BACKUP_MARKER).exists()
                    else "refusing to start a new, empty index over them (restore index.sqlite from a backup, "
                    "or move the blobs folder away to start an empty store)"
                )
            )
        with self._errors(), closing(self.connect()) as conn:
            found = _schema(conn, path)
            if found == 0:
                if not create:
                    raise HeirloomError(
                        f"the store index {path} has no heirloom tables, but the store holds artifacts; "
                        "restore index.sqlite from a backup"
                    )
                if not writes:
                    raise HeirloomError(f"the store index {path} has no heirloom tables (no store made them)")
                into_wal(conn, BUSY_TIMEOUT)  # another process may be creating it too
                conn.executescript(SCHEMA)
        self._opened = True  # from now on a missing index is one moved away, never one to create

    def _upgrade(self, conn: sqlite3.Connection, found: int) -> None:
        """Schema ``found`` to SCHEMA_VERSION, inside the first transaction that changes the index (its write lock
        held, the schema read under it), so it commits with that change or not at all. Opening, or a command that
        only reads (``models list``, ``backup``, ``gc --dry-run``, a daemon), upgraded the store before: the
        "pre-upgrade" backup the new release took was of schema 2, which the older one refuses (checker v9 F2)."""
        conn.execute(ALIAS_MOVES)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _upgraded(self, found: int) -> None:
        """Said once, after the upgrade committed: an older heirloom refuses the index now, so going back
        needs the backup."""
        log.warning(
            "upgraded the store index %s from schema %d to %d (a record of alias moves): an older heirloom "
            "refuses it now; to go back, restore the backup taken before the upgrade (docs/OPERATIONS.md), so "
            "keep that backup aside: back up into another folder from now on",
            self.path,
            found,
            SCHEMA_VERSION,
        )

    def connect(self) -> sqlite3.Connection:
        """A connection to the index (read-only and immutable in a folder this process cannot write,
        asked again at each connection: a volume remounted read-only under a daemon is read on)."""
        self.read_only = not self.writes or (self.path.parent.is_dir() and not os.access(self.path.parent, os.W_OK))
        try:  # a folder at mode 000 raised PermissionError here, a traceback each check (checker h437 F1)
            there = self.path.exists()
        except OSError as exc:
            raise HeirloomError(f"the store index {self.path} cannot be read: {exc.strerror}") from None
        if self._opened and not there:  # sqlite3 would create an empty one in a folder put back
            raise HeirloomError(f"the store index {self.path} is gone (moved or removed while in use?)")
        if self.read_only:
            # immutable ignores the -wal: a promote a writer left there was read as never made
            immutable = "" if _size(self.wal) else "&immutable=1"
            target = f"file:{quote(str(self.path.resolve()))}?mode=ro{immutable}"
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT, isolation_level=None, uri=True)
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's own failures (a damaged file, a lock held too long) as errors naming the file."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            hint = index_hints.hint(exc, self.path, writes=self.writes, read_only=self.read_only, opened=self._opened)
            raise HeirloomError(f"the store index {self.path} cannot be used: {exc}{hint}") from None
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:
                raise
            if not self.writes:  # read as unchanging, yet a writer may have folded its -wal in just then
                raise HeirloomError(
                    f"the store index {self.path} could not be read ({exc}): it is damaged, or a writer changed "
                    "it at that very moment; try again, and if this stays, restore it from a backup"
                ) from None
            if self.read_only:  # read as unchanging while a process with write access changed it: no damage
                raise HeirloomError(
                    f"the store index {self.path} could not be read ({exc}): its folder is read-only to this "
                    "process, which reads it as unchanging, so a process writing it meanwhile (train, promote "
                    "where it is writable) gives this; run again, and `heirloom models verify` it where it is "
                    "writable before restoring anything"
                ) from None
            raise HeirloomError(f"the store index {self.path} is damaged ({exc}); restore it from a backup") from None

    def _lock(self, conn: sqlite3.Connection, wait: float) -> None:
        """``BEGIN IMMEDIATE``, waiting up to ``wait`` s for another process's write lock: after QUIET_WAIT s
        it says so once (stderr, a daemon's log); past ``wait`` the error says locked, not "cannot be used"
        (read as damage), and held by whom: a silent two-minute wait looked like a hang."""
        for attempt, limit in enumerate((min(QUIET_WAIT, wait), max(0.0, wait - QUIET_WAIT))):
            conn.execute(f"PRAGMA busy_timeout = {int(limit * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            if attempt == 0:
                log.warning(
                    "waiting up to %g s for the store's write lock (%s is held by another process: %s)",
                    wait,
                    self.path,
                    HOLDERS,
                )
        raise StoreLocked(
            f"the store index {self.path} is locked by another process for {wait:g} s ({HOLDERS} holds its write "
            "lock); nothing was written: run it again once that process is done"
        )

    @contextmanager
    def _transaction(self, begin: str, wait: float = BUSY_TIMEOUT, changes: bool = True) -> Iterator[Transaction]:
        with self._errors(), closing(self.connect()) as conn:
            if begin == "BEGIN IMMEDIATE":
                self._lock(conn, wait)
            else:
                conn.execute(begin)
            try:
                found = _schema(conn, self.path)  # a newer heirloom may have upgraded it under a running process
                upgrade = begin == "BEGIN IMMEDIATE" and changes and found < SCHEMA_VERSION
                if upgrade and self.read_only:  # read there as it is
                    raise HeirloomError(
                        f"the store index {self.path} of schema {found} cannot be changed here{READ_ONLY}"
                    )
                if upgrade:  # the first change upgrades it, in the same transaction
                    self._upgrade(conn, found)
                rows = conn.total_changes
                yield Transaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            changed = conn.total_changes > rows  # a promote that moved nothing, a gc that removed nothing: no
            conn.execute("ROLLBACK" if upgrade and not changed else "COMMIT")  # change, so no upgrade (v10 F2)
            if upgrade and changed:
                self._upgraded(found)

    def reading(self) -> AbstractContextManager[Transaction]:
        """A consistent snapshot for several queries."""
        return self._transaction("BEGIN")

    def writing(self, wait: float = BUSY_TIMEOUT, *, changes: bool = True) -> AbstractContextManager[Transaction]:
        """The store's write lock (waiting up to ``wait`` s for it); everything inside commits together or not
        at all. ``changes=False``: the lock only keeps writers out while this reads (a backup's snapshot, a gc's
        dry run), so a read-only index of an older schema is read as it is, not refused as a change."""
        return self._transaction("BEGIN IMMEDIATE", wait, changes)


class Transaction:
    """Queries and writes within one transaction; rows come back as Artifact keyword dicts."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def next_version(self, project: str, model: str) -> int:
        """The version ``insert`` gives ``project/model`` next. Only damage (a hand edit) puts one
        near SQLite's largest integer, past which the next would be stored as a REAL (9.22e18)
        that every later read refuses: refused here, before the caller writes anything."""
        (newest,) = self.conn.execute(
            "SELECT MAX(version) FROM artifacts WHERE project = ? AND model = ?", (project, model)
        ).fetchone()
        newest = 0 if newest is None else _whole(project, model, newest)
        if newest >= MAX_VERSION:
            raise sqlite3.DatabaseError(f"the newest version of {project}/{model} is {newest}, past {MAX_VERSION}")
        return newest + 1

    def insert(self, record: dict[str, Any], version: int, weights_blob: str, metadata_blob: str) -> None:
        """Add ``record`` as ``version`` (``next_version``) of its project/model."""
        values = {**record, **{name: json.dumps(record[name]) for name in JSON_COLUMNS}}
        columns = (*RECORD_COLUMNS, "version", "weights_blob", "metadata_blob")
        self.conn.execute(
            f"INSERT INTO artifacts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            (*(values[name] for name in RECORD_COLUMNS), version, weights_blob, metadata_blob),
        )

    def rows(
        self, project: str | None = None, model: str | None = None, damaged: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every matching version, ordered by project, model, version. A damaged row (a hand edit) raises, or with
        ``damaged`` is left out and said there (``{the version the row names: row N: what is wrong with it}``), so a
        listing shows every good row, and ``models verify`` names the damaged ones."""
        found = self.conn.execute(
            "SELECT rowid, * FROM artifacts WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR model = ?2) "
            "ORDER BY project, model, version",
            (project, model),
        ).fetchall()
        aliases: dict[tuple[str, str, int], list[str]] = {}
        for row in self.conn.execute("SELECT project, model, version, alias FROM aliases ORDER BY alias"):
            aliases.setdefault((row["project"], row["model"], row["version"]), []).append(row["alias"])
        records = []
        for row in found:
            try:
                records.append(_record(row, aliases.get((row["project"], row["model"], row["version"]), [])))
            except sqlite3.DatabaseError as exc:
                if damaged is None:
                    raise
                named = f"{row['project']}/{row['model']}@{row['version']}"
                damaged[named if named not in damaged else f"{named} (row {row['rowid']})"] = (
                    f"row {row['rowid']}: {exc}"
                )
        return records

    def row(self, project: str, model: str, version: int | None) -> dict[str, Any] | None:
        found = self.conn.execute(
            "SELECT * FROM artifacts WHERE project = ? AND model = ? AND version = ?", (project, model, version)
        ).fetchone()
        if found is None:
            return None
        aliases = self.conn.execute(
            "SELECT alias FROM aliases WHERE project = ? AND model = ? AND version = ? ORDER BY alias",
            (project, model, version),
        )
        return _record(found, [alias for (alias,) in aliases])

    def digest_of(self, project: str, model: str, version: int) -> str | None:
        found = self.conn.execute(
            "SELECT digest FROM artifacts WHERE project = ? AND model = ? AND version = ?", (project, model, version)
        ).fetchone()
        return found[0] if found else None

    def blobs(self, project: str, model: str, version: int) -> tuple[str, str]:
        """The file names of a version's weights and metadata in ``blobs/``."""
        return tuple(
            self.conn.execute(
                "SELECT weights_blob, metadata_blob FROM artifacts WHERE project = ? AND model = ? AND version = ?",
                (project, model, version),
            ).fetchone()
        )

    def versions(self, project: str, model: str) -> list[int]:
        query = "SELECT version FROM artifacts WHERE project = ? AND model = ? ORDER BY version"
        return [_whole(project, model, version) for (version,) in self.conn.execute(query, (project, model))]

    def names(self) -> list[str]:
        """``project/model`` of every stored model."""
        query = "SELECT DISTINCT project || '/' || model FROM artifacts ORDER BY 1"
        return [name for (name,) in self.conn.execute(query)]

    def alias_names(self) -> set[str]:
        """Every alias name the store uses, on any model."""
        return {name for (name,) in self.conn.execute("SELECT DISTINCT alias FROM aliases")}

    def aliases(self, project: str, model: str) -> dict[str, int]:
        query = "SELECT alias, version FROM aliases WHERE project = ? AND model = ?"
        return dict(self.conn.execute(query, (project, model)).fetchall())

    def dangling_aliases(self) -> list[tuple[str, str, str, Any]]:
        """``(project, model, alias, version)`` of every alias at a version the index does not hold."""
        query = (
            "SELECT project, model, alias, version FROM aliases AS a WHERE NOT EXISTS (SELECT 1 FROM artifacts "
            "WHERE project = a.project AND model = a.model AND version = a.version) ORDER BY project, model, alias"
        )
        return [tuple(row) for row in self.conn.execute(query)]

    def alias_version(self, project: str, model: str, alias: str) -> int | None:
        found = self.conn.execute(
            "SELECT version FROM aliases WHERE project = ? AND model = ? AND alias = ?", (project, model, alias)
        ).fetchone()
        return found[0] if found else None

    def set_alias(self, project: str, model: str, alias: str, version: int, at: str) -> None:
        """Point ``alias`` at ``version``; a move is recorded with its time ``at`` and the version it left."""
        previous = self.alias_version(project, model, alias)
        if previous == version:  # nothing moves, nothing is written
            return
        self.conn.execute(
            "INSERT INTO alias_moves (project, model, alias, version, previous, moved_at) VALUES (?, ?, ?, ?, ?, ?)",
            (project, model, alias, version, previous, at),
        )
        self.conn.execute(
            "INSERT INTO aliases (project, model, alias, version) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (project, model, alias) DO UPDATE SET version = excluded.version",
            (project, model, alias, version),
        )

    def alias_moves(self, project: str, model: str) -> list[dict[str, Any]]:
        """Every recorded move of ``project/model``'s aliases, oldest first ([] in an index too old to hold any)."""
        query = (
            "SELECT alias, version, previous, moved_at FROM alias_moves WHERE project = ? AND model = ? ORDER BY rowid"
        )
        try:
            return [dict(row) for row in self.conn.execute(query, (project, model))]
        except sqlite3.OperationalError:  # a read-only store an older heirloom wrote: no such table
            return []

    def left_by_aliases(self) -> dict[str, list[str]]:
        """``{"project/model@version": [alias, ...]}``: the version each alias's latest move left, which a rollback
        goes back to and a daemon that refused the move still serves ({} in an index too old to record moves)."""
        query = (
            "SELECT project, model, alias, previous FROM alias_moves AS m WHERE previous IS NOT NULL AND rowid = "
            "(SELECT MAX(rowid) FROM alias_moves WHERE (project, model, alias) = (m.project, m.model, m.alias))"
        )
        left: dict[str, list[str]] = {}
        try:
            for row in self.conn.execute(query):
                left.setdefault(f"{row['project']}/{row['model']}@{row['previous']}", []).append(row["alias"])
        except sqlite3.OperationalError:  # a read-only store an older heirloom wrote: no such table
            return {}
        return left

    def delete(self, keys: list[tuple[str, str, int]]) -> None:
        self.conn.executemany("DELETE FROM artifacts WHERE project = ? AND model = ? AND version = ?", keys)

    def project_blobs(self) -> list[tuple[str, str, str]]:
        """``(project, weights blob, metadata blob)`` of every version, its version unread: storage use counts a
        damaged row's blobs too (they are on disk), and ``models list`` still ends with it."""
        return [tuple(row) for row in self.conn.execute("SELECT project, weights_blob, metadata_blob FROM artifacts")]

    def blob_rows(self) -> list[tuple[str, str, int, str, str]]:
        """``(project, model, version, weights blob, metadata blob)`` of every version."""
        query = "SELECT project, model, version, weights_blob, metadata_blob FROM artifacts"
        return [
            (project, model, _whole(project, model, version), *blobs)
            for project, model, version, *blobs in self.conn.execute(query)
        ]


def _has_content(path: Path) -> bool:
    """Whether an index file (or its write-ahead log) holds anything."""
    return any(p.is_file() and _size(p) > 0 for p in (path, _wal(path)))


def _wal(path: Path) -> Path:
    """The index's write-ahead log, where SQLite keeps changes not yet folded into the file."""
    return path.with_name(f"{path.name}-wal")


def _whole(project: str, model: str, version: Any) -> int:
    """``version``, which only damage (a hand edit) makes anything but a whole number: then
    every comparison of versions failed as a raw TypeError (``models gc``)."""
    if isinstance(version, int):
        return version
    raise sqlite3.DatabaseError(f"a version of {project}/{model} is {version!r}, not a whole number")


def _record(row: sqlite3.Row, aliases: list[str]) -> dict[str, Any]:
    record = {name: row[name] for name in RECORD_COLUMNS} | {
        "version": _whole(row["project"], row["model"], row["version"])
    }
    for name in JSON_COLUMNS:
        try:
            value = json.loads(row[name])
        except (TypeError, ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):  # only damage writes anything else: put stores JSON objects
            ref = f"{row['project']}/{row['model']}@{row['version']}"
            raise sqlite3.DatabaseError(f"the {name} of {ref} is not a JSON object")
        record[name] = value
    return {**record, "aliases": tuple(aliases)}
