"""A consistent copy of an artifact store, taken while daemons read it and training (with
its retention gc) writes it.

Blobs are immutable and named by content, so most of them are copied without any lock;
then, under the index's write lock (nothing is stored, promoted or collected meanwhile),
the index is snapshotted with SQLite's backup API and the blobs it names that are still
missing are copied: the copy never names a blob it lacks, however a gc raced the first
pass. The lock is held for the index and the newest blobs only, well within the time a
writer waits for it (index.BUSY_TIMEOUT).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.core.fsutil import fsync_dir
from heirloom.store.artifacts import ArtifactStore


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


def backup_store(store: ArtifactStore, destination: Path) -> BackupReport:
    """Copy ``store`` to ``destination`` (a store folder: ``index.sqlite`` and ``blobs/``),
    incrementally: a blob already there with the same size is kept."""
    if destination.resolve() == store.root.resolve():
        raise HeirloomError(f"cannot back up the store at {store.root} into itself")
    blobs = destination / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    with store.index.reading() as tx:
        early = named_blobs(tx.blob_rows())
    copied, present = _copy(store.blobs, blobs, early, gone_ok=True)  # a gc may remove some meanwhile
    with store.index.writing() as tx:
        rows = tx.blob_rows()
        named, versions = named_blobs(rows), len(rows)
        _snapshot(store.index.path, destination / "index.sqlite")
        late, _ = _copy(store.blobs, blobs, named - early, gone_ok=False)
    stale = [path for path in blobs.iterdir() if path.name not in named]
    for path in stale:
        path.unlink()
    fsync_dir(blobs)
    return BackupReport(versions, copied + late, present, len(stale))


def _copy(source: Path, target: Path, names: set[str], *, gone_ok: bool) -> tuple[int, int]:
    """``(copied, already present)`` of ``names``; each copy lands whole (temp file, fsync,
    rename). A blob missing from ``source`` is an error unless ``gone_ok``."""
    copied = present = 0
    for name in sorted(names):
        origin, copy = source / name, target / name
        try:
            size = origin.stat().st_size
        except FileNotFoundError:
            if gone_ok:
                continue
            raise HeirloomError(f"the store names {origin}, which is missing: run heirloom models verify") from None
        if copy.is_file() and copy.stat().st_size == size:
            present += 1
            continue
        partial = copy.with_name(f".{name}.partial")
        shutil.copyfile(origin, partial, follow_symlinks=False)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(copy)
        copied += 1
    return copied, present


def _snapshot(index: Path, copy: Path) -> None:
    """The index as committed now, through SQLite's online backup (the WAL included), put in
    place whole: a backup interrupted here keeps the previous copy."""
    partial = copy.with_name(f".{copy.name}.partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(index)) as source, closing(sqlite3.connect(partial)) as target:
        source.backup(target)
    for stale in (copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
        stale.unlink(missing_ok=True)  # a previous copy's, which must not be replayed into this one
    partial.replace(copy)
