"""Feedback logs: the corrections an api accepted, on a durable append-only log.

Nothing is ever rewritten. Removing a record appends a *tombstone* naming it, and
accepting a label the model did not know appends an *acceptance*, so the log stays an
audit trail of what was received and decided, and a crash can never damage a record that
was acknowledged (every line goes through :class:`~heirloom.store.logs.AppendLog`).
Readers replay the log: a record counts unless a tombstone names it, and a record marked
``new_label`` (its label was not one of the served model's) trains only once an
acceptance names that label. ``heirloom feedback`` lists and amends these logs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs

from heirloom.core.quota import StorageQuota
from heirloom.store.labels import blank, label_problem
from heirloom.store.log_records import warn_line
from heirloom.store.logs import AppendLog

#: ``op`` of a tombstone line and of a label acceptance; records have no ``op``.
REMOVE = "remove"
ACCEPT_LABEL = "accept-label"
#: Set on a record whose label the served model lacked when it was recorded.
NEW_LABEL = "new_label"
#: Set by an api on such a record whose label a known one differs from only in spelling (``Claims``:
#: ``claims``): ``heirloom feedback accept-label`` names it in a warning.
CLOSE_TO = "close_to"


@attrs.frozen
class Entry:
    """One recorded item, with the tombstone that removed it (if any)."""

    record: dict[str, Any]
    removed: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.record["id"]

    def status(self, accepted: set[str]) -> str:
        """``ok``, ``removed``, or ``new label`` (waiting for its label to be accepted)."""
        if self.removed is not None:
            return "removed"
        if self.record.get(NEW_LABEL) and self.record.get("label") not in accepted:
            return "new label"
        return "ok"


@attrs.frozen
class Replay:
    """A feedback log read from start to end: its records, tombstones and acceptances."""

    entries: list[Entry]
    #: Accepted new labels, each with the acceptance line that accepted it.
    accepted: dict[str, dict[str, Any]]

    def find(self, record_id: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.id == record_id), None)

    def trainable(self) -> Iterator[dict[str, Any]]:
        """The records a training run uses: not removed, label known or accepted."""
        labels = set(self.accepted)
        return (entry.record for entry in self.entries if entry.status(labels) == "ok")

    def pending_labels(self) -> dict[str, int]:
        """New labels still waiting for acceptance, with how many live records carry each."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            if entry.status(set(self.accepted)) == "new label":
                counts[entry.record["label"]] = counts.get(entry.record["label"], 0) + 1
        return counts


class FeedbackLog:
    """Appends records (each given an id), tombstones and label acceptances to one log."""

    #: The flag an api sets on a record whose label the served model lacks.
    NEW_LABEL: ClassVar[str] = NEW_LABEL
    CLOSE_TO: ClassVar[str] = CLOSE_TO

    def __init__(self, path: Path, *, max_bytes: int | None = None, quota: StorageQuota | None = None):
        """``max_bytes`` caps the log and ``quota`` counts it against the project's log quota
        (``AppendLog``): past either, an append raises ``LogFull`` and writes nothing."""
        self.path = Path(path)
        self._log = AppendLog(self.path, max_bytes=max_bytes, quota=quota)

    def add(self, record: dict[str, Any]) -> str:
        """Record ``record`` (any JSON object with a ``label``; a ``text``, if any, non-blank text) durably under a new
        random id, which is returned. One every reader would skip is a ValueError, so no route acknowledges it."""
        record_id = secrets.token_hex(8)
        if "op" in record or (problem := _fault(line := {"id": record_id, **record})):
            said = "'op' marks a tombstone or an acceptance" if "op" in record else problem
            raise ValueError(f"not a feedback record: {said}; nothing was written")
        self._log.append(line)
        return record_id

    def remove(self, record_id: str, reason: str = "") -> None:
        """Append a tombstone: the record stays in the log but no reader counts it."""
        self.remove_all([record_id], reason)

    def remove_all(self, record_ids: list[str], reason: str = "") -> None:
        """Append a tombstone for each of ``record_ids`` in one durable write: all of them or none."""
        self._log.append_all([{"op": REMOVE, "id": record_id, "reason": reason} for record_id in record_ids])

    def accept_label(self, label: str, reason: str = "") -> None:
        """Accept ``label``: records that carry it as a new label now train."""
        self._log.append({"op": ACCEPT_LABEL, "label": label, "reason": reason})

    def close(self) -> None:
        self._log.close()

    @staticmethod
    def replay(path: Path) -> Replay:
        """Read the log at ``path`` (empty if absent). Lines written before records had
        ids are named ``line-N`` by their line number."""
        entries: dict[str, Entry] = {}
        accepted: dict[str, dict[str, Any]] = {}
        for number, line in AppendLog.numbered(Path(path), check=_fault):
            op = line.get("op")
            if op == REMOVE:
                target = entries.get(line.get("id"))
                if target is not None and target.removed is None:
                    entries[target.id] = attrs.evolve(target, removed=line)
            elif op == ACCEPT_LABEL:
                accepted.setdefault(line["label"], line)
            elif op is None:
                record = line if "id" in line else {"id": f"line-{number}", **line}
                if record["id"] in entries:  # two logs merged by hand, a record copied twice
                    warn_line(path, number, f" repeats the id {record['id']} of an earlier record; the later is kept")
                entries[record["id"]] = Entry(record)
        return Replay(list(entries.values()), accepted)


def _fault(line: dict[str, Any]) -> str | None:
    """What makes a feedback log line unusable (AppendLog.read skips it, naming the line): a
    line edited by hand is held to what the feedback route refuses, a label no model may learn
    (``label_problem``, as the text sources check their files' labels) or a blank ``text``.
    A record is any JSON object with a ``label`` (an api's inputs need not be a text): only a
    ``text`` it holds must be text, which the text sources train on."""
    op = line.get("op")
    needed = {None: ("label",), REMOVE: ("id",), ACCEPT_LABEL: ("label",)}.get(op)
    if needed is None:
        return f"unknown op {str(op)[:40]!r}"
    if op is None:
        needed = (*needed, *(name for name in ("id", "text") if name in line))
    wrong = [name for name in needed if not isinstance(line.get(name), str)]
    if wrong:
        return f"{', '.join(map(repr, wrong))} must be text"
    if "text" in needed and blank(line["text"]):
        return "'text' is blank"
    return label_problem(line["label"], (), "label", allow_new=True) if "label" in needed else None
