"""Patient records: demographics, a time-ordered timeline, a text summary and code lists.

Records are attrs classes of plain values only, so ``attrs.asdict(record)`` is ready for
JSON and msgpack (the wire). Text models read ``text``; code models read ``codes``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from heirloom_plugins.code_systems import code_mistake, display_mistake, short_system
from heirloom_plugins.fhir.fields import first, number, obj, objects, text
from heirloom_plugins.fhir.parse import found
from heirloom_plugins.fhir.references import reference_of
from heirloom_plugins.timelines import (
    codes_by_kind,
    ends_before_start,
    fhir_date,
    fhir_moment,
    no_such_day,
    summary,
)

#: resourceType -> the timeline kind its events get (also the keys of ``codes``).
KINDS = {
    "Encounter": "encounter",
    "Condition": "condition",
    "Observation": "observation",
    "MedicationRequest": "medication",
    "MedicationStatement": "medication",
    "Procedure": "procedure",
    "Immunization": "immunization",
    "AllergyIntolerance": "allergy",
    "DocumentReference": "note",
}
#: Where each timeline resource names its patient.
PATIENT_FIELD = {"Immunization": "patient", "AllergyIntolerance": "patient"}


#: The system each kind's code is preferably taken from when a concept has several codings (a
#: source's ``prefer_systems`` changes it per kind: ``Preferred``).
PREFERRED = {
    "condition": "snomed",
    "observation": "loinc",
    "medication": "rxnorm",
    "procedure": "snomed",
    "immunization": "cvx",
    "encounter": "snomed",
}
#: FHIR R4's administrative-gender codes (a required binding).
GENDERS = ("male", "female", "other", "unknown")
_ORDER = {kind: rank for rank, kind in enumerate(KINDS.values())}


@attrs.frozen
class Measurement:
    """One component of an observation (e.g. the systolic part of a blood pressure)."""

    code: str | None
    display: str | None
    value: float | int | str | bool | None
    unit: str | None
    low: float | None = None
    high: float | None = None


@attrs.frozen
class Event:
    """One clinical resource on a patient's timeline.

    ``date`` is when it happened (a condition's onset), ``end`` when it stopped (its
    abatement); datetimes are UTC ``YYYY-MM-DDTHH:MM:SSZ``, dates stay ``YYYY-MM-DD``, so
    the strings sort in time order. ``code`` is ``system:code`` (see ``heirloom_plugins.code_systems``). An
    encounter's ``value`` is its class (``AMB``, ``EMER``, ``IMP``); an observation's
    ``low``/``high`` are its reference range, when it carries one. ``during`` is the visit a
    MedicationStatement was told at (its ``encounter``, container or ``context``): it places it in time, and,
    unlike ``encounter``, never makes it one of that visit's own events (a treatment label).
    """

    kind: str
    id: str | None
    date: str | None
    end: str | None = None
    code: str | None = None
    display: str | None = None
    status: str | None = None
    value: float | int | str | bool | None = None
    unit: str | None = None
    components: tuple[Measurement, ...] = ()
    encounter: str | None = None
    text: str | None = None
    low: float | None = None
    high: float | None = None
    during: str | None = None


@attrs.frozen
class PatientRecord:
    """Everything known about one patient; ``codes`` maps each event kind to its codes in time order."""

    id: str
    file: str
    split: str
    birth_date: str | None
    gender: str | None
    deceased: bool
    deceased_date: str | None
    timeline: tuple[Event, ...]
    text: str
    codes: dict[str, list[str]]


#: What ``instant`` reads, for its error messages.
DATE_FORMS = "a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) or dateTime (YYYY-MM-DDThh:mm:ss, optionally with a zone)"


def instant(value: Any, field: str = "date") -> str | None:
    """A FHIR date/dateTime as a sortable string; ValueError naming ``field`` on a malformed one,
    digits other than ASCII ones included (FHIR's pattern has only those; strptime reads others),
    and on a dateTime whose UTC time falls outside the years 0001-9999 (no sortable form holds it)."""
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not value.isascii():
            raise TypeError
        if "T" not in value:
            fhir_date(value)  # FHIR's pattern: strptime took "2019-06- 1" (v16 F3)
            return value
        moment = fhir_moment(value)  # FHIR's pattern, not every ISO form
    except (TypeError, ValueError):
        if impossible := no_such_day(value):
            raise ValueError(f"{field}: {impossible}") from None
        shown = repr(value[:40]) if isinstance(value, str) else found(value)  # JSON's words for what is no text
        raise ValueError(f"{field}: {shown} is not {DATE_FORMS}") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"{field}: {value!r} falls outside the years 0001-9999 in UTC") from None
        return moment.isoformat(timespec="seconds") + "Z"
    return moment.isoformat(timespec="seconds")


#: Kind -> the system its code is taken from first (``PREFERRED``, or with a source's ``prefer_systems``).
Preferred = Mapping[str, str]


def coding(value: Any, kind: str, prefer: Preferred = PREFERRED, field: str = "code") -> tuple[str | None, str | None]:
    """``(code, display)`` of the CodeableConcept ``value`` (absent: none), preferring the kind's system in
    ``prefer`` (its short name, or for another system its URL as written); ValueError naming the path
    (``code.coding[0].display``) when it, its ``coding`` list, a Coding or a system, code, display or text
    is not of its FHIR type."""
    concept = obj(value, field, f"a CodeableConcept object ({SHAPES['CodeableConcept']})")
    if concept is None:
        return None, None
    label = text(concept.get("text"), f"{field}.text")
    codings = []
    for path, one in objects(concept.get("coding"), f"{field}.coding", "Coding"):
        system, code, display = (text(one.get(part), f"{path}.{part}") for part in ("system", "code", "display"))
        if code:
            codings.append((system, code, display))
    wanted = prefer.get(kind)
    preferred = [c for c in codings if wanted and wanted in (short_system(c[0] or ""), c[0])]
    chosen = (preferred or codings or [None])[0]
    if chosen is None:
        return None, label
    system, code, display = chosen
    short = short_system(system or "")
    return f"{short}:{code}" if short else f"{system}|{code}" if system else code, display or label


#: What a CodeableConcept and a Coding look like, for the errors of ``concept``.
SHAPES = {"CodeableConcept": '{"coding": [...], "text": ...}', "Coding": '{"system": ..., "code": ...}'}


def concept(resource: dict[str, Any], field: str, shape: str = "CodeableConcept") -> Any:
    """``resource[field]``; ValueError naming the field when it is there but no JSON object:
    a string (``"code": "penicillin"``) or a list read as "nothing" lost an allergy unsaid."""
    value = resource.get(field)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{field}: expected a {shape} object ({SHAPES[shape]}), got {found(value)}")
    return value


def _first(resource: dict[str, Any], *names: str) -> str | None:
    """The first present of several date fields (``x.start`` reads a Period)."""
    for name in names:
        field, _, part = name.partition(".")
        value = resource.get(field)
        if part:  # a Period given as a string ("2020") read as absent: the visit undated, unsaid
            period = obj(value, field, 'a Period object ({"start": ..., "end": ...})')
            value = period.get(part) if period is not None else None
        if value is not None:
            return instant(value, name)
    return None


def _status(value: Any, field: str) -> str | None:
    """The code of a status CodeableConcept (``active``, ``resolved``); ValueError naming the path on a
    wrong type."""
    concept = obj(value, field, f"a CodeableConcept object ({SHAPES['CodeableConcept']})")
    if concept is None:
        return None
    path, chosen = first(concept.get("coding"), f"{field}.coding", "Coding")
    code = text(chosen.get("code"), f"{path}.code") if chosen is not None else None
    return code or text(concept.get("text"), f"{field}.text")


def withdrawn(resource: dict[str, Any]) -> bool:
    """Recorded in error (any resource's ``status``), or a Condition or allergy refuted or
    recorded in error (its ``verificationStatus``): FHIR says to read the record as if it
    were not there, so it is no label, no problem and no allergy. Never raises: a malformed
    ``verificationStatus`` is refused where the event is read (``event``)."""
    if resource.get("status") == "entered-in-error":
        return True
    try:
        return _status(resource.get("verificationStatus"), "verificationStatus") in ("entered-in-error", "refuted")
    except ValueError:
        return False


#: What a Quantity looks like, for the errors of ``_value`` and ``_range``.
QUANTITY = 'a Quantity object ({"value": ..., "unit": ...})'
#: The JSON type each ``value[x]`` read as it is must have: a number given as a string (``"NaN"``) was
#: read as a text value, a boolean as a number.
TYPED_VALUES = {
    "valueString": (str, "a string"),
    "valueBoolean": (bool, "true or false"),
    "valueInteger": (int, "an integer"),
    "valueDateTime": (str, "a string"),
    "valueTime": (str, "a string"),
}


def _value(holder: dict[str, Any], at: str = "") -> tuple[Any, str | None]:
    """An observation's (or component's, ``at`` its path: ``component[1].``) ``value[x]`` and unit;
    ValueError naming the path when one is not of its FHIR type."""
    if "valueQuantity" in holder:
        quantity = obj(holder["valueQuantity"], f"{at}valueQuantity", QUANTITY) or {}
        unit = text(quantity.get("unit"), f"{at}valueQuantity.unit") or text(
            quantity.get("code"), f"{at}valueQuantity.code"
        )
        return number(quantity.get("value"), f"{at}valueQuantity.value"), unit
    if "valueCodeableConcept" in holder:
        return coding(holder["valueCodeableConcept"], "", PREFERRED, f"{at}valueCodeableConcept")[1], None
    for key, (kind, shape) in TYPED_VALUES.items():
        if key in holder:
            value = holder[key]
            wrong = value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool)))
            if wrong:
                raise ValueError(f"{at}{key}: expected {shape}, got {found(value)}")
            return value, None
    return None, None


def _range(holder: dict[str, Any], at: str = "") -> tuple[float | None, float | None]:
    """The first ``referenceRange``'s low and high values (None where absent, or where that end's unit is not the
    value's: a 70-100 mg/dL range flagged a glucose of 5.0 mmol/L as low, checker h440 F2). Units agree when the
    quantities share a unit or a code (UCUM's ``mmol/L`` under a display of "millimole per liter": v36 F4)."""
    path, ranges = first(holder.get("referenceRange"), f"{at}referenceRange")
    if ranges is None:
        return None, None
    quantity = holder.get("valueQuantity")
    units = _units(quantity) if isinstance(quantity, dict) else set()
    ends = []
    for name in ("low", "high"):
        end = obj(ranges.get(name), f"{path}.{name}", QUANTITY)
        value = number(end.get("value"), f"{path}.{name}.value") if end is not None else None
        own = _units(end, f"{path}.{name}") if end is not None else set()
        ends.append(None if own and units and not own & units else value)
    return ends[0], ends[1]


def _units(quantity: dict[str, Any], at: str = "valueQuantity") -> set[str]:
    """A Quantity's ``unit`` and ``code`` as compared: casefolded, a micro sign or Greek mu as ``u``."""
    named = (text(quantity.get(key), f"{at}.{key}") for key in ("unit", "code"))
    return {name.strip().casefold().replace("\u00b5", "u").replace("\u03bc", "u") for name in named if name}


def _measured(holder: dict[str, Any], at: str = "") -> tuple[Any, str | None, float | None, float | None]:
    """An observation's (or component's) value, unit and the reference range's low and high in that unit."""
    return *_value(holder, at), *_range(holder, at)


def _encounter(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    path, kind_of_visit = first(r.get("type"), "type", "CodeableConcept")
    code, display = coding(kind_of_visit, "encounter", prefer, path)
    start, end = _first(r, "period.start"), _first(r, "period.end")
    if isinstance(r.get("class"), list):  # read as no class, it would make every visit of such an export classless
        raise ValueError("class is a list (FHIR R5's shape); this reader takes R4's one Coding")
    kind = concept(r, "class", "Coding")
    value = text(kind.get("code"), "class.code") if kind is not None else None
    return Event("encounter", r.get("id"), start, end, code, display, _text(r, "status"), value, encounter=enc)


def _text(resource: dict[str, Any], field: str) -> str | None:
    return text(resource.get(field), field)


def _condition(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    code, display = coding(r.get("code"), "condition", prefer)
    onset = _first(r, "onsetDateTime", "onsetPeriod.start", "recordedDate")
    end = _first(r, "abatementDateTime", "abatementPeriod.end")
    # no clinical status but an abatement of any form (a string, an age): FHIR's con-4 makes it resolved
    status = _status(r.get("clinicalStatus"), "clinicalStatus") or (
        "resolved" if any(k.startswith("abatement") for k in r) else None
    )
    return Event("condition", r.get("id"), onset, end, code, display, status, encounter=enc)


def _observation(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    code, display = coding(r.get("code"), "observation", prefer)
    value, unit, low, high = _measured(r)
    components = [(path, c) for path, c in objects(r.get("component"), "component") if c]
    parts = tuple(
        Measurement(*coding(c.get("code"), "observation", prefer, f"{at}.code"), *_measured(c, f"{at}."))
        for at, c in components
    )
    date = _first(r, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")
    return Event(
        "observation",
        r.get("id"),
        date,
        None,
        code,
        display,
        _text(r, "status"),
        value,
        unit,
        parts,
        enc,
        None,
        low,
        high,
    )


def _medication(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    if "medicationCodeableConcept" in r:
        code, display = coding(r["medicationCodeableConcept"], "medication", prefer, "medicationCodeableConcept")
    else:
        code, display = None, text(r["medicationReference"].get("display"), "medicationReference.display")
    date = _first(r, "authoredOn", "effectiveDateTime", "effectivePeriod.start", "dateAsserted")
    return Event("medication", r.get("id"), date, None, code, display, _text(r, "status"), encounter=enc)


def with_medication(resource: dict[str, Any], medications: Callable[[str], Any]) -> dict[str, Any]:
    """``resource`` with the code of the Medication its ``medicationReference`` names (a
    contained ``#id``, else ``medications(reference)``: the unit's Medication resources)
    as ``medicationCodeableConcept``; unchanged when it has a concept or the target is unknown."""
    reference = resource.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if "medicationCodeableConcept" in resource or not isinstance(ref, str):
        return resource
    if ref.startswith("#"):
        contained = [c for c in resource.get("contained") or () if isinstance(c, dict)]
        found = next((c.get("code") for c in contained if c.get("id") == ref[1:] and _is_medication(c)), None)
    else:
        found = medications(ref)
    return {**resource, "medicationCodeableConcept": found} if isinstance(found, dict) else resource


def _is_medication(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "Medication"


def _procedure(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    code, display = coding(r.get("code"), "procedure", prefer)
    date = _first(r, "performedDateTime", "performedPeriod.start")
    return Event(
        "procedure",
        r.get("id"),
        date,
        _first(r, "performedPeriod.end"),
        code,
        display,
        _text(r, "status"),
        encounter=enc,
    )


def _immunization(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    code, display = coding(r.get("vaccineCode"), "immunization", prefer, "vaccineCode")
    date = _first(r, "occurrenceDateTime", "recorded")
    return Event("immunization", r.get("id"), date, None, code, display, _text(r, "status"), encounter=enc)


def _allergy(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    """An allergy's code is its ``code``'s, else its first reaction substance's (``code`` is optional in FHIR:
    one coded there only was listed as "(no code)", its formulary mapping never applied: h402 F6)."""
    code, _ = coding(r.get("code"), "allergy", prefer)
    for at, reaction in objects(r.get("reaction"), "reaction") if code is None else ():
        if (code := coding(reaction.get("substance"), "allergy", prefer, f"{at}.substance")[0]) is not None:
            break
    date = _first(r, "onsetDateTime", "recordedDate")
    display = "; ".join(_allergy_names(r)) or None
    status = _status(r.get("clinicalStatus"), "clinicalStatus")
    return Event("allergy", r.get("id"), date, None, code, display, status, encounter=enc)


def _allergy_names(r: dict[str, Any]) -> list[str]:
    """Every name an AllergyIntolerance gives what it is to, once each: its code's codings and
    text, then its reactions' substances. A generic code ("Drug allergy") with the substance
    in ``code.text`` or a second coding (RxNorm penicillin G) lost the substance, and
    amoxicillin was recommended."""
    reactions = objects(r.get("reaction"), "reaction")
    concepts = [("code", r.get("code")), *((f"{at}.substance", one.get("substance")) for at, one in reactions)]
    names: dict[str, str] = {}
    for field, value in concepts:
        coded = obj(value, field, f"a CodeableConcept object ({SHAPES['CodeableConcept']})")
        if coded is None:
            continue
        codings = objects(coded.get("coding"), f"{field}.coding", "Coding")
        said = [text(c.get("display"), f"{at}.display") for at, c in codings]
        for name in (*said, text(coded.get("text"), f"{field}.text")):
            if name and name.strip():
                names.setdefault(name.strip().casefold(), name.strip())
    return list(names.values())


def _note(r: dict[str, Any], enc: str | None, prefer: Preferred = PREFERRED) -> Event:
    code, display = coding(r.get("type"), "note", prefer, "type")
    contents = [(at, c) for at, c in objects(r["content"], "content") if "attachment" in c]
    texts = [_decode(c["attachment"], f"{at}.attachment") for at, c in contents]
    date = _first(r, "date")
    body = "\n".join(t for t in texts if t) or None
    return Event("note", r.get("id"), date, None, code, display, _text(r, "status"), text=body, encounter=enc)


def _decode(attachment: Any, field: str) -> str | None:
    """The text of an attachment's base64 ``data`` (text/* or untyped only); ValueError naming
    ``field`` when the attachment, its ``data`` or its ``contentType`` is not what FHIR says."""
    if not isinstance(attachment, dict):
        raise ValueError(f"{field}: expected an Attachment object, got {found(attachment)}")
    data, kind = attachment.get("data"), attachment.get("contentType") or "text/plain"
    if data is not None and not isinstance(data, str):
        raise ValueError(f"{field}.data: expected a base64 string, got {found(data)}")
    if not isinstance(kind, str):
        raise ValueError(f"{field}.contentType: expected a string (text/plain), got {found(kind)}")
    if not data or not kind.startswith("text/"):
        return None
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except binascii.Error as exc:
        raise ValueError(f"{field}.data: not base64: {exc}") from None


#: resourceType -> builder of its event (from the resource and the id of its encounter).
EVENTS: dict[str, Callable[[dict[str, Any], str | None, Preferred], Event]] = {
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication,
    "MedicationStatement": _medication,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "DocumentReference": _note,
}


def patient_reference(resource: dict[str, Any]) -> str | None:
    """The reference to the patient a clinical resource is about."""
    return reference_of(resource.get(PATIENT_FIELD.get(resource["resourceType"], "subject")), "Patient")


def event(resource: dict[str, Any], encounter: str | None, prefer: Preferred = PREFERRED) -> Event:
    """The timeline event of a clinical resource, each code taken from ``prefer``'s system for its kind
    where a concept has several codings; ValueError/TypeError/... on odd shapes, and on a code or display
    holding a control character (``as_carried``)."""
    _status(resource.get("verificationStatus"), "verificationStatus")  # read by ``withdrawn``, which never raises
    return as_carried(EVENTS[resource["resourceType"]](resource, encounter, prefer))


def as_carried(found: Event) -> Event:
    """``found``, checked by the rule an inline record on a medical route meets (``code_systems``): a
    ValueError naming the record's field (``code``, ``components[0].display``) when a code holds a control or
    invisible character, or a display a control character. Read, a code with a NUL became a label of its
    own beside the real one, which the route then refused as input."""
    parts = (("", found), *((f"components[{i}].", part) for i, part in enumerate(found.components)))
    for prefix, part in parts:
        mistake = (isinstance(part.code, str) and code_mistake(f"{prefix}code", part.code)) or (
            isinstance(part.display, str) and display_mistake(f"{prefix}display", part.display)
        )
        if mistake:
            raise ValueError(mistake)
    return found


def demographics(patient: dict[str, Any]) -> tuple[str | None, str | None, bool, str | None]:
    """``(birth date, gender, deceased, date of death)`` of a Patient resource; ValueError naming
    the field on a value of the wrong type or outside FHIR's codes (the string ``"false"``,
    read as truthy, would mark a living patient dead)."""
    gender, flag = patient.get("gender"), patient.get("deceasedBoolean")
    if gender is not None and gender not in GENDERS:
        raise ValueError(f"gender: expected one of {', '.join(GENDERS)}, got {found(gender)}")
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"deceasedBoolean: expected true or false, got {found(flag)}")
    if flag is not None and patient.get("deceasedDateTime") is not None:
        raise ValueError("deceased[x]: one of deceasedBoolean and deceasedDateTime, not both")
    died = instant(patient.get("deceasedDateTime"), "deceasedDateTime")
    return instant(patient.get("birthDate"), "birthDate"), gender, bool(flag) or died is not None, died


def patient_record(patient: dict[str, Any], pid: str, file: str, split: str, events: list[Event]) -> PatientRecord:
    """The record of one patient from its Patient resource (``demographics`` checked) and its
    events (any order)."""
    timeline = tuple(sorted(events, key=_in_time))
    birth, gender, deceased, deceased_date = demographics(patient)
    return PatientRecord(
        id=pid,
        file=file,
        split=split,
        birth_date=birth,
        gender=gender,
        deceased=deceased,
        deceased_date=deceased_date,
        timeline=timeline,
        text=summary(gender, birth, deceased_date, timeline),
        codes=codes_by_kind(timeline, KINDS.values()),
    )


def _in_time(found: Event) -> tuple[bool, str, int, str]:
    """A timeline's order: by date (undated last), then kind, then id."""
    return found.date is None, found.date or "", _ORDER[found.kind], found.id or ""


def with_events(record: PatientRecord, events: list[Event]) -> PatientRecord:
    """``record`` with ``events`` on its timeline, in time order, its text and codes made again from it."""
    timeline = tuple(sorted((*record.timeline, *events), key=_in_time))
    text = summary(record.gender, record.birth_date, record.deceased_date, timeline)
    return attrs.evolve(record, timeline=timeline, text=text, codes=codes_by_kind(timeline, KINDS.values()))


def encounter_ending_before_start(record: PatientRecord) -> Event | None:
    """The first encounter whose period ends before it starts (``ends_before_start``), if any."""
    encounters = (e for e in record.timeline if e.kind == "encounter" and e.date and e.end)
    return next((e for e in encounters if ends_before_start(e.date, e.end)), None)


def today_anywhere() -> str:
    """Today's date (``YYYY-MM-DD``) where it is latest (UTC+14): an event dated after it is after today
    everywhere, whatever the zone its date was written in (``event_after_today``)."""
    return (datetime.now(UTC) + timedelta(hours=14)).date().isoformat()


def event_after_today(record: PatientRecord, today: str) -> Event | None:
    """The latest event dated after ``today`` (``today_anywhere``), if any: a mistyped year (2999 for 2019),
    which a model reads as the patient's latest visit, so the one the warning names (not the first found, a
    2027 beside it). Compared at the precision both have: an event of "2999" is after 2026-12-05, one of
    "2026-12" is not. One string comparison per event."""
    late = [e for e in record.timeline if e.date and e.date[:10] > today[: len(e.date[:10])]]
    return max(late, key=lambda e: e.date[:10], default=None)
