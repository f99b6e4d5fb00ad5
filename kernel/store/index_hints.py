"""What an error of the store index adds to SQLite's own words: why the file cannot be used where it is.

SQLite says "attempt to write a readonly database" whether the store's folder, its disk or the index file
itself refuses the write, and "unable to open database file" whatever stopped it: the hint says which.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from heirloom.store.descriptors import out_of_descriptors

#: Why a change to a store this process cannot write fails.
READ_ONLY = " (the store's folder is read-only: its models can be listed and served, not changed)"
#: Why a read-only store whose ``-wal`` file holds changes cannot be read (SQLite needs its ``-shm`` too).
WAL_HINT = (
    " (the store's folder is read-only, and a writer left changes in index.sqlite-wal that cannot be read "
    "here: run one heirloom command where the folder is writable, e.g. models list, to fold them in)"
)


def hint(exc: sqlite3.OperationalError, path: Path, *, writes: bool, read_only: bool, opened: bool) -> str:
    """The clause, with its leading space, that says why ``exc`` happened on the index at ``path`` ("" when
    SQLite's words say it all): ``writes`` is False for a reader, ``read_only`` where the store's folder is
    read-only to this process, ``opened`` once the index was opened (a missing table then means it was
    replaced)."""
    said = str(exc)
    environment = any(word in said for word in ("unable to open", "readonly", "disk I/O", "full"))
    if "unable to open" in said and (exhausted := out_of_descriptors()):
        return f" ({exhausted}: raise its limit, LimitNOFILE or ulimit -n)"
    if not writes:
        return ""
    if read_only:
        wal = path.with_name(f"{path.name}-wal")
        return WAL_HINT if wal.exists() and "readonly" not in said else READ_ONLY  # a refused write: -wal was read
    if not path.parent.is_dir():  # "unable to open database file" said nothing of why
        return f" (its folder {path.parent} is gone (moved or removed while in use?))"
    if "readonly" in said and path.exists() and not os.access(path, os.W_OK):  # chmod 444, chattr +i
        return (
            f" ({path.name} itself is read-only to this process: make it writable (chmod u+w, chattr -i) to change "
            "the store; it can be read as it is)"
        )
    if said.startswith("no such table") and opened:  # emptied under a running daemon
        return " (the file was emptied or replaced while in use: restore index.sqlite from a backup)"
    if "unable to open" in said and path.exists() and not os.access(path, os.R_OK):  # chmod 000 (h437 F4)
        return f" ({path.name} itself cannot be read by this process: give it back its read permission)"
    return " (its folder must be writable, even to read, and its disk not full)" if environment else ""


def written_by(conn: sqlite3.Connection, ours: str) -> str:
    """Which heirloom wrote an index of a newer schema, as far as its rows say: the release that stored its newest
    version when that is newer than ``ours``; the newer schema's tables may differ, so any failure says less."""
    try:
        found = [name for (name,) in conn.execute("SELECT DISTINCT heirloom_version FROM artifacts")]
    except sqlite3.Error:
        found = []
    newer = [name for name in found if release(name) > release(ours)]
    if newer:
        return f"its newest version was stored by heirloom {max(newer, key=release)}"
    return f"a heirloom newer than {ours} wrote it"


def release(name: object) -> tuple[int, ...]:
    """``"0.2.0"`` as ``(0, 2, 0)``; () for what is no plain release number (``0+unknown``, a local build)."""
    return tuple(map(int, name.split("."))) if isinstance(name, str) and re.fullmatch(r"\d+(\.\d+)*", name) else ()
