"""What a patient record derives from its timeline: ``codes`` and ``text`` (docs/FHIR.md, "Records").

Shared by the fhir source, which writes them into every record, and the medical apis, which
derive them for a record sent inline, so a model reads one record shape either way (a
model reading ``record.codes`` failed INTERNAL on every inline request); neither plugin
imports the other.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

#: FHIR's dateTime, seconds and zone optional as the fhir reader allows (Dates, docs/FHIR.md): ``fromisoformat``
#: alone read ISO forms FHIR has not (a week date ``2019-W24-4``, ``20190613T100000Z``, ``T10Z``, ``,5``, a zone
#: past 14:00), and inline records took them where the source refused them (h377 F1).
FHIR_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:(?P<second>[0-9]{2})(\.[0-9]+)?)?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)


#: FHIR's date: a year, a month or a day, ASCII digits only (``strptime`` took ``2019-06- 1``, and other digits).
FHIR_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")


def fhir_date(value: str) -> datetime:
    """The first moment of the FHIR date ``value`` (:data:`FHIR_DATE`); ValueError for anything else."""
    if not FHIR_DATE.fullmatch(value):
        raise ValueError(f"not a FHIR date: {value!r}")
    return datetime.strptime(value, ("%Y", "%Y-%m", "%Y-%m-%d")[value.count("-")])


def no_such_day(value: Any) -> str | None:
    """Why ``value``, written in FHIR's date or dateTime form, is still no moment: no such day or time exists
    (``2019-02-30``, ``T25:00``), which "not a FHIR date" misnamed (checker h421 F4); None otherwise."""
    if not isinstance(value, str) or not (FHIR_DATE.fullmatch(value) or FHIR_DATE_TIME.fullmatch(value)):
        return None
    try:
        fhir_moment(value) if "T" in value else fhir_date(value)
    except ValueError:
        return f"{value!r} has the form of a FHIR date but no such day or time exists"
    return None


#: What an ISO 8601 date or date-time looks like, for the refusal of a time that is none.
ISO_EXAMPLES = "2026-12-06 or 2026-12-06T10:00:00Z"
#: A leap second in an ISO 8601 time (``23:59:60``), which Python's datetime has not.
LEAP_SECOND = re.compile(r"([T ]\d{2}(:?)\d{2}\2)60(?=[.,Z+-]|$)")  # extended, basic, or after a space (v24 F6)


#: ISO 8601's calendar month (``2024-03``) and ordinal date (``2024-061``; basic, ``2024061``, before a time too:
#: checker v37 F10), which ``fromisoformat`` refuses.
MONTH, ORDINAL = re.compile(r"(\d{4})-(\d{2})"), re.compile(r"(\d{4})-(\d{3})([T ].+)?|(\d{4})(\d{3})([T ].+)")


def iso_moment(text: str) -> datetime:
    """The ISO 8601 date or date-time ``text``, a leap second read as its :59 (as the fhir source reads one: a
    monitor item and a ratings time refused it as no ISO 8601, checker h405 F3), a month as its first day and an
    ordinal date as its day, with a time too (refused as no ISO 8601, checker h439 F2, v36 F9); ValueError otherwise."""
    if month := MONTH.fullmatch(text):
        return datetime(int(month[1]), int(month[2]), 1)
    if ordinal := ORDINAL.fullmatch(text):
        year, number, time = ordinal.group(1, 2, 3) if ordinal[1] else ordinal.group(4, 5, 6)
        if day := ordinal_day(int(year), int(number)):
            return iso_moment(f"{day.date().isoformat()}{time}") if time else day
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        if not LEAP_SECOND.search(text):
            raise
        return datetime.fromisoformat(LEAP_SECOND.sub(r"\g<1>59", text, count=1))


def ordinal_day(year: int, day: int) -> datetime | None:
    """Day ``day`` (1-365, or 366 in a leap year) of ``year``, ISO 8601's ordinal date; None for no such day."""
    return datetime(year, 1, 1) + timedelta(days=day - 1) if 1 <= day <= 365 + calendar.isleap(year) else None


def fhir_moment(value: str) -> datetime:
    """The FHIR dateTime ``value`` (:data:`FHIR_DATE_TIME`), a leap second (``23:59:60``, which FHIR allows and
    Python's datetime has not) read as its :59; ValueError for anything else."""
    if not (form := FHIR_DATE_TIME.fullmatch(value)):
        raise ValueError(f"not a FHIR dateTime: {value!r}")
    if form["second"] == "60":
        value = value[: form.start("second")] + "59" + value[form.end("second") :]
    return datetime.fromisoformat(value)


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
        return fhir_moment(end) < fhir_moment(start)  # a leap second too: fromisoformat raised on it (v16 F1)
    return (_day(start[:10], last=False) - _day(end[:10], last=True)).days > 1


def first_before_birth(birth: str | None, timeline: Iterable[Any]) -> Any | None:
    """The first dated encounter of ``timeline`` before the ``birth`` date (``before_birth``), if any: each is asked,
    a partial date sorting first hid one a week before birth (v24 F3). The fhir source counts such records, and the
    medical routes refuse one sent inline: one rule."""
    dated = (e for e in timeline if e.kind == "encounter" and e.date) if birth else ()
    return next((e for e in dated if before_birth(birth or "", e.date)), None)


def before_birth(birth: str, moment: str) -> bool:
    """Whether an encounter at ``moment`` (a date, or a UTC or zone-less time) is before the ``birth`` date. A
    birthDate is a local day in an unknown zone, an encounter's time UTC: only one before that day began anywhere
    (UTC+14) is (2016-06-12T01:00+09:00, 16:00Z the day before, is not); dates compare at the precision both have
    ("1970" and "1970-06" are FHIR's partial dates). One rule for the fhir source's count and the medical routes'
    inline records, which refused what the source read (checker h405 F1)."""
    birth = birth[:10]
    if "T" not in moment:
        shared = min(len(moment[:10]), len(birth))
        return moment[:shared] < birth[:shared]
    try:
        earliest = datetime.fromisoformat((birth + "-01-01")[:10]) - timedelta(hours=14)  # its first day
    except OverflowError:  # born on 0001-01-01: nothing is earlier
        return False
    return datetime.fromisoformat(moment.removesuffix("Z")) < earliest


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
