"""What makes a line of a durable log a record its readers take: a whole JSON object, with text in its
strings and a Unix ``time``; an unusable line is reported once per process, with its line number,
and skipped (``logs.AppendLog.numbered`` and ``logs.LogCursor`` read through here)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("heirloom.store.logs")

#: What ends a torn last line before the next record: no JSON value ends with ')', so the
#: line stays unreadable whatever was cut (a record whole but for its newline included).
TORN_END = b" (torn)\n"


def line_record(
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
