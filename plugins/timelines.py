"""What a patient record derives from its timeline: ``codes`` and ``text`` (docs/FHIR.md, "Records").

Shared by the fhir source, which writes them into every record, and the medical apis, which
derive them for a record sent inline, so a model reads one record shape either way (a
model reading ``record.codes`` failed INTERNAL on every inline request); neither plugin
imports the other.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any


def codes_by_kind(timeline: Iterable[Any], kinds: Iterable[str]) -> dict[str, list[str]]:
    """Each kind's codes in the timeline's order, repeats kept (every kind a key, if empty)."""
    codes: dict[str, list[str]] = {kind: [] for kind in kinds}
    for event in timeline:
        if event.code:
            codes[event.kind].append(event.code)
    return codes


def ends_before_start(start: str, end: str) -> bool:
    """Whether an encounter's period ``end`` is surely before its ``start`` (FHIR's invariant per-1 forbids it): read
    as written, an undated event recorded at a 2021 visit mistyped to end in 2019 was history of a 2020 visit
    (checker h361 F3). As instants where both are of one form (UTC, or with no zone); else as days with a day to
    spare, a date being local in a zone FHIR does not say, and a partial one (``2019-03``) its whole month."""
    if "T" in start and "T" in end and start.endswith("Z") == end.endswith("Z"):
        return datetime.fromisoformat(end.removesuffix("Z")) < datetime.fromisoformat(start.removesuffix("Z"))
    return (_day(start[:10], last=False) - _day(end[:10], last=True)).days > 1


def _day(value: str, *, last: bool) -> date:
    """The first (or ``last``) day of a FHIR date: ``2019``, ``2019-03`` or ``2019-03-05``."""
    year, month, day = (int(part) for part in f"{value}-0-0".split("-")[:3])
    if month == 0:
        month = 12 if last else 1
    if day == 0:
        day = calendar.monthrange(year, month)[1] if last else 1
    return date(year, month, day)


def summary(gender: str | None, birth: str | None, deceased: str | None, timeline: Iterable[Any]) -> str:
    """A readable history: one line per event, dates first."""
    head = f"Patient: {gender or 'unknown gender'}, born {birth or 'unknown'}"
    lines = [head + (f", died {deceased[:10]}." if deceased else ".")]
    lines.extend(_line(e) for e in timeline)
    return "\n".join(lines)


def _line(e: Any) -> str:
    text = f"{(e.date or 'undated')[:10]} {e.kind}: {e.display or e.code or 'unspecified'}"
    if e.value is not None:
        text += f" {_number(e.value)}" + (f" {e.unit}" if e.unit else "")
    if e.components:
        parts = (f"{m.display or m.code}: {_number(m.value)} {m.unit or ''}".rstrip() for m in e.components)
        text += f" ({'; '.join(parts)})"
    if e.end and e.end[:10] != (e.date or "")[:10]:
        text += f", until {e.end[:10]}"
    if e.text:
        text += "\n" + " ".join(e.text.split())
    return text


def _number(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)
