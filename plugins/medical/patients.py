"""Patients as the medical components read them.

A patient is the ``fhir`` source's record (docs/FHIR.md), or the same shape sent inline
on the wire (``{"record": ...}``, what ``heirloom data show --json`` prints): both have
``id``, ``gender``, ``birth_date`` and a time-ordered ``timeline`` of events with
``kind``, ``id``, ``date``, ``end``, ``code``, ``display``, ``status``, ``value``,
``unit``, ``components`` and ``encounter``. The ``*Input`` classes below are that shape
as route inputs: the daemon validates a body against them, so a malformed record is
INVALID_ARGUMENT naming the field (``body.record.timeline[3].date``).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import attrs

from heirloom_plugins.code_systems import code_mistake, display_mistake
from heirloom_plugins.timelines import (
    codes_by_kind,
    ends_before_start,
    fhir_date,
    fhir_moment,
    first_before_birth,
    no_such_day,
    summary,
)

#: FHIR R4's administrative-gender codes: all the fhir source writes (a Patient with another is an error there).
GENDERS = ("male", "female", "other", "unknown")
#: Timeline kinds the fhir source writes (docs/FHIR.md, "Records").
KINDS = ("encounter", "condition", "observation", "medication", "procedure", "immunization", "allergy", "note")
DAY = 86400.0
#: The first and last instants (in days) a datetime holds in UTC.
FIRST_DAY = datetime.min.replace(tzinfo=UTC).timestamp() / DAY
LAST_DAY = datetime.max.replace(tzinfo=UTC).timestamp() / DAY


@functools.lru_cache(maxsize=1 << 16)
def day(value: str) -> float:
    """Days since 1970-01-01 UTC of a FHIR date or dateTime (a date is its midnight UTC);
    ValueError for anything else, digits other than ASCII ones included (strptime takes them),
    and a dateTime whose UTC time falls outside the years 0001-9999 (the fhir source refuses it:
    no record it writes holds one)."""
    if not value.isascii():
        raise ValueError(f"not a FHIR date: {value!r}")
    if "T" in value:
        moment = fhir_moment(value)  # the fhir source's own rule: an ISO week date or a zone past 14:00 is none
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        moment = fhir_date(value).replace(tzinfo=UTC)
    days = moment.timestamp() / DAY
    if not FIRST_DAY <= days <= LAST_DAY:
        raise ValueError(f"{value!r} falls outside the years 0001-9999 in UTC")
    return days


def ends_before(value: str, start: float) -> bool:
    """Whether the date ``value`` is over before ``start`` (days): a dateTime when it is
    earlier; a year, month or day only when all of it is (``2020-03`` and ``2020-03-01``
    are not before ``2020-03-01T09:00``: either may be later that day)."""
    if "T" in value:
        return day(value) < start
    first = fhir_date(value).replace(tzinfo=UTC)
    if len(value) == 4:
        after = first.replace(year=first.year + 1)
    elif len(value) == 7:
        after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    else:
        after = first + timedelta(days=1)
    return after.timestamp() / DAY <= start


def _date(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is None:
        return
    try:
        day(value)
    except ValueError:
        if impossible := no_such_day(value):
            raise ValueError(f"'{attribute.name}': {impossible}") from None
        raise ValueError(
            f"'{attribute.name}' must be a FHIR date or dateTime (2019, 2019-06, 2019-06-13, 2019-06-13T10:00:00Z) "
            f"in the years 0001-9999 in UTC, got {value!r}"
        ) from None


def utc(value: Any) -> Any:
    """A dateTime as the fhir source writes it (with a zone in UTC, ``...Z``; whole seconds either way), so answers
    quote an inline record's dates as they quote the source's; anything else as given (``_date`` names a malformed
    one)."""
    if not isinstance(value, str) or "T" not in value or not value.isascii():
        return value
    try:
        moment = fhir_moment(value)
        if moment.tzinfo is None:  # as the source writes it: whole seconds, a leap second as :59 (v16 F2)
            return moment.isoformat(timespec="seconds")
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    except (ValueError, OverflowError):
        return value


Scalar = float | int | str | bool | None


def _finite(instance: Any, attribute: attrs.Attribute, value: Scalar) -> None:
    """A number must be one (NaN and infinity would reach the features and the answers)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number, text or a bool, got {value!r}")


def _code_as_carried(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    """A code with a control or invisible character is no code a record carries: refused by the rule the
    fhir source and the formulary file apply (``snomed:91936005`` with a NUL inside was read as an
    unknown allergy code)."""
    if value is not None and (mistake := code_mistake(f"'{attribute.name}'", value)):
        raise ValueError(mistake)


def _display_as_printed(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    """A display is shown to clinicians: one with a control character (a NUL, a BEL) is refused, by the rule
    the fhir source applies to the displays it reads (tabs, line breaks and invisible characters pass)."""
    if value is not None and (mistake := display_mistake(f"'{attribute.name}'", value)):
        raise ValueError(mistake)


@attrs.frozen
class MeasurementInput:
    """One component of an observation (the systolic part of a blood pressure)."""

    code: str | None = attrs.field(default=None, validator=_code_as_carried)
    display: str | None = attrs.field(default=None, validator=_display_as_printed)
    value: Scalar = attrs.field(default=None, validator=_finite)
    unit: str | None = None
    low: float | None = attrs.field(default=None, validator=_finite)
    high: float | None = attrs.field(default=None, validator=_finite)


@attrs.frozen
class EventInput:
    """One event of a timeline, as the fhir source writes it."""

    #: What ``__attrs_post_init__`` enforces, in the schema too: an encounter's id (one without passed a client
    #: built from the schema, and the gateway's /docs form, then was refused: checker h404 F1, F2).
    __schema__: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"kind": {"const": "encounter"}}, "required": ["kind"]},
        "then": {"required": ["id"], "properties": {"id": {"type": "string", "minLength": 1}}},
    }
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    id: str | None = None
    date: str | None = attrs.field(default=None, converter=utc, validator=_date)
    end: str | None = attrs.field(default=None, converter=utc, validator=_date)
    code: str | None = attrs.field(default=None, validator=_code_as_carried)
    display: str | None = attrs.field(default=None, validator=_display_as_printed)
    status: str | None = None
    value: Scalar = attrs.field(default=None, validator=_finite)
    unit: str | None = None
    components: list[MeasurementInput] = attrs.Factory(list)
    encounter: str | None = None
    text: str | None = None
    low: float | None = attrs.field(default=None, validator=_finite)
    high: float | None = attrs.field(default=None, validator=_finite)
    during: str | None = None

    def __attrs_post_init__(self) -> None:
        """An encounter is named by its id (its events' ``encounter``, a request's ``encounter``, the
        answer's): one without was answered as visit None, and that answer failed its own check
        (INTERNAL, blaming the model for the client's record). After the field checks, which name theirs."""
        if self.kind == "encounter" and not (isinstance(self.id, str) and self.id):
            raise ValueError(f"'id' must be a non-empty string on an encounter (what names the visit), got {self.id!r}")
        if self.kind == "encounter" and self.date and self.end and ends_before_start(self.date, self.end):
            raise ValueError(f"'end' {self.end} is before 'date' {self.date}: the encounter ends before it starts")


def _in_time_order(event: EventInput) -> tuple[bool, float, int, str]:
    """Undated events last; at one instant, encounters first (the fhir source's order)."""
    return (event.date is None, day(event.date) if event.date else 0.0, KINDS.index(event.kind), event.id or "")


@attrs.frozen
class RecordInput:
    """A patient's record given inline: the shape of ``heirloom data show --json``.

    ``file``, ``split``, ``deceased`` and ``deceased_date`` are accepted (so a record can be
    pasted as printed) and read by no shipped model. The timeline is put in time order, and
    ``text`` and ``codes`` are derived from it (any given are replaced), as the fhir source
    writes them, so a model reads the same record shape whichever way it came.
    """

    timeline: list[EventInput] = attrs.field(
        converter=lambda events: sorted(events, key=_in_time_order), validator=lambda _, __, events: _one_each(events)
    )
    id: str = "inline"
    gender: str | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(GENDERS)))
    birth_date: str | None = attrs.field(default=None, validator=_date)
    file: str | None = None
    split: str | None = None
    deceased: bool = False
    deceased_date: str | None = None
    text: str | None = None
    codes: dict[str, list[str]] | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "codes", codes_by_kind(self.timeline, KINDS))
        object.__setattr__(self, "text", summary(self.gender, self.birth_date, self.deceased_date, self.timeline))
        if first := first_before_birth(self.birth_date, self.timeline):
            raise ValueError(f"'birth_date' {self.birth_date} is after encounter {first.id!r} on {first.date}")


def _one_each(events: list[EventInput]) -> None:
    """Two encounters with one id would mix their events (and the answer of either)."""
    seen: set[str] = set()
    for event in events:
        if event.kind == "encounter" and event.id is not None:
            if event.id in seen:
                raise ValueError(f"'timeline' has two encounters with id {event.id!r}")
            seen.add(event.id)


def when(event: Any) -> float | None:
    """An event's date in days, or None when it has none."""
    return day(event.date) if event.date else None


def age_at(record: Any, moment: float) -> float | None:
    """Age in years at ``moment`` (days), or None without a birth date."""
    return (moment - day(record.birth_date)) / 365.25 if record.birth_date else None


@attrs.frozen
class Visit:
    """One encounter of a patient with what was recorded at it and what came strictly before.

    ``before`` excludes every event of the encounter itself, whatever its date: the
    encounter's own conditions, procedures and prescriptions are what the models predict
    or must not see.
    """

    record: Any
    encounter: Any
    start: float
    at: tuple[Any, ...]
    before: tuple[Any, ...]

    def recorded(self, kind: str) -> list[Any]:
        return [e for e in self.at if e.kind == kind]


def visits(record: Any) -> Iterable[Visit]:
    """Every dated encounter of a record, in time order."""
    timeline: Sequence[Any] = record.timeline
    by_encounter: dict[str, list[Any]] = defaultdict(list)
    for event in timeline:
        if event.encounter is not None and event.kind != "encounter":
            by_encounter[event.encounter].append(event)
    for event in timeline:
        if event.kind == "encounter" and event.date:
            yield visit(record, event, by_encounter.get(event.id or "", []))


def visit(record: Any, encounter: Any, at: Sequence[Any] | None = None) -> Visit:
    """The visit of ``encounter`` (an encounter event of ``record``)."""
    start = day(encounter.date)
    if at is None:
        at = [e for e in record.timeline if e.encounter == encounter.id and e.kind != "encounter"]
    visited = encounter_dates(record)
    before = tuple(
        e
        for e in record.timeline
        if e is not encounter
        and (when := known_from(e, visited))
        and ends_before(when, start)
        and (e.encounter is None or e.encounter != encounter.id)
    )
    return Visit(record, encounter, start, tuple(at), before)


def encounter_dates(record: Any) -> dict[str, tuple[str | None, str | None]]:
    """Each encounter's (start, end), by id: when the events linked to it became known (``known_from``)."""
    return {e.id: (e.date, e.end) for e in record.timeline if e.kind == "encounter" and e.id is not None}


def known_from(event: Any, visited: dict[str, tuple[str | None, str | None]]) -> str | None:
    """When ``event`` is known, as history: an event recorded at a visit, not before that visit's start,
    whatever its own date says (a Condition's onset is when symptoms began, often years before the visit
    that diagnosed it: read as known then, a diagnosis made in 2017 was a feature of a 2016 visit); an event
    without a date of its own (a Condition with an onsetAge) happened during its visit: by its end, so a
    diagnosis made at a stay's discharge is no history of a visit during the stay."""
    start, end = visited.get(event.encounter, (None, None)) if event.encounter is not None else (None, None)
    if not event.date:  # by the later of the two: an end mistyped before the start (h361 F3) is no earlier time
        return max(filter(None, (start, end)), key=day, default=None)
    return start if start and day(start) > day(event.date) else event.date


def find_encounter(record: Any, encounter_id: str | None) -> Any:
    """The encounter event named ``encounter_id``, or the last dated one when None.

    Raises LookupError with the reason when there is none.
    """
    encounters = [e for e in record.timeline if e.kind == "encounter" and e.date]
    if encounter_id is not None:
        for event in record.timeline:
            if event.kind == "encounter" and event.id == encounter_id:
                if not event.date:
                    raise LookupError(
                        f"patient {record.id!r}'s encounter {encounter_id!r} has no start date (period.start): "
                        "only a dated encounter has a before and an after to predict from"
                    )
                return event
        raise LookupError(f"patient {record.id!r} has no encounter {encounter_id!r}")
    if not encounters:
        raise LookupError("the record has no dated encounter")
    return max(encounters, key=lambda e: day(e.date))
