"""Switching a new store index to write-ahead logging, waiting for another process that opens it too.

SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without calling its busy
handler, while another connection holds a lock on the file: two processes opening a fresh store together (a
broker and the worker started beside it) had one fail to start, "the store index ... cannot be used: database
is locked" (a fresh-clone CI run saw it once). The switch is made persistent by the first that gets it.
"""

from __future__ import annotations

import sqlite3
import time

#: Seconds between two tries: a creator holds the lock for the few statements of a new schema.
RETRY_EVERY = 0.02


def into_wal(conn: sqlite3.Connection, wait: float) -> None:
    """``PRAGMA journal_mode=WAL`` on ``conn``, tried again while the file is locked, for up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(RETRY_EVERY)
