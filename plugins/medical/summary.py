"""A patient's record summarised: problem list, medications, allergies, latest vitals and
labs with abnormal flags, and the encounter history. Pure functions of one record."""

from __future__ import annotations

from typing import Any

from heirloom_plugins.medical.patients import age_at, day

#: LOINC codes of vital signs (the rest of the numeric observations are labs).
VITALS = {
    "loinc:8302-2": "height",
    "loinc:29463-7": "weight",
    "loinc:39156-5": "bmi",
    "loinc:59576-9": "bmi percentile",
    "loinc:55284-4": "blood pressure",
    "loinc:85354-9": "blood pressure",  # the panel US Core profiles use
    "loinc:8480-6": "systolic",
    "loinc:8462-4": "diastolic",
    "loinc:8867-4": "heart rate",
    "loinc:9279-1": "respiratory rate",
    "loinc:8310-5": "temperature",
    "loinc:2708-6": "oxygen saturation",
    "loinc:59408-5": "oxygen saturation",
    "loinc:72514-3": "pain",
    "loinc:8287-5": "head circumference",
}
BMI, SYSTOLIC, DIASTOLIC = "loinc:39156-5", "loinc:8480-6", "loinc:8462-4"
OBESE_BMI, HIGH_SYSTOLIC, HIGH_DIASTOLIC = 30.0, 140.0, 90.0


def condition_status(event: Any) -> str:
    """``active`` or ``resolved`` as its clinical status says; without one, ``resolved`` when
    it has an abatement date, else ``unknown`` (an encounter diagnosis often has neither)."""
    if event.status:
        return "active" if event.status in ("active", "recurrence", "relapse") else "resolved"
    return "resolved" if event.end is not None else "unknown"


def medication_current(status: str | None) -> bool:
    """A current medication: its latest MedicationRequest or MedicationStatement is active
    (or on-hold, draft)."""
    return status in ("active", "on-hold", "draft")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _measured(event: Any) -> bool:
    """Whether an observation carries a value (a coded one too: smoking status) or components."""
    return (event.value is not None and event.value != "") or bool(event.components)


def _range_flag(value: float | None, low: float | None, high: float | None, unit: str | None) -> list[str]:
    """A value outside its reference range (read only in the value's unit: ``heirloom_plugins.fhir``), saying the
    range with that unit."""
    if value is None:
        return []
    shown = f"{'' if low is None else f'{low:g}'}-{'' if high is None else f'{high:g}'}{f' {unit}' if unit else ''}"
    if low is not None and value < low:
        return [f"below reference range ({shown})"]
    if high is not None and value > high:
        return [f"above reference range ({shown})"]
    return []


def flags(event: Any) -> list[str]:
    """Abnormal flags of an observation: BMI >= 30, blood pressure >= 140/90, reference ranges."""
    found = _range_flag(_number(event.value), getattr(event, "low", None), getattr(event, "high", None), event.unit)
    value = _number(event.value)
    if event.code == BMI and value is not None and value >= OBESE_BMI:
        found.append(f"obese (BMI >= {OBESE_BMI:g})")
    parts = {part.code: _number(part.value) for part in event.components}
    if event.code == SYSTOLIC and value is not None:
        parts[SYSTOLIC] = value
    if event.code == DIASTOLIC and value is not None:
        parts[DIASTOLIC] = value
    systolic, diastolic = parts.get(SYSTOLIC), parts.get(DIASTOLIC)
    if (systolic is not None and systolic >= HIGH_SYSTOLIC) or (diastolic is not None and diastolic >= HIGH_DIASTOLIC):
        found.append(f"high blood pressure (>= {HIGH_SYSTOLIC:g}/{HIGH_DIASTOLIC:g})")
    for part in event.components:
        found += _range_flag(_number(part.value), getattr(part, "low", None), getattr(part, "high", None), part.unit)
    return found


def _observation(event: Any) -> dict[str, Any]:
    return {
        "code": event.code,
        "display": event.display,
        "value": event.value,
        "unit": event.unit,
        "date": event.date,
        "components": [
            {"code": p.code, "display": p.display, "value": p.value, "unit": p.unit} for p in event.components
        ],
        "flags": flags(event),
    }


#: The kinds a summary shows the latest event of, per entry (``entry``).
LATEST_OF_CODE = frozenset({"medication", "allergy", "observation"})


def entry(event: Any) -> tuple[str | None, str | None] | str | None:
    """What one summary entry stands for: an observation's or a coded drug's code; otherwise code
    AND display, so only true repeats merge (Synthea records one condition again and again) while
    allergies coded with one generic "Drug allergy" code, or text-only ones (code None), stay
    apart: keyed by code alone, three text-only allergies showed as one. A drug's code is the drug
    whatever display each prescription gives it: keyed with it, an export that leaves the display
    out of some listed one current drug twice, once nameless (``drug_names`` names the entry)."""
    if event.kind == "observation" or (event.kind == "medication" and event.code):
        return event.code
    return (event.code, event.display)


def drug_names(record: Any) -> dict[str, str]:
    """Each drug code's name in the summary: the latest display the record gives it."""
    return {e.code: e.display for e in record.timeline if e.kind == "medication" and e.code and e.display}


def in_time_order(record: Any) -> list[tuple[str | None, Any]]:
    """The record's events with when they happened, in that order: an event without a date of its own happened
    during the encounter it names, or a statement's ``during`` (docs/MEDICAL.md), so it is placed at that encounter's
    start. After the dated
    events by id, a 2019 prescription still active was "current" beside the 2021 one that stopped it (h440 F1)."""
    starts = {e.id: e.date for e in record.timeline if e.kind == "encounter" and e.id and e.date}
    timed = [(event.date or starts.get(event.encounter or event.during), event) for event in record.timeline]
    return sorted(timed, key=lambda pair: (pair[0] is None, pair[0] or ""))


def summarize(record: Any) -> dict[str, Any]:
    """The summary ``record.summary`` answers (docs/MEDICAL.md, "Record analysis")."""
    problems: dict[tuple[Any, str | None], dict[str, Any]] = {}
    medications: dict[Any, dict[str, Any]] = {}
    allergies: dict[Any, dict[str, Any]] = {}
    latest: dict[str, Any] = {}
    encounters: dict[str, dict[str, Any]] = {}
    dated: set[tuple[str, Any]] = set()  # the kinds and entries of dated events, which come before undated ones
    names = drug_names(record)
    for when, event in in_time_order(record):
        if when is not None:
            dated.add((event.kind, entry(event)))
        elif event.kind in LATEST_OF_CODE and (event.kind, entry(event)) in dated:
            continue  # an undated weight was the "latest" beside one of 2016
        if event.kind == "encounter":
            encounters[event.id or f"#{len(encounters)}"] = {
                "id": event.id,
                "date": event.date,
                "end": event.end,
                "class": event.value,
                "code": event.code,
                "display": event.display,
                "conditions": [],
                "medications": [],
            }
        elif event.kind == "condition":
            problems[(entry(event), event.date)] = {
                "code": event.code,
                "display": event.display,
                "onset": event.date,
                "end": event.end,
                "status": condition_status(event),
                "encounter": event.encounter,
            }
        elif event.kind == "medication":
            medications[entry(event)] = {
                "code": event.code,
                "display": names.get(event.code, event.display) if event.code else event.display,
                "date": event.date,
                "status": event.status,
                "encounter": event.encounter,
            }
        elif event.kind == "allergy":
            allergies[entry(event)] = {
                "code": event.code,
                "display": event.display,
                "since": event.date,
                "status": event.status,
            }
        elif event.kind == "observation" and event.code and _measured(event):
            latest[event.code] = event  # a later "not done" must not hide the last value
    for event in record.timeline:  # once every encounter is known: a date-only one sorts before its visit
        if event.kind in ("condition", "medication") and event.encounter in encounters and event.code:
            encounters[event.encounter][f"{event.kind}s"].append(event.code)
    ordered = sorted(problems.values(), key=lambda p: (p["status"] != "active", _negated(p["onset"])))
    now = max((day(e.date) for e in record.timeline if e.date), default=None)
    return {
        "patient": record.id,
        "gender": record.gender,
        "birth_date": record.birth_date,
        "age_at_last_event": round(age_at(record, now), 1) if now is not None and record.birth_date else None,
        "deceased": bool(getattr(record, "deceased", False)),
        "problems": ordered,
        "medications": {
            "current": [m for m in medications.values() if medication_current(m["status"])],
            "past": [m for m in medications.values() if not medication_current(m["status"])],
        },
        "allergies": list(allergies.values()),
        "vitals": [_observation(e) for code, e in latest.items() if code in VITALS],
        "labs": [_observation(e) for code, e in latest.items() if code not in VITALS],
        "encounters": sorted(list(encounters.values())[::-1], key=lambda e: _negated(e["date"])),
    }


def _negated(date: str | None) -> tuple[bool, float]:
    """Sort key: most recent first, undated last."""
    return (date is None, -day(date) if date else 0.0)
