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
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.files import NotRegularFile, fsync_dir, open_regular, write_atomic
from heirloom.store.artifacts import ArtifactStore
from heirloom.store.gc import BLOB_NAME, PARTIAL_BLOB, REPAIR
from heirloom.store.index import BACKUP_MARKER, StoreIndex
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
    if not early:
        raise HeirloomError(
            f"the store at {store.root} holds no versions: nothing to back up (is it the store you meant? "
            "HEIRLOOM_HOME, HEIRLOOM_STORE or --store choose it)"
        )
    check_destination(store.root, destination, overwrite=overwrite)
    with _writing(destination), _alone(destination):
        for leftover in destination.glob(f".{MARKER}.*.tmp"):  # a marker write a kill cut short
            leftover.unlink()
        write_atomic(destination / MARKER, json.dumps({"source": str(store.root.resolve())}).encode())  # first
        blobs = destination / "blobs"
        blobs.mkdir(exist_ok=True)
        copied, present = _copy(store.blobs, blobs, early, gone_ok=True)  # a gc may remove some meanwhile
        with store.index.writing() as tx:
            rows = tx.blob_rows()
            named, versions = named_blobs(rows), len(rows)
            _refuse_missing(store, rows, {name for name in named if not (blobs / name).is_file()})
            late, _ = _copy(store.blobs, blobs, named, gone_ok=False)
            _snapshot(store.index, destination / "index.sqlite")
        stale = [path for path in blobs.iterdir() if path.name not in named]
        for path in stale:
            path.unlink()
        fsync_dir(blobs)
    return BackupReport(versions, copied + late, present, len(stale))


@contextmanager
def _alone(destination: Path) -> Iterator[None]:
    """Hold the backup folder's lock (made with the folder) while a backup writes it."""
    destination.mkdir(parents=True, exist_ok=True)
    with open(destination / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HeirloomError(
                f"another heirloom models backup is writing {destination}: let it finish, then run this one again"
            ) from None
        yield


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


def check_destination(root: Path, destination: Path, *, overwrite: bool) -> None:
    """HeirloomError, before anything is written, unless ``destination`` is new, empty, or
    an earlier backup of the store at ``root`` (one cut short too: it wrote its marker first)
    holding only what a backup writes, none of it a link (a ``blobs`` linked into the store
    had the backup delete the store's own files)."""
    if destination.is_symlink() and not destination.exists():
        raise HeirloomError(f"{destination} is a link to nothing ({os.readlink(destination)})")
    if why := nested(root, destination):
        raise HeirloomError(why)
    source, target = root.resolve(), destination.resolve()
    if not target.exists():
        return
    if not target.is_dir():
        raise HeirloomError(f"{destination} is not a folder")
    found = sorted(path.name for path in target.iterdir())
    if not found:
        return
    foreign = [_described(target / name) for name in found if _foreign(target, name)]
    blobs = target / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        foreign += [f"blobs/{p.name}" for p in blobs.iterdir() if not _backup_blob(p)]
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise HeirloomError(
            f"{destination} holds files a backup does not write ({listed}); a backup removes what the store "
            "lacks, so back up into an empty folder or an earlier backup"
        )
    copied = _marked_source(target / MARKER)
    unmarked = all(MARKER_WRITE.fullmatch(name) or name == LOCK for name in found)  # cut short before its marker
    if copied != str(source) and not overwrite and not unmarked:
        what = f"a backup of the store at {copied}" if copied else f"a store folder with no {MARKER}"
        if copied == "":
            what = f'a folder whose {MARKER} is unreadable or malformed (not {{"source": "STORE FOLDER"}})'
        raise HeirloomError(
            f"{destination} is {what}, not a backup of {root}: --overwrite replaces its versions with this store's"
        )


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


def _copy(source: Path, target: Path, names: set[str], *, gone_ok: bool) -> tuple[int, int]:
    """``(copied, already present)`` of ``names``; each copy lands whole (temp file, fsync,
    rename) and only when its content matches its name (a blob is named by its sha256). A
    blob missing from ``source`` is an error unless ``gone_ok``."""
    copied = present = 0
    for name in sorted(names):
        origin, copy = source / name, target / name
        partial = copy.with_name(f".{name}.partial")
        try:
            if copy.is_file() and copy.stat().st_size == origin.stat().st_size:
                present += 1
                continue
            _copy_checked(origin, partial)
        except FileNotFoundError:  # a gc collected it (the first pass holds no lock)
            partial.unlink(missing_ok=True)
            if gone_ok:
                continue
            raise HeirloomError(f"the store names {origin}, which is missing: run heirloom models verify") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(copy)
        copied += 1
    return copied, present


def _copy_checked(origin: Path, partial: Path) -> None:
    """Copy the blob ``origin`` to ``partial`` (synced), hashing it on the way: a damaged blob
    (a flipped bit) is an error, never a backup that looks whole."""
    digest = hashlib.sha256()
    try:
        source = os.fdopen(open_regular(origin, os.O_NOFOLLOW), "rb")  # never a link out of the store
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: O_NOFOLLOW met a link
        why = f"it {exc.strerror}" if isinstance(exc, NotRegularFile) else exc.strerror  # "is a FIFO, not a ..."
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else why
        raise HeirloomError(f"cannot back up {origin}: {why}") from None
    with source, open(partial, "wb") as copy:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            copy.write(chunk)
        copy.flush()
        os.fsync(copy.fileno())
    if digest.hexdigest() != origin.name.partition(".")[0]:
        raise HeirloomError(
            f"{origin} is damaged (its sha256 is {digest.hexdigest()}): nothing was backed up over the earlier copy; "
            f"run heirloom models verify to see which versions use it; to repair each: {REPAIR}"
        )


def _snapshot(index: StoreIndex, copy: Path) -> None:
    """The index as committed now, through SQLite's online backup (the WAL included), put in
    place whole: a backup interrupted here keeps the previous copy, and a failed one leaves
    no partial file. A killed gc's record of blobs to remove is left out: a copy restored over
    blobs a lost newer index referenced again would have had them removed."""
    partial = copy.with_name(f".{copy.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(index.connect()) as source, closing(sqlite3.connect(partial)) as target:
            source.backup(target)
            target.execute(f"DROP TABLE IF EXISTS {PENDING}")  # its blobs are not copied: restored, no gc removes any
            target.commit()
    except sqlite3.Error as exc:  # the copy's disk, not the store's index: said as the backup's
        partial.unlink(missing_ok=True)
        raise OSError(errno.EIO, f"copying the index failed: {exc}", str(copy)) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    for stale in (copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
        stale.unlink(missing_ok=True)  # a previous copy's, which must not be replayed into this one
    partial.replace(copy)
