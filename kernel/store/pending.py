"""Blobs a gc is removing: recorded in the index with the row deletion that frees them, cleared once removed.

gc deletes version rows in one transaction and removes their files in a second one. A gc killed between the
two left blobs no row references, which every later ``gc --keep N`` kept as orphans (as if an index restored
from an older backup had lost their rows) and no quota counted, until someone ran ``--delete-orphans``. The
row transaction now also records the blobs it frees here (same commit: both or neither), the file phase
clears the record, and every later gc first completes what a killed one left: it removes the recorded blobs
no version references (never one a version stored since references again: equal content re-stored) and
clears the record of every one.

The table is made by the first gc that records anything, outside the schema's version: an older heirloom
reads and writes the index as before, leaving the table alone.
"""

from __future__ import annotations

from heirloom.store.index import Transaction

TABLE = "pending_removals"


def pending_removals(tx: Transaction) -> set[str]:
    """Names of the blobs a gc recorded and did not clear (a kill cut it short); none in an index without the
    table."""
    made = tx.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    return {name for (name,) in tx.conn.execute(f"SELECT name FROM {TABLE}")} if made else set()


def record_removals(tx: Transaction, names: list[str]) -> None:
    """Record ``names`` as being removed (in ``tx``, the transaction that deletes the rows freeing them), and
    only them: a recorded blob left out of them is referenced again or gone already."""
    if not names and not pending_removals(tx):
        return
    tx.conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY)")
    tx.conn.execute(f"DELETE FROM {TABLE}")
    tx.conn.executemany(f"INSERT INTO {TABLE} (name) VALUES (?)", [(name,) for name in names])


def clear_removals(tx: Transaction, names: list[str]) -> None:
    """Forget ``names``: removed, or referenced again."""
    if names and pending_removals(tx):
        tx.conn.executemany(f"DELETE FROM {TABLE} WHERE name = ?", [(name,) for name in names])
