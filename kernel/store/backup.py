"""A consistent copy of an artifact store, taken while daemons read it and training (with
its retention gc) writes it.

Blobs are immutable and named by content, so most of them are copied without any lock;
then, under the index's write lock (nothing is stored, promoted or collected meanwhile), the
blobs the index names that are still missing are copied and the index is snapshotted with
SQLite's backup API: the copy never names a blob it lacks, however a gc raced the first
pass. Each blob is hashed as it is copied, so a damaged one (or one the store lacks) fails
the backup before the earlier copy's index is replaced. The lock is held for the newest
blobs and the index only, well within the time a writer waits for it (index.BUSY_TIMEOUT).

A backup mirrors the store: blobs its new index no longer names are removed. So it writes
only into an empty folder or an earlier backup of the same store (its MARKER file names the
store), and refuses, before writing anything, a folder holding files a backup does not write,
or a source store with no versions (a wrong HEIRLOOM_HOME would otherwise empty the backup).

A backup folder (or its ``blobs/``) of another user is refused: that user could plant a link at a
name the backup writes after it was checked. The backup writes through folder descriptors, and
creates each file new (``O_EXCL | O_NOFOLLOW``): a link planted meanwhile is refused, never
written through (root's backup into a folder another user could write overwrote a file of root's).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.files import NotRegularFile, not_regular, open_regular, umask
from heirloom.owners import not_mine, owner_name
from heirloom.store.artifacts import ArtifactStore
from heirloom.store.gc import BLOB_NAME, PARTIAL_BLOB, REPAIR
from heirloom.store.index import BACKUP_MARKER, SCHEMA_RELEASES, SCHEMA_VERSION, StoreIndex
from heirloom.store.pending import TABLE as PENDING

#: Written first into a backup: which store it copies (so a backup of another store is not
#: mirrored over by accident); a store written into loses it (``ArtifactStore._written``).
MARKER = BACKUP_MARKER
#: Held while a backup writes its folder: two at once deleted each other's files.
LOCK = ".heirloom-backup.lock"
#: What a backup writes at its top level: the marker (and its temp file, a kill may leave
#: it), blobs/, the index (and its partial copy with SQLite's side files).
MARKER_WRITE = re.compile(rf"\.{re.escape(MARKER)}\.\w+\.tmp")
BACKUP_FILES = re.compile(
    rf"{re.escape(MARKER)}|{MARKER_WRITE.pattern}|{re.escape(LOCK)}|blobs|index\.sqlite(?:-wal|-shm)?"
    r"|\.index\.sqlite\.partial(?:-journal|-wal|-shm)?"
)


class DestinationTaken(HeirloomError):
    """The DEST typed cannot take a backup of this store: a link to nothing, no folder, a folder holding other files,
    a backup of another store (without ``overwrite``). ``models backup`` exits 2 (choose another DEST), as ``keys
    new`` and ``new plugin`` do for a target that is taken; it was exit 1 (checker h342 F11)."""


@attrs.frozen
class BackupReport:
    """What a backup wrote: versions in its index, blobs copied now, blobs already there
    (an earlier backup into the same folder), and stale ones removed from it."""

    versions: int
    copied: int
    present: int
    removed: int


def named_blobs(rows: list[tuple[str, str, int, str, str]]) -> set[str]:
    return {name for row in rows for name in row[3:]}


def backup_store(store: ArtifactStore, destination: Path, *, overwrite: bool = False) -> BackupReport:
    """Copy ``store`` to ``destination`` (a store folder: ``index.sqlite`` and ``blobs/``),
    incrementally: a blob already there with the same size is kept. ``overwrite``: also
    into a backup of another store, or a store folder without MARKER."""
    with store.index.reading() as tx:
        early = named_blobs(tx.blob_rows())
        (schema,) = tx.conn.execute("PRAGMA user_version").fetchone()
    if not early:
        raise HeirloomError(
            f"the store at {store.root} holds no versions: nothing to back up (is it the store you meant? "
            "HEIRLOOM_HOME, HEIRLOOM_STORE or --store choose it)"
        )
    check_destination(store.root, destination, overwrite=overwrite, schema=schema)
    with _writing(destination), _folder(destination) as top, _alone(top, destination):
        for leftover in filter(MARKER_WRITE.fullmatch, os.listdir(top)):  # a marker write a kill cut short
            os.unlink(leftover, dir_fd=top)
        _write_marker(top, destination, json.dumps({"source": str(store.root.resolve())}).encode())  # first
        with _folder(where := destination / "blobs", top) as blobs:
            copied, present = _copy(store.blobs, blobs, where, early, gone_ok=True)  # a gc may remove some meanwhile
            with store.index.writing(changes=False) as tx:  # only read: a read-only store of schema 1 too
                rows = tx.blob_rows()
                named, versions = named_blobs(rows), len(rows)
                _refuse_missing(store, rows, {name for name in named if _regular_size(blobs, name) is None})
                late, _ = _copy(store.blobs, blobs, where, named, gone_ok=False)
                _snapshot(store.index, top, destination)
            stale = [name for name in os.listdir(blobs) if name not in named]
            for name in stale:
                os.unlink(name, dir_fd=blobs)
            os.fsync(blobs)
    return BackupReport(versions, copied + late, present, len(stale))


@contextmanager
def _folder(path: Path, parent: int | None = None) -> Iterator[int]:
    """A descriptor of the folder ``path`` (made when missing), checked to be this user's; within ``parent``
    (a descriptor) ``path.name``, which must be no link: every later name resolves in the folder opened here."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    if parent is None:  # the folder named on the command line: a link to a folder is the user's choice
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags)
    else:
        with suppress(FileExistsError):
            os.mkdir(path.name, dir_fd=parent)
        if stat.S_ISLNK(os.lstat(path.name, dir_fd=parent).st_mode):  # put there after the check
            raise HeirloomError(f"cannot write {path}: {_refused(OSError(errno.ELOOP, ''))}")
        fd = os.open(path.name, flags | os.O_NOFOLLOW, dir_fd=parent)
    try:
        if why := not_ours(os.fstat(fd), path):
            raise HeirloomError(why)
        yield fd
    finally:
        os.close(fd)


def not_ours(info: os.stat_result, path: Path) -> str:
    """Why a backup refuses to write into the folder ``path`` (``info``: its stat) of another user, "" when it is
    this user's (root's when run by root): another could plant a link there for the backup to write through."""
    if (owner := not_mine(info.st_uid)) is None:
        return ""
    writable = "; its group or others may write it too" if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) else ""
    return (
        f"{path} belongs to {owner} (mode {stat.S_IMODE(info.st_mode):o}{writable}), not to "
        f"{owner_name(os.geteuid())}, who runs the backup: its owner could plant links there that the backup would "
        "write through; back up into a folder of your own"
    )


@contextmanager
def _alone(top: int, destination: Path) -> Iterator[None]:
    """Hold the backup folder's lock (``top``: the folder's descriptor) while a backup writes it. Opened
    read-only (a lock needs no more), following no link and made new when missing."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        try:
            lock = os.open(LOCK, flags, dir_fd=top)
        except FileNotFoundError:
            lock = os.open(LOCK, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=top)
    except OSError as exc:  # ELOOP: a link put there after the check; EEXIST: one made meanwhile
        raise HeirloomError(f"cannot take the lock {destination / LOCK}: {_refused(exc)}") from None
    try:
        if not stat.S_ISREG(mode := os.fstat(lock).st_mode):
            raise HeirloomError(f"cannot take the lock {destination / LOCK}: it {not_regular(mode)}")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HeirloomError(
                f"another heirloom models backup is writing {destination}: let it finish, then run this one again"
            ) from None
        yield
    finally:
        os.close(lock)


def _refused(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a link, which a backup never writes through (who else can write that folder?)"
    if exc.errno == errno.EEXIST:
        return "something was put there while the backup ran (who else can write that folder?)"
    return exc.strerror or str(exc)


def _create(folder: int, name: str, path: Path) -> int:
    """A new file ``name`` in ``folder`` (a descriptor; ``path``: its name for errors) open for writing, made
    0600 with O_EXCL | O_NOFOLLOW: a leftover of a run cut short is removed first, but a link is refused, and
    anything put there between the two makes the open fail: nothing is ever written through a link."""
    try:
        if stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode):
            raise HeirloomError(f"cannot write {path}: {_refused(OSError(errno.ELOOP, ''))}")
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    try:
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ELOOP):
            raise
        raise HeirloomError(f"cannot write {path}: {_refused(exc)}") from None


def _write_new(folder: int, name: str, path: Path, data: bytes) -> None:
    """``data`` into the new file ``name`` (``_create``), synced, with the mode a new file gets (0644 under
    umask 022, as the store's blobs: a restored backup is a store)."""
    with os.fdopen(_create(folder, name, path), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fchmod(handle.fileno(), 0o666 & ~umask())
        os.fsync(handle.fileno())


def _write_marker(top: int, destination: Path, data: bytes) -> None:
    """The MARKER, put in place whole (a temp file, then a rename: a link at its name is replaced)."""
    temp = f".{MARKER}.{secrets.token_hex(6)}.tmp"
    try:
        _write_new(top, temp, destination / temp, data)
        os.replace(temp, MARKER, src_dir_fd=top, dst_dir_fd=top)
    except BaseException:
        _discard(top, temp)
        raise
    os.fsync(top)


def _discard(folder: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def _regular_size(folder: int, name: str) -> int | None:
    """The size of the regular file ``name`` in ``folder`` (no link followed), None when there is none."""
    try:
        info = os.lstat(name, dir_fd=folder)
    except FileNotFoundError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@contextmanager
def _writing(destination: Path) -> Iterator[None]:
    """An OSError of the backup's own writes as one naming the backup: a full disk named no
    file (``error: No space left on device``), and its index copy blamed the store's index."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(destination) else ""
        raise HeirloomError(
            f"cannot write the backup in {destination}: {exc.strerror or exc}{where}; run it again once "
            "that is mended (it resumes)"
        ) from exc


def nested(root: Path, destination: Path) -> str:
    """Why no backup of the store at ``root`` can go to ``destination``: one folder holds the other; "" else.
    ``models backup`` asks first, so that this mistake in what was typed is said as one (exit 2)."""
    source, target = root.resolve(), destination.resolve()
    held = target == source or target.is_relative_to(source) or source.is_relative_to(target)
    return f"cannot back up the store at {root} into {destination}: one folder holds the other" if held else ""


def check_destination(root: Path, destination: Path, *, overwrite: bool, schema: int = SCHEMA_VERSION) -> None:
    """HeirloomError, before anything is written, unless ``destination`` is new, empty, or
    an earlier backup of the store at ``root`` (one cut short too: it wrote its marker first)
    holding only what a backup writes, none of it a link (a ``blobs`` linked into the store
    had the backup delete the store's own files), whose index is of the store's ``schema`` or newer (without
    ``overwrite``: the backup taken before an upgrade is the only copy an older heirloom reads)."""
    if destination.is_symlink() and not destination.exists():
        raise DestinationTaken(f"{destination} is a link to nothing ({os.readlink(destination)})")
    if why := nested(root, destination):
        raise HeirloomError(why)
    source, target = root.resolve(), destination.resolve()
    if not target.exists():
        return
    if not target.is_dir():
        raise DestinationTaken(f"{destination} is not a folder")
    for folder, named in ((target, destination), (target / "blobs", destination / "blobs")):
        if folder.is_dir() and not folder.is_symlink() and (why := not_ours(folder.stat(), named)):
            raise HeirloomError(why)
    found = sorted(path.name for path in target.iterdir())
    if not found:
        return
    foreign = [_described(target / name) for name in found if _foreign(target, name)]
    blobs = target / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        foreign += [f"blobs/{_described(p)}" for p in blobs.iterdir() if not _backup_blob(p)]  # a link said (h426 F7)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DestinationTaken(
            f"{destination} holds files a backup does not write ({listed}); a backup removes what the store "
            "lacks, so back up into an empty folder or an earlier backup"
        )
    copied = _marked_source(target / MARKER)
    unmarked = all(MARKER_WRITE.fullmatch(name) or name == LOCK for name in found)  # cut short before its marker
    if copied != str(source) and not overwrite and not unmarked:
        what = f"a backup of the store at {copied}" if copied else f"a store folder with no {MARKER}"
        if copied == "":
            what = f'a folder whose {MARKER} is unreadable or malformed (not {{"source": "STORE FOLDER"}})'
        raise DestinationTaken(
            f"{destination} is {what}, not a backup of {root}: --overwrite replaces its versions with this store's"
        )
    if not overwrite and (older := _schema_of(target / "index.sqlite")) is not None and older < schema:
        raise DestinationTaken(
            f"{destination} holds a backup of schema {older}, and the store index {root / 'index.sqlite'} is of "
            f"schema {schema}: it may be the backup taken before the upgrade, the only copy a heirloom older than "
            f"{SCHEMA_RELEASES.get(schema, schema)} reads; back up into another folder and keep {destination} aside "
            "while you may want to go back (docs/OPERATIONS.md, Upgrading), or --overwrite to replace it"
        )


def _schema_of(index: Path) -> int | None:
    """The schema of a backup's index (a regular file: ``_foreign`` refused anything else), None when there is
    none or it is unreadable (a backup cut short, damage: replaced as before)."""
    if not index.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{quote(str(index))}?mode=ro&immutable=1", uri=True)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None


def _foreign(folder: Path, name: str) -> bool:
    """Whether a backup did not write ``name``: a link, another name, or one of its names that is
    no file (``blobs``: no folder); a FIFO named as its marker or lock hung the backup."""
    path = folder / name
    if path.is_symlink() or not BACKUP_FILES.fullmatch(name):
        return True
    return not (path.is_dir() if name == "blobs" else path.is_file())


def _described(path: Path) -> str:
    if path.is_symlink():
        return f"{path.name} (a link)"
    kind = "a folder" if path.is_dir() else "a file" if path.is_file() else "no regular file"
    return f"{path.name} ({kind})" if BACKUP_FILES.fullmatch(path.name) else path.name


def _backup_blob(path: Path) -> bool:
    return (
        not path.is_symlink()
        and path.is_file()
        and bool(BLOB_NAME.fullmatch(path.name) or PARTIAL_BLOB.fullmatch(path.name))
    )


def _marked_source(marker: Path) -> str | None:
    """The store a backup's MARKER names; None without one, "" when it is unreadable or
    malformed (garbage, ``[1, 2]``, no ``source``): the refusal says which."""
    try:
        source = json.loads(marker.read_text()).get("source")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return ""
    return source if isinstance(source, str) else ""


def _refuse_missing(store: ArtifactStore, rows: list[tuple[str, str, int, str, str]], absent: set[str]) -> None:
    """HeirloomError naming the versions whose blobs the store lacks, before the backup's
    index is replaced: a backup that named a blob it lacks would restore a broken version."""
    gone = {name for name in absent if not (store.blobs / name).is_file()}
    damaged = [f"{project}/{model}@{version}" for project, model, version, *names in rows if gone & set(names)]
    if damaged:
        raise HeirloomError(
            f"the store lacks blobs of {', '.join(damaged)} ({', '.join(sorted(gone))[:300]}): nothing was "
            f"backed up over the earlier copy; to repair each: {REPAIR} (heirloom models verify lists them all)"
        )


def _copy(source: Path, target: int, where: Path, names: set[str], *, gone_ok: bool) -> tuple[int, int]:
    """``(copied, already present)`` of ``names`` into the folder ``where``, open as ``target``;
    each copy lands whole (a new temp file, fsync, rename) and only when its content matches
    its name (a blob is named by its sha256). A blob missing from ``source`` is an error
    unless ``gone_ok``."""
    copied = present = 0
    for name in sorted(names):
        origin, partial = source / name, f".{name}.partial"
        try:
            if (size := _regular_size(target, name)) is not None and size == origin.stat().st_size:
                present += 1
                continue
            _copy_checked(origin, target, where, partial)
        except FileNotFoundError:  # a gc collected it (the first pass holds no lock)
            _discard(target, partial)
            if gone_ok:
                continue
            raise HeirloomError(f"the store names {origin}, which is missing: run heirloom models verify") from None
        except BaseException:
            _discard(target, partial)  # ours, or a link refused: removing a link removes nothing it names
            raise
        os.replace(partial, name, src_dir_fd=target, dst_dir_fd=target)  # a link at ``name`` is replaced
        copied += 1
    return copied, present


def _copy_checked(origin: Path, target: int, where: Path, partial: str) -> None:
    """Copy the blob ``origin`` to the new file ``partial`` in ``target`` (the folder ``where``;
    synced), hashing it on the way: a damaged blob (a flipped bit) is an error, never a backup
    that looks whole."""
    digest = hashlib.sha256()
    try:
        source = os.fdopen(open_regular(origin, os.O_NOFOLLOW), "rb")  # never a link out of the store
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: O_NOFOLLOW met a link
        why = f"it {exc.strerror}" if isinstance(exc, NotRegularFile) else exc.strerror  # "is a FIFO, not a ..."
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else why
        raise HeirloomError(f"cannot back up {origin}: {why}") from None
    with source, os.fdopen(_create(target, partial, where / partial), "wb") as copy:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            copy.write(chunk)
        copy.flush()
        os.fchmod(copy.fileno(), 0o666 & ~umask())  # as the store's blob (0644 under umask 022)
        os.fsync(copy.fileno())
    if digest.hexdigest() != origin.name.partition(".")[0]:
        raise HeirloomError(
            f"{origin} is damaged (its sha256 is {digest.hexdigest()}): nothing was backed up over the earlier copy; "
            f"run heirloom models verify to see which versions use it; to repair each: {REPAIR}"
        )


def _snapshot(index: StoreIndex, top: int, destination: Path) -> None:
    """The index as committed now, through SQLite's online backup (the WAL included) into memory,
    written as a new file (``_create``: SQLite would open a link planted at its name) and put in
    place whole: a backup interrupted here keeps the previous copy, and a failed one leaves no
    partial file. A killed gc's record of blobs to remove is left out: a copy restored over
    blobs a lost newer index referenced again would have had them removed."""
    copy, partial = "index.sqlite", ".index.sqlite.partial"
    try:
        with closing(index.connect()) as source, closing(sqlite3.connect(":memory:")) as target:
            (size,) = source.execute("PRAGMA page_size").fetchone()
            target.execute(f"PRAGMA page_size = {int(size)}")  # a backup into memory needs the source's
            source.backup(target)
            target.execute(f"DROP TABLE IF EXISTS {PENDING}")  # its blobs are not copied: restored, no gc removes any
            target.commit()
            data = target.serialize()
    except sqlite3.Error as exc:  # said as the backup's failure, naming its index
        raise OSError(errno.EIO, f"copying the index failed: {exc}", str(destination / copy)) from exc
    try:
        _write_new(top, partial, destination / partial, data)
    except BaseException:
        _discard(top, partial)
        raise
    for stale in (f"{copy}-wal", f"{copy}-shm", f"{partial}-journal", f"{partial}-wal", f"{partial}-shm"):
        _discard(top, stale)  # a previous copy's, which must not be replayed into this one; a killed run's
    os.replace(partial, copy, src_dir_fd=top, dst_dir_fd=top)
