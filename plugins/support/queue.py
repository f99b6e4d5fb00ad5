"""The handoff queue as the ``handoffs`` and ``resolve`` routes see it: which handoffs the
log holds and what people decided, kept in step with the log by reading only what was
appended since the last request (by this process or by another worker sharing the log).
A request reads a few lines, not the whole file: the log may hold ``handoff_max_mb`` MiB, which
the api's ``start`` reads once, a record at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import heirloom
from heirloom_plugins.support.sources import decide, handoff_fault, waiting_intents

log = logging.getLogger("heirloom_plugins.support.queue")


class HandoffQueue:
    """Handoff ids with the offset of their line in the log, and each one's latest decision.
    Only offsets stay in memory; a listing reads its entries back from the file."""

    def __init__(self, path: Path):
        self._cursor = heirloom.LogCursor(path, check=handoff_fault)
        self._offsets: dict[str, int] = {}
        self._decisions: dict[str, dict[str, Any]] = {}
        self._accepted: set[str] = set()
        self._lock = threading.Lock()
        self._said: str | None = None  # the last read error logged: once per change, not per request

    @contextlib.contextmanager
    def _readable(self) -> Iterator[None]:
        """A log that cannot be read (a FIFO or a folder in its place, a disk error) is
        UNAVAILABLE, as a write that fails is: the operator's log names the file, the client
        hears no server path."""
        try:
            yield
        except (heirloom.HeirloomError, OSError) as exc:
            if str(exc) != self._said:
                log.error("the handoff log cannot be read: %s", exc)
                self._said = str(exc)
            message = "the handoff log could not be read; nothing was changed, retry later"
            raise heirloom.RequestError("UNAVAILABLE", message, retry_after_ms=1000) from None
        self._said = None

    def catch_up(self) -> None:
        """Read what the log holds now (the whole log the first time: ``start`` calls it, so the first
        request reads only what was appended since); a log that cannot be read is logged and left to
        the next request, which says UNAVAILABLE."""
        with self._lock, contextlib.suppress(heirloom.RequestError):
            self._catch_up()

    def _catch_up(self) -> None:
        """Take in the records appended since the last catch-up, one at a time: a full log's records held
        all at once cost a worker 1.2 GiB for good (the ids kept were scattered among them)."""
        with self._readable():
            restarted, found = self._cursor.stream()
            if restarted:  # the log was replaced (restored from a backup): what it holds now
                self._offsets.clear()
                self._decisions.clear()
                self._accepted.clear()
            for offset, entry in found:
                if entry["type"] == "handoff":
                    self._offsets[entry["id"]] = offset
                elif entry["type"] == "acceptance":
                    self._accepted.add(entry["intent"])
                elif entry["id"] in self._offsets:  # a resolution: the latest intent and the latest answer win
                    self._decisions[entry["id"]] = decide(self._decisions.get(entry["id"]), entry)

    def holds(self, handoff_id: str) -> bool:
        with self._lock:
            self._catch_up()
            return handoff_id in self._offsets

    def text_of(self, handoff_id: str) -> str | None:
        """The text of handoff ``handoff_id`` as it was queued (None when the log no longer holds it)."""
        with self._lock:
            self._catch_up()
            offset = self._offsets.get(handoff_id)
            with self._readable():
                entries = self._cursor.records_at([offset]) if offset is not None else []
        return entries[0].get("text") if entries else None

    def listed(self, include_resolved: bool, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` handoffs, newest first, each with its ``resolution`` (or None)."""
        return self.page(include_resolved, limit)[0]

    def page(
        self, include_resolved: bool, limit: int, before: str | None = None, max_bytes: int | None = None
    ) -> tuple[list[dict[str, Any]], str | None, bool]:
        """``(handoffs, next, cut)``: up to ``limit`` handoffs, newest first, each with its ``resolution`` (or
        None), older than handoff ``before`` when given (NOT_FOUND at ``body.before`` when the log does not
        hold it), and no more than ``max_bytes`` of them as JSON (at least one: ``cut`` says the bytes
        stopped the listing); ``next``: the id to pass as ``before`` for the rest, None when none is left."""
        with self._lock:
            self._catch_up()
            if before is not None and before not in self._offsets:
                raise heirloom.RequestError("NOT_FOUND", f"no handoff with id {before!r}", "body.before")
            candidates = reversed(self._offsets)
            if before is not None:  # the ids after it, in the newest-first order
                candidates = itertools.dropwhile(lambda handoff_id: handoff_id != before, candidates)
                next(candidates)
            chosen = []
            for handoff_id in candidates:
                if include_resolved or handoff_id not in self._decisions:
                    chosen.append(self._offsets[handoff_id])
                    if len(chosen) > limit:  # one more than listed: whether any is left
                        break
            with self._readable():
                entries = self._cursor.records_at(chosen[:limit])
            listed, used = [], 0
            for entry in entries:
                item = {**entry, "resolution": self._listed(self._decisions.get(entry["id"]))}
                used += len(json.dumps(item, ensure_ascii=False).encode())
                if listed and max_bytes is not None and used > max_bytes:
                    return listed, listed[-1]["id"], True
                listed.append(item)
            return listed, listed[-1]["id"] if listed and len(chosen) > limit else None, False

    def open_count(self) -> int:
        """How many handoffs no one has resolved: a listing shows ``limit`` of them at most."""
        return self.owed()[0]

    def owed(self) -> tuple[int, int]:
        """``(open handoffs, new intents waiting for accept_intent)``: the decisions and acceptances
        the log must keep room for, so a full queue can still be worked off."""
        with self._lock:
            self._catch_up()
            opened = sum(handoff_id not in self._decisions for handoff_id in self._offsets)
            return opened, len(waiting_intents(self._decisions.values(), self._accepted))

    def decision_of(self, handoff_id: str) -> dict[str, Any] | None:
        """Handoff ``handoff_id``'s latest decision, None while it is open."""
        with self._lock:
            self._catch_up()
            return self._decisions.get(handoff_id)

    def _listed(self, decision: dict[str, Any] | None) -> dict[str, Any] | None:
        """A decision as listed: ``new_intent`` only while its intent waits for accept_intent."""
        if decision and decision.get("new_intent") and decision["intent"] in self._accepted:
            return {key: value for key, value in decision.items() if key != "new_intent"}
        return decision

    def waiting(self) -> dict[str, int]:
        """``new intent -> resolutions`` of the latest decisions naming an intent not accepted yet."""
        with self._lock:
            self._catch_up()
            return dict(waiting_intents(self._decisions.values(), self._accepted))

    def accepted(self) -> dict[str, int]:
        """``accepted new intent -> resolutions`` naming it: what accepting it again answers."""
        with self._lock:
            self._catch_up()
            named = waiting_intents(self._decisions.values(), set())
            return {intent: named[intent] for intent in self._accepted}
