"""The fhir source on the real Synthea bundles, and on small hand-written files for bad input.

Expected values come from independent counts made here with ``json`` and ``Counter``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest

import heirloom
from heirloom_plugins.fhir.parse import FhirDataError
from heirloom_plugins.fhir.records import KINDS, coding, instant
from heirloom_plugins.fhir.source import FhirSource
from tests.helpers import REPO, run_heirloom, write

SYNTHEA = "fhir-synthea-smart-r4/bundles"


@pytest.fixture
def bundles(data_dir) -> Path:
    return data_dir / SYNTHEA


@functools.cache
def entries_of(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["entry"]


def all_entries(folder: Path) -> list[dict[str, Any]]:
    return [e for path in sorted(folder.glob("*.json")) for e in entries_of(path)]


def linked(folder: Path, target: Path, names: list[str] | None = None) -> Path:
    """A folder of symlinks to some of the real bundles (never copies of the data)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.json")):
        if names is None or path.name in names:
            (target / path.name).symlink_to(path)
    return target


def patient_files(folder: Path, count: int) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json") if p.name[0].isupper())[:count]


def bundle(*resources: dict[str, Any], kind: str = "collection") -> str:
    entries = [{"fullUrl": f"urn:uuid:{r.get('id', i)}", "resource": r} for i, r in enumerate(resources)]
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries})


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-02", "gender": "female"}


def condition(cid: str = "c1", onset: str = "2001-02-03T04:05:06+01:00", **extra: Any) -> dict[str, Any]:
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]}
    base = {"resourceType": "Condition", "id": cid, "subject": {"reference": "urn:uuid:p1"}, "code": code}
    return {**base, "onsetDateTime": onset, **extra}


def note(attachment: Any) -> dict[str, Any]:
    """A DocumentReference of p1 whose one content is ``attachment``."""
    document = {"resourceType": "DocumentReference", "id": "d1", "status": "current"}
    return {**document, "subject": {"reference": "urn:uuid:p1"}, "content": [{"attachment": attachment}]}


# -- the real data ---------------------------------------------------------------------------
def test_counts_by_resource_type_equal_an_independent_count(bundles):
    expected = Counter(e["resource"]["resourceType"] for e in all_entries(bundles))
    stats = FhirSource(path=str(bundles)).stats()
    assert stats["resources"] == dict(expected)
    assert stats["records"] == expected["Patient"] == 23
    assert stats["files"] == 25
    assert sum(stats["splits"].values()) == 23
    assert stats["errors"]["skipped_files"] == stats["errors"]["skipped_resources"] == 0


def test_every_condition_is_in_its_patients_timeline_in_date_order(bundles):
    conditions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    timeline_sizes: Counter[str] = Counter()
    for path in sorted(bundles.glob("*.json")):
        urls = {e["fullUrl"]: e["resource"] for e in entries_of(path)}
        for e in entries_of(path):
            resource = e["resource"]
            holder = resource.get("subject") or resource.get("patient")
            if resource["resourceType"] in KINDS and holder:
                owner = urls[holder["reference"]]["id"]
                timeline_sizes[owner] += 1
                if resource["resourceType"] == "Condition":
                    conditions[owner].append(resource)
    records = list(FhirSource(path=str(bundles)).records())
    assert sum(len(found) for found in conditions.values()) == 109
    for record in records:
        assert len(record.timeline) == timeline_sizes[record.id]
        dates = [e.date for e in record.timeline]
        assert None not in dates and dates == sorted(dates)
        in_timeline = {e.id: e for e in record.timeline if e.kind == "condition"}
        for resource in conditions[record.id]:
            event = in_timeline[resource["id"]]
            assert event.date == instant(resource["onsetDateTime"])
            assert event.code == "snomed:" + resource["code"]["coding"][0]["code"]
            assert event.end == instant(resource.get("abatementDateTime"))
            assert event.code in record.codes["condition"]
            assert event.display in record.text
        assert len(in_timeline) == len(conditions[record.id])


def test_references_resolve(bundles):
    source = FhirSource(path=str(bundles))
    stats = source.stats()
    raw = b"".join(p.read_bytes() for p in bundles.glob("*.json"))
    assert stats["references"] == len(re.findall(rb'"reference": "', raw)) > 14_000
    assert stats["unresolved_references"] == 0
    assert stats["unassigned_resources"] == 0
    with_encounter = {e["resource"]["id"] for e in all_entries(bundles) if "encounter" in e["resource"]}
    for record in source.records():
        encounters = {e.id for e in record.timeline if e.kind == "encounter"}
        for event in record.timeline:
            assert event.encounter in (encounters if event.id in with_encounter else {None})


URN = re.compile(r'"(urn:uuid:[0-9a-f-]+)"')


def relink(text: str, mapping: dict[str, str]) -> str:
    """``text`` with each quoted ``urn:uuid`` reference found in ``mapping`` replaced."""
    return URN.sub(lambda m: json.dumps(mapping.get(m[1], m[1])), text)


def conditional_copy(path: Path, target: Path) -> int:
    """Write ``path`` with its Organization/Practitioner entries removed and the references
    to them made conditional (``Organization?identifier=system|value``), as newer Synthea
    writes them against its hospital and practitioner files. Returns how many it rewrote."""
    entries, rewrite = [], {}
    for e in entries_of(path):
        resource = e["resource"]
        if resource["resourceType"] in ("Organization", "Practitioner"):
            ident = resource["identifier"][0]
            rewrite[e["fullUrl"]] = f"{resource['resourceType']}?identifier={ident['system']}|{ident['value']}"
        else:
            entries.append(e)
    text = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    text = relink(text, rewrite)
    write(target, text)
    return sum(text.count(json.dumps(ref)) for ref in set(rewrite.values()))


def test_conditional_references_resolve_against_the_other_files(bundles, tmp_path):
    name = patient_files(bundles, 1)[0]
    rewritten = conditional_copy(bundles / name, tmp_path / "set" / name)
    assert rewritten > 10
    alone = FhirSource(path=str(tmp_path / "set")).stats()
    assert alone["unresolved_references"] == rewritten  # counted and reported, not fatal
    assert alone["records"] == 1
    assert "Organization?identifier=https://github.com/synthetichealth/synthea|" in "".join(
        alone["unresolved_examples"]
    )
    linked(bundles, tmp_path / "set", ["hospitalInformation1559319163815.json"])
    linked(bundles, tmp_path / "set", ["practitionerInformation1559319163815.json"])
    assert FhirSource(path=str(tmp_path / "set")).stats()["unresolved_references"] == 0


def truncated_set(bundles: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = linked(bundles, tmp_path / "set")
    victim = folder / patient_files(bundles, 3)[2]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 2])
    return folder, victim


def test_a_truncated_bundle_fails_naming_its_file(bundles, tmp_path):
    folder, victim = truncated_set(bundles, tmp_path)
    with pytest.raises(FhirDataError, match=re.escape(str(victim)) + ": malformed JSON"):
        list(FhirSource(path=str(folder)).records())


def test_a_truncated_bundle_is_skipped_and_counted(bundles, tmp_path):
    folder, victim = truncated_set(bundles, tmp_path)
    stats = FhirSource(path=str(folder), on_error="skip").stats()
    assert stats["errors"]["skipped_files"] == 1
    assert stats["errors"]["messages"][0].startswith(f"{victim}: malformed JSON")
    assert stats["records"] == 22
    expected = Counter(
        e["resource"]["resourceType"]
        for p in sorted(bundles.glob("*.json"))
        if p.name != victim.name
        for e in entries_of(p)
    )
    assert stats["resources"] == dict(expected)


_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], str | Path):
        _OPENED.append(str(args[0]))


def test_streaming_the_first_patient_arrives_before_the_last_file_is_opened(bundles):
    global _OPENED
    files = sorted(str(p) for p in bundles.glob("*.json"))
    sys.addaudithook(_audit)  # process-wide and permanent: it records only while _OPENED is a list
    _OPENED = []
    try:
        records = FhirSource(path=str(bundles)).records()
        first = next(records)
        opened = [p for p in _OPENED if p.endswith(".json")]
        records.close()
    finally:
        _OPENED = None
    assert first.file == Path(files[0]).name
    assert opened == [files[0]]
    assert files[-1] not in opened


def ndjson_export(bundle_paths: list[Path], target: Path) -> None:
    """A bulk export of the bundles: one file per resourceType, ``urn:uuid`` made ``Type/id``."""
    lines: dict[str, list[str]] = defaultdict(list)
    for path in bundle_paths:
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries_of(path)}
        for e in entries_of(path):
            text = json.dumps(e["resource"])
            lines[e["resource"]["resourceType"]].append(relink(text, urls))
    for kind, rows in lines.items():
        write(target / f"{kind}.ndjson", "\n".join(rows) + "\n")


def test_ndjson_bulk_export_gives_the_same_records_as_the_bundles(bundles, tmp_path):
    names = patient_files(bundles, 3)
    ndjson_export([bundles / n for n in names], tmp_path / "bulk")
    from_bundles = {r.id: r for r in FhirSource(path=str(linked(bundles, tmp_path / "b", names))).records()}
    source = FhirSource(path=str(tmp_path / "bulk"))
    from_ndjson = {r.id: r for r in source.records()}
    assert from_ndjson.keys() == from_bundles.keys() and len(from_ndjson) == 3
    for pid, record in from_ndjson.items():
        assert record.file == "Patient.ndjson"
        assert attrs.evolve(record, file="") == attrs.evolve(from_bundles[pid], file="")
    assert source.tally.unresolved.count == 0 and source.tally.unassigned.count == 0


def test_validating_path_accepts_the_real_data_and_agrees_with_the_lean_path(bundles, tmp_path):
    folder = linked(bundles, tmp_path / "set", patient_files(bundles, 2))
    lean = list(FhirSource(path=str(folder)).records())
    validated = list(FhirSource(path=str(folder), validate=True).records())
    assert validated == lean and len(lean) == 2


def test_splits_are_deterministic_disjoint_and_complete(bundles):
    source = FhirSource(path=str(bundles))
    train = [r.id for r in source.records("train")]
    test = [r.id for r in source.records("test")]
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(r.id for r in source.records())
    assert test and train and len(test) < len(train)
    assert [r.id for r in FhirSource(path=str(bundles)).records("test")] == test
    with pytest.raises(ValueError, match="split must be one of"):
        list(source.records("validation"))


def test_validation_split_comes_from_the_training_side(bundles):
    plain = {r.id: r.split for r in FhirSource(path=str(bundles)).records()}
    source = FhirSource(path=str(bundles), validation_fraction=0.3)
    assert source.splits() == ["train", "validation", "test"]
    sides = {split: {r.id for r in source.records(split)} for split in source.splits()}
    assert sides["validation"] and sides["train"]
    assert sides["test"] == {pid for pid, split in plain.items() if split == "test"}  # test is untouched
    assert sides["train"] | sides["validation"] == {pid for pid, split in plain.items() if split == "train"}
    assert not sides["train"] & sides["validation"]
    assert all(r.split == "validation" for r in source.records("validation"))


def test_every_patient_is_a_test_patient_at_test_fraction_one(bundles):
    source = FhirSource(path=str(bundles), test_fraction=1.0)
    assert list(source.records("train")) == []
    assert len(list(source.records("test"))) == 23


def test_cohorts_split_the_patients_and_keep_their_side(bundles):
    every = {r.id: r.split for r in FhirSource(path=str(bundles)).records()}
    halves = [
        {r.id: r.split for r in FhirSource(path=str(bundles), cohort=part).records()} for part in ([0, 0.5], [0.5, 1])
    ]
    assert halves[0] and halves[1] and not halves[0].keys() & halves[1].keys()
    assert halves[0] | halves[1] == every  # disjoint, complete, and each patient on the same side
    source = FhirSource(path=str(bundles), cohort=[0.5, 1])
    stats = source.stats()
    assert stats["records"] == len(halves[1]) and stats["outside_cohort"] == len(halves[0])


def test_train_patients_takes_the_first_by_hash_and_nests(bundles):
    every = [r.id for r in FhirSource(path=str(bundles)).records("train")]
    chosen = {n: [r.id for r in FhirSource(path=str(bundles), train_patients=n).records("train")] for n in (2, 4, 100)}
    assert len(chosen[2]) == 2 and len(chosen[4]) == 4 and sorted(chosen[100]) == sorted(every)
    assert chosen[4][:2] == chosen[2]  # a smaller count's patients are among a larger one's
    assert [r.id for r in FhirSource(path=str(bundles), train_patients=4).records("train")] == chosen[4]
    assert len(list(FhirSource(path=str(bundles), train_patients=2).records("test"))) == len(
        list(FhirSource(path=str(bundles)).records("test"))
    )


def test_fingerprint_is_a_content_hash(bundles, tmp_path):
    folder = linked(bundles, tmp_path / "set", patient_files(bundles, 2))
    source = FhirSource(path=str(folder))
    first = source.fingerprint()
    assert first.startswith("sha256:") and source.fingerprint() == first
    assert FhirSource(path=str(linked(bundles, tmp_path / "again", patient_files(bundles, 2)))).fingerprint() == first
    victim = sorted(folder.iterdir())[0]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data.replace(b'"male"', b'"MALE"', 1))
    assert source.fingerprint() != first


# -- hand-written input ----------------------------------------------------------------------
def stats_or_error(path: Path, on_error: str = "fail", **config: Any) -> dict[str, Any]:
    return FhirSource(path=str(path), on_error=on_error, **config).stats()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"resourceType": "Bundle", "type": "collection", "entry": [', "malformed JSON"),
        (json.dumps(PATIENT), "expected resourceType 'Bundle', found 'Patient'"),
        (json.dumps({"resourceType": "Bundle", "type": "history", "entry": []}), "bundle type 'history' is not one"),
        (json.dumps([PATIENT]), "expected resourceType 'Bundle', found a JSON array: put its resources in a Bundle"),
        (json.dumps({"id": "p1"}), "expected resourceType 'Bundle', found an object without resourceType: not a FHIR"),
        (
            json.dumps(PATIENT) + "\n" + json.dumps(PATIENT),
            "malformed JSON: Extra data: line 2 column 1 (char 87); one resource per line",
        ),
        (" \n", "an empty file: a .json file holds one Bundle"),  # was "Expecting value: line 1 column 1" (h361 F4)
    ],
)
def test_a_bad_file_fails_naming_it_or_is_skipped(tmp_path, text, message):
    bad = write(tmp_path / "set" / "bad.json", text)
    write(tmp_path / "set" / "good.json", bundle(PATIENT, condition()))
    with pytest.raises(FhirDataError, match=re.escape(f"{bad}: {message}")):
        stats_or_error(tmp_path / "set")
    stats = stats_or_error(tmp_path / "set", "skip")
    assert stats["errors"]["skipped_files"] == 1 and stats["records"] == 1


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            {"resourceType": "Pateint", "id": "x"},
            "Pateint/x (entry[2]): unknown resourceType 'Pateint'; did you mean 'Patient'?",
        ),
        (
            {"resourceType": "Observation", "id": "o1", "status": "final"},
            "Observation/o1 (entry[2]): missing required field(s): code",
        ),
        (
            {"resourceType": "Immunization", "id": "i1", "status": "completed"},
            "Immunization/i1 (entry[2]): missing required field(s): vaccineCode, patient, occurrence[x]",
        ),
        (
            condition("c2", onset="2001-13-45"),
            "Condition/c2 (entry[2]): cannot read: onsetDateTime: '2001-13-45' has the form of a FHIR date but no such",
        ),
        (condition("c3", onset="2019-4"), "Condition/c3 (entry[2]): cannot read: onsetDateTime: '2019-4' is not"),
        # ISO 8601 forms FHIR has not: fromisoformat read a week date and the basic format as plain instants
        *(
            (condition("c10", onset=date), f"Condition/c10 (entry[2]): cannot read: onsetDateTime: {date!r} is not")
            for date in ("2019-W24-4T10:00:00Z", "20190613T100000Z", "2019-06-13T10Z", "2019-06-13T10:00:00+14:01")
        ),
        ({"id": "r1"}, "entry[2]: missing resourceType"),
        ({**condition("c8"), "id": ""}, 'Condition at entry[2]: id must be a non-empty string, got a string: ""'),
        (  # FHIR's date pattern has ASCII digits only; strptime reads these, and they sorted out of time order
            condition("c4", onset="\u0662\u0660\u0662\u0660-01-01"),
            "Condition/c4 (entry[2]): cannot read: onsetDateTime: '\u0662\u0660\u0662\u0660-01-01' is not a FHIR date",
        ),
        (
            note({"contentType": "text/plain", "data": 5}),
            "DocumentReference/d1 (entry[2]): cannot read: content[0].attachment.data: expected a base64 string, "
            "got a number: 5",
        ),
        (
            note({"contentType": ["text/plain"], "data": "aGk="}),
            "DocumentReference/d1 (entry[2]): cannot read: content[0].attachment.contentType: expected a string "
            '(text/plain), got an array: ["text/plain"]',
        ),
        (
            note("aGk="),
            "DocumentReference/d1 (entry[2]): cannot read: content[0].attachment: expected an Attachment object, "
            'got a string: "aGk="',
        ),
        (  # a malformed reference to the patient was counted as an unassigned resource, even with on_error = "fail"
            condition("c5", subject={"reference": 5}),
            'Condition/c5 (entry[2]): subject.reference: expected a string ("Type/id", "urn:uuid:..."), '
            "got a number: 5",
        ),
        (
            condition("c6", subject="Patient/p1"),
            'Condition/c6 (entry[2]): subject: expected a Reference object ({"reference": "Type/id"}), '
            'got a string: "Patient/p1"',
        ),
        (
            condition("c7", encounter=["urn:uuid:e1"]),
            'Condition/c7 (entry[2]): encounter: expected a Reference object ({"reference": "Type/id"}), '
            'got an array: ["urn:uuid:e1"]',
        ),
        # a coded field of the wrong JSON type was read as "nothing": an allergy to nothing ruled nothing out
        (
            {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "urn:uuid:p1"}}
            | {"code": "penicillin"},
            'AllergyIntolerance/a1 (entry[2]): cannot read: code: expected a CodeableConcept object ({"coding": '
            '[...], "text": ...}), got a string: "penicillin"',
        ),
        (
            condition("c9") | {"code": "38341003"},
            "Condition/c9 (entry[2]): cannot read: code: expected a CodeableConcept object "
            '({"coding": [...], "text": ...}), got a string: "38341003"',
        ),
        (
            {"resourceType": "MedicationStatement", "id": "m1", "status": "active"}
            | {"subject": {"reference": "urn:uuid:p1"}, "medicationCodeableConcept": [{"text": "metformin"}]},
            "MedicationStatement/m1 (entry[2]): cannot read: medicationCodeableConcept: expected a CodeableConcept "
            'object ({"coding": [...], "text": ...}), got an array: [{"text": "metformin"}]',
        ),
        (
            {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": "AMB"}
            | {"subject": {"reference": "urn:uuid:p1"}},
            'Encounter/e1 (entry[2]): cannot read: class: expected a Coding object ({"system": ..., "code": ...}), '
            'got a string: "AMB"',
        ),
        # a control character in a code was read as a label of its own, which the medical routes refused inline
        # (checker 311 F4); in a display, text shown to clinicians (F1): the routes' rule, code_systems.py
        (
            condition("c11") | {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "12\x00 3"}]}},
            "Condition/c11 (entry[2]): cannot read: code: 'snomed:12\\x00 3' holds the control or invisible "
            "character U+0000: write the code as records carry it",
        ),
        (  # padded, as fixed-width exports write codes: a label of its own beside "I10" (checker h361 F2)
            condition("c14") | {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10 "}]}},
            "Condition/c14 (entry[2]): cannot read: code: 'icd10cm:I10 ' has a space at an end, in or beside its "
            "system, or two in a row, which FHIR's code and uri types forbid: strip them",
        ),
        (  # a space in a system URL: "http://snomed .info/sct|123", a label of its own (checker v13 F5)
            condition("c16") | {"code": {"coding": [{"system": "http://snomed .info/sct", "code": "123"}]}},
            "Condition/c16 (entry[2]): cannot read: code: 'http://snomed .info/sct|123' has a space at an end, in or",
        ),
        (  # a system URL with a trailing space was no known system: "http://...icd-10-cm |I10" (checker v12 F4)
            condition("c15") | {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm ", "code": "I10"}]}},
            "Condition/c15 (entry[2]): cannot read: code: 'http://hl7.org/fhir/sid/icd-10-cm |I10' has a space at an",
        ),
        (
            condition("c12") | {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "1\u200b2"}]}},
            "Condition/c12 (entry[2]): cannot read: code: 'snomed:1\\u200b2' holds the control or invisible "
            "character U+200B",
        ),
        (
            condition("c13") | {"code": {"text": "Sinus\x07itis"}},
            "Condition/c13 (entry[2]): cannot read: display: 'Sinus\\x07itis' holds the control or invisible "
            "character U+0007: write the text as it prints",
        ),
        (  # a bidi override: shown as "Allergy to penicillin", read as "nillicinep" (checker h319 F2)
            {"resourceType": "AllergyIntolerance", "id": "a2", "patient": {"reference": "urn:uuid:p1"}}
            | {"code": {"text": "Allergy to \u202enillicinep"}},
            "AllergyIntolerance/a2 (entry[2]): cannot read: display: 'Allergy to \\u202enillicinep' holds the control "
            "or invisible character U+202E: write the text as it prints",
        ),
        (
            {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "blood pressure"}}
            | {
                "subject": {"reference": "urn:uuid:p1"},
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6\x07"}]}}],
            },
            "Observation/o1 (entry[2]): cannot read: components[0].code: 'loinc:8480-6\\x07' holds the control",
        ),
    ],
)
def test_a_bad_resource_fails_naming_it_or_is_skipped(tmp_path, resource, message):
    path = write(tmp_path / "one.json", bundle(PATIENT, condition(), resource))
    with pytest.raises(FhirDataError, match=re.escape(f"{path}: {message}")):
        stats_or_error(path)
    stats = stats_or_error(path, "skip")
    assert stats["errors"]["skipped_resources"] == 1 and stats["records"] == 1
    assert stats["unassigned_resources"] == 0


def test_a_leap_second_fhir_allows_is_read_as_the_second_before(tmp_path):
    """FHIR's dateTime allows second 60; Python's datetime has none, so it was a bad resource."""
    path = write(tmp_path / "one.json", bundle(PATIENT, condition(onset="2016-12-31T23:59:60+01:00")))
    (record,) = FhirSource(path=str(path)).records()
    assert [e.date for e in record.timeline if e.kind == "condition"] == ["2016-12-31T22:59:59Z"]


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_datetime_outside_the_years_of_utc_is_a_bad_resource_not_the_end_of_the_pass(tmp_path, start):
    """In UTC these fall in year 0 or 10000, which no sortable date string holds: it was an
    uncaught OverflowError that ended ``data stats`` with a traceback, even with on_error = "skip"."""
    folder = tmp_path / "bulk"
    write(folder / "Patient.ndjson", json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    encounter = {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"}}
    encounter |= {"subject": {"reference": "Patient/p1"}, "period": {"start": start}}
    encounters = write(folder / "Encounter.ndjson", json.dumps(encounter) + "\n")
    said = f"{encounters}: Encounter/e (line 1): cannot read: period.start: {start!r} falls outside the years 0001-9999"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(folder)
    profile = write(tmp_path / "p.toml", f'[sources.patients]\nuse = "fhir"\npath = "{folder}"\non_error = "skip"\n')
    shown = run_heirloom("data", "stats", str(profile), "patients", "--json")
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    assert stats["records"] == 1 and stats["errors"]["skipped_resources"] == 1
    assert stats["errors"]["messages"][0].startswith(said)


def test_an_error_quotes_a_huge_id_cut_short_with_its_length(tmp_path):
    """Was: one error line as long as the id (a 50 MB id, a 50 MB line on stderr)."""
    folder = tmp_path / "bulk"
    write(folder / "Patient.ndjson", json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    observations = write(folder / "Observation.ndjson", json.dumps({"resourceType": "Observation", "id": "x" * 10**6}))
    profile = write(tmp_path / "p.toml", f'[sources.patients]\nuse = "fhir"\npath = "{folder}"\n')
    shown = run_heirloom("data", "stats", str(profile), "patients")
    said = f"{observations}: Observation/{'x' * 80}... (1000000 characters) (line 1): missing required field(s)"
    assert shown.returncode == 1 and said in shown.stderr and len(shown.stderr) < 1000, shown.stderr[:2000]


def test_a_transaction_entry_that_deletes_carries_no_resource_and_is_passed_over(tmp_path):
    document = json.loads(bundle(PATIENT, condition(), kind="transaction"))
    document["entry"].append({"request": {"method": "DELETE", "url": "Condition/old"}})
    document["entry"].append({"request": {"method": "POST", "url": "Condition"}})  # a POST must carry one
    path = write(tmp_path / "tx.json", json.dumps(document))
    with pytest.raises(FhirDataError, match=re.escape(f"{path}: entry[3]: entry without a resource")):
        stats_or_error(path)
    stats = stats_or_error(path, "skip")
    assert stats["records"] == 1 and stats["errors"]["skipped_resources"] == 1


def test_a_patient_in_two_bundles_is_one_record_and_the_second_is_named(tmp_path):
    write(tmp_path / "set" / "part1.json", bundle(PATIENT, condition("c1")))
    second = write(tmp_path / "set" / "part2.json", bundle(PATIENT, condition("c2")))
    message = f"{second}: Patient/p1 (entry[0]): Patient 'p1' was read already"
    with pytest.raises(FhirDataError, match=re.escape(message)):
        stats_or_error(tmp_path / "set")
    stats = stats_or_error(tmp_path / "set", "skip")
    assert stats["records"] == 1 and stats["errors"]["skipped_resources"] == 1
    assert stats["unassigned_resources"] == 1  # the second file's condition has no record to join
    (record,) = FhirSource(path=str(tmp_path / "set"), on_error="skip").records()
    assert [e.id for e in record.timeline] == ["c1"]


@pytest.mark.parametrize(
    ("fields", "said"),
    [  # each was read: "false" as deceased, the others as given; a bad birthDate counted a record that never came
        ({"deceasedBoolean": "false"}, 'deceasedBoolean: expected true or false, got a string: "false"'),
        ({"gender": 5}, "gender: expected one of male, female, other, unknown, got a number: 5"),
        ({"gender": "F"}, 'gender: expected one of male, female, other, unknown, got a string: "F"'),
        ({"deceasedBoolean": False, "deceasedDateTime": "2020"}, "deceased[x]: one of deceasedBoolean and"),
        ({"birthDate": "1980-02-30"}, "birthDate: '1980-02-30' has the form of a FHIR date but no such day"),  # h421 F4
        ({"deceasedDateTime": True}, "deceasedDateTime: a boolean: true is not a FHIR date"),  # was 'True'
    ],
)
def test_a_patient_whose_own_fields_are_malformed_is_a_bad_resource_before_it_counts(tmp_path, fields, said):
    path = write(tmp_path / "one.json", bundle(PATIENT | fields, condition(), {**PATIENT, "id": "p2"}))
    with pytest.raises(FhirDataError, match=re.escape(f"{path}: Patient/p1 (entry[0]): cannot read: {said}")):
        stats_or_error(path)
    stats = stats_or_error(path, "skip")
    assert stats["records"] == 1 and stats["errors"]["skipped_resources"] == 1
    assert stats["unassigned_resources"] == 1  # its condition: no record of p1 to join
    assert [r.id for r in FhirSource(path=str(path), on_error="skip").records()] == ["p2"]


def test_a_patient_born_after_an_encounter_is_read_counted_and_said(tmp_path, caplog):
    """A birthDate after the visits was read without a word: the summary said age -130.2 and
    the diagnosis answered from it (the inline route refuses such a record). One of the 331
    Synthea patients has a stray encounter 14 years before its birth, so it is no error."""
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "urn:uuid:p1"}, "period": {"start": "1954-11-04T10:10:39Z"}}
    path = write(tmp_path / "one.json", bundle(PATIENT | {"birthDate": "2099-01-01"}, visit, {**PATIENT, "id": "p2"}))
    said = f"{path}: Patient/p1 (entry[0]): birthDate 2099-01-01 is after encounter 'e1' on 1954-11-04T10:10:39Z"
    with caplog.at_level(logging.WARNING, logger="heirloom.fhir"):
        stats = stats_or_error(path)
    assert stats["records"] == 2
    assert stats["encounters_before_birth"] == {"patients": 1, "examples": [said]}
    assert f"{said}: ages there are below zero" in caplog.text
    for start, counted in (("2016-06-12T01:00:00+09:00", 0), ("2016-06-11T09:59:59Z", 1), ("2016-06-11", 1)):
        early = write(  # the birth day began at 2016-06-11T10:00Z somewhere (UTC+14): not before it
            tmp_path / "zone.json", bundle(PATIENT | {"birthDate": "2016-06-12"}, visit | {"period": {"start": start}})
        )
        assert stats_or_error(early)["encounters_before_birth"]["patients"] == counted, start
    cases = [("1970", "1969-12-31T09:59:59Z", 1), ("1970", "1970-01-01", 0), ("1970-06", "1970", 0)]
    cases += [("1970-06", "1970-05-31", 1), ("0001-01-01", "2000-01-01T10:00:00Z", 0)]  # 0001: an OverflowError
    for birth, start, counted in cases:  # FHIR's partial dates: a year or a month was a ValueError, the read stopped
        partial = write(
            tmp_path / "partial.json", bundle(PATIENT | {"birthDate": birth}, visit | {"period": {"start": start}})
        )
        assert stats_or_error(partial)["encounters_before_birth"]["patients"] == counted, (birth, start)
    year = visit | {"id": "e0", "period": {"start": "2016"}}  # sorts first, and hid the one a week early (v24 F3)
    week = write(
        tmp_path / "week.json",
        bundle(PATIENT | {"birthDate": "2016-06-12"}, year, visit | {"period": {"start": "2016-06-05T10:00:00Z"}}),
    )
    assert stats_or_error(week)["encounters_before_birth"]["patients"] == 1


def test_a_patient_with_an_event_dated_after_today_is_read_counted_and_said(tmp_path, caplog):
    """An Encounter and a Condition in 2999 (a mistyped year) were read without a word, and the
    encounter became the patient's latest: the visit a medical route predicts for by default."""
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "urn:uuid:p1"}, "period": {"start": "1954-11-04T10:10:39Z"}}
    typo = {**visit, "id": "e2", "period": {"start": "2999-01-01T09:00:00Z"}}
    soon = {**visit, "id": "e3", "period": {"start": "2998-05-01"}}  # read first, but not the latest: not named
    path = write(tmp_path / "one.json", bundle(PATIENT, visit, soon, typo, {**PATIENT, "id": "p2"}))
    said = f"{path}: Patient/p1 (entry[0]): encounter 'e2' is dated 2999-01-01T09:00:00Z, after today"
    with caplog.at_level(logging.WARNING, logger="heirloom.fhir"):
        stats = stats_or_error(path)
    assert stats["records"] == 2 and stats["events_after_today"] == {"patients": 1, "examples": [said]}
    assert f"{said}: a mistyped year? a model reads it as the patient's latest" in caplog.text
    for start, counted in (("2999", 1), ("2999-01", 1), ("1954-11", 0), ("1954", 0)):  # FHIR's partial dates
        partial = write(tmp_path / "partial.json", bundle(PATIENT, visit | {"period": {"start": start}}))
        assert stats_or_error(partial)["events_after_today"]["patients"] == counted, start


def test_an_encounter_ending_before_it_starts_is_read_counted_and_said(tmp_path, caplog):
    """An Encounter whose period.end is before its start (FHIR's per-1) was read without a word; a medical model
    then read an undated event of that visit as history of the visits before it (checker h361 F3). Compared as
    instants where both dates have one form, else as days with a day to spare (a date's zone is unknown)."""
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "urn:uuid:p1"}}
    inverted = visit | {"period": {"start": "2020-01-01T10:00:00Z", "end": "2019-01-01T10:00:00Z"}}
    path = write(tmp_path / "one.json", bundle(PATIENT, inverted, {**PATIENT, "id": "p2"}))
    said = (
        f"{path}: Patient/p1 (entry[0]): encounter 'e1' ends (2019-01-01T10:00:00Z) before it starts "
        "(2020-01-01T10:00:00Z)"
    )
    with caplog.at_level(logging.WARNING, logger="heirloom.fhir"):
        stats = stats_or_error(path)
    assert stats["records"] == 2 and stats["encounters_ending_before_start"] == {"patients": 1, "examples": [said]}
    assert f"{said}: one of the two dates is wrong" in caplog.text
    cases = [("2020-01-01T10:00:00Z", "2020-01-01T09:59:59Z", 1), ("2020-01-01T10:00:00Z", "2020-01-01T10:00:00Z", 0)]
    cases += [("2020-01-01T01:00:00+05:00", "2019-12-31", 0), ("2020-03-15", "2020-02", 1), ("2020-06-01", "2020", 0)]
    for start, end, counted in cases:
        dated = write(tmp_path / "dated.json", bundle(PATIENT, visit | {"period": {"start": start, "end": end}}))
        assert stats_or_error(dated)["encounters_ending_before_start"]["patients"] == counted, (start, end)


def test_a_living_patient_stays_alive_and_a_boolean_death_is_read(tmp_path):
    alive = {**PATIENT, "deceasedBoolean": False, "deceasedDateTime": None}  # null is absent, not a second choice
    dead = {**PATIENT, "id": "p2", "deceasedBoolean": True}
    records = {r.id: r for r in FhirSource(path=str(write(tmp_path / "one.json", bundle(alive, dead)))).records()}
    assert (records["p1"].deceased, records["p2"].deceased) == (False, True)


def test_compressed_files_are_named_not_skipped_unseen_and_a_decompressed_copy_is_read(tmp_path):
    folder = tmp_path / "export"
    text = json.dumps(PATIENT) + "\n"
    compressed = folder / "Patient.ndjson.gz"
    folder.mkdir()
    compressed.write_bytes(gzip.compress(text.encode()))
    said = f"{compressed}: compressed: FHIR files are read uncompressed"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(folder)
    stats = stats_or_error(folder, "skip")
    assert stats["files"] == 1 and stats["errors"]["skipped_files"] == 1 and stats["records"] == 0
    (folder / "Patient.ndjson").mkdir()  # a folder of that name is no copy: the archive is still named
    assert stats_or_error(folder, "skip")["errors"]["skipped_files"] == 1
    (folder / "Patient.ndjson").rmdir()
    write(folder / "Patient.ndjson", text)  # gunzip -k: the copy is read, the archive passed over
    stats = stats_or_error(folder)
    assert stats["files"] == 1 and stats["records"] == 1
    compressed.rename(folder / "Patient.ndjson")  # gzip content under a plain name: one file error, not a line each
    stats = stats_or_error(folder, "skip")
    assert (stats["files"], stats["errors"]["skipped_files"], stats["errors"]["skipped_resources"]) == (1, 1, 0)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_an_ndjson_file_not_in_utf8_is_refused_naming_its_encoding(tmp_path, encoding):
    """A UTF-16 export was "line 1: malformed JSON: 'utf-16-le' codec can't decode byte 0x0a ...: truncated data"
    (its lines were split on the byte 0x0a), though its JSON was whole and a UTF-16 bundle is read (h361 F4)."""
    lines = json.dumps(PATIENT) + "\n" + json.dumps(condition()) + "\n"
    path = tmp_path / "set" / "export.ndjson"
    path.parent.mkdir()
    path.write_bytes(lines.encode(encoding))
    write(tmp_path / "set" / "good.json", bundle({**PATIENT, "id": "p2"}))
    named = encoding.upper()
    said = f"{path}: an NDJSON file must be UTF-8, and this one is {named}: convert it (iconv -f {named} -t UTF-8)"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(tmp_path / "set")
    assert stats_or_error(tmp_path / "set", "skip")["errors"]["skipped_files"] == 1
    path.write_bytes(lines.encode("utf-8-sig"))  # a UTF-8 byte order mark is read
    assert stats_or_error(tmp_path / "set")["records"] == 2


def test_a_bundle_on_an_ndjson_line_is_a_bad_resource_not_a_silent_loss(tmp_path):
    path = write(tmp_path / "export.ndjson", bundle(PATIENT) + "\n")
    said = f"{path}: Bundle at line 1: a Bundle on a line of a bulk export (one resource per line)"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)


def test_a_bundle_inside_a_bundle_is_a_bad_resource_not_a_silent_loss(tmp_path):
    """A collection of patient bundles was read as two "Bundle" resources: 0 records, exit 0 (checker 274 F4)."""
    inner = json.loads(bundle(PATIENT, condition(), kind="transaction"))
    path = write(tmp_path / "set" / "export.json", bundle({**inner, "id": "b1"}, {**inner, "id": "b2"}))
    said = f"{path}: Bundle/b1 (entry[0]): a Bundle inside a Bundle is not read: save each inner bundle as a .json"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)
    stats = stats_or_error(path, "skip")
    assert (stats["records"], stats["errors"]["skipped_resources"], stats["resources"]) == (0, 2, {})


def test_a_bulk_export_manifest_beside_its_files_is_passed_over(tmp_path):
    """Bulk clients save the ``$export`` status reply as ``manifest.json`` beside the NDJSON files: it stopped
    every read, 'expected resourceType 'Bundle', found None' (checker 274 F7)."""
    write(tmp_path / "set" / "Patient.ndjson", json.dumps(PATIENT) + "\n")
    output = [{"type": "Patient", "url": "https://ehr.example/files/Patient.ndjson"}]
    manifest = {"transactionTime": "2024-01-01T00:00:00Z", "request": "https://ehr.example/$export", "output": output}
    write(tmp_path / "set" / "manifest.json", json.dumps({**manifest, "requiresAccessToken": True, "error": []}))
    stats = stats_or_error(tmp_path / "set")
    assert (stats["records"], stats["files"], stats["errors"]["skipped_files"]) == (1, 2, 0)


def test_a_patient_twice_in_a_bulk_export_is_named_with_advice_for_bulk_exports(tmp_path):
    write(tmp_path / "set" / "Patient.000.ndjson", json.dumps(PATIENT) + "\n")
    second = write(tmp_path / "set" / "Patient.001.ndjson", json.dumps(PATIENT) + "\n")
    said = f"{second}: Patient/p1 (line 1): Patient 'p1' was read already"
    with pytest.raises(FhirDataError, match=re.escape(said) + r".*; a bulk export lists each Patient once$"):
        stats_or_error(tmp_path / "set")


def test_a_bad_ndjson_line_is_named_by_line_number(tmp_path):
    path = write(tmp_path / "Patient.ndjson", json.dumps(PATIENT) + "\n\n" + '{"resourceType": "Pat\n')
    said = f"{path}: line 3: malformed JSON: Invalid control character at character 22"  # not "line 1 column 22"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)
    assert stats_or_error(path, "skip")["records"] == 1


def test_a_prescription_naming_its_drug_by_reference_gets_the_drug_code_and_statements_are_history(tmp_path):
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    amoxicillin = {"coding": [{"system": rxnorm, "code": "308182", "display": "Amoxicillin 250 MG Oral Capsule"}]}
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    encounter |= {"subject": {"reference": "urn:uuid:p1"}, "period": {"start": "2001-02-03T03:00:00Z"}}
    request = {"resourceType": "MedicationRequest", "status": "active", "intent": "order"}
    request |= {"subject": {"reference": "urn:uuid:p1"}, "encounter": {"reference": "urn:uuid:e1"}}
    resources = [
        PATIENT,
        encounter,
        {"resourceType": "Medication", "id": "m1", "code": amoxicillin},
        {**request, "id": "r1", "authoredOn": "2001-02-03", "medicationReference": {"reference": "Medication/m1"}},
        {
            **request,
            "id": "r2",
            "authoredOn": "2001-02-04",
            "contained": [{"resourceType": "Medication", "id": "local", "code": amoxicillin}],
            "medicationReference": {"reference": "#local"},
        },
        {
            "resourceType": "MedicationStatement",
            "id": "s1",
            "status": "active",
            "subject": {"reference": "urn:uuid:p1"},
            "context": {"reference": "urn:uuid:e1"},
            "effectiveDateTime": "2001-01-01",
            "medicationCodeableConcept": amoxicillin,
        },
    ]
    write(tmp_path / "set" / "clinic.json", bundle(*resources))
    (record,) = FhirSource(path=str(tmp_path / "set")).records()
    drugs = {e.id: (e.code, e.date[:10], e.encounter) for e in record.timeline if e.kind == "medication"}
    assert drugs == {
        "r1": ("rxnorm:308182", "2001-02-03", "e1"),
        "r2": ("rxnorm:308182", "2001-02-04", "e1"),
        "s1": ("rxnorm:308182", "2001-01-01", None),  # what the patient takes: history, never a prescription label
    }
    bulk = tmp_path / "bulk"  # an NDJSON export keeps Medication resources in their own file
    for kind in ("Patient", "Encounter", "Medication", "MedicationRequest"):
        lines = [json.dumps(r) for r in resources if r["resourceType"] == kind]
        text = "\n".join(lines).replace("urn:uuid:p1", "Patient/p1").replace("urn:uuid:e1", "Encounter/e1")
        write(bulk / f"{kind}.ndjson", text + "\n")
    (exported,) = FhirSource(path=str(bulk)).records()
    assert {e.id: e.code for e in exported.timeline if e.kind == "medication"} == dict.fromkeys(
        ("r1", "r2"), drugs["r1"][0]
    )


def test_resources_known_by_their_full_url_alone_keep_their_links(tmp_path):
    """A transaction bundle's new resources have a ``urn:uuid`` fullUrl and no id: the visit's
    event had id None while its condition named it by the fullUrl, so the link was lost."""
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    encounter |= {"subject": {"reference": "urn:uuid:p1"}, "period": {"start": "2001-02-03T03:00:00Z"}}
    diabetes = {key: value for key, value in condition(encounter={"reference": "urn:uuid:1"}).items() if key != "id"}
    write(tmp_path / "set" / "transaction.json", bundle(PATIENT, encounter, diabetes, kind="transaction"))
    (record,) = FhirSource(path=str(tmp_path / "set")).records()
    assert {e.kind: (e.id, e.encounter) for e in record.timeline} == {
        "encounter": ("urn:uuid:1", None),
        "condition": ("urn:uuid:2", "urn:uuid:1"),
    }


def visit(eid: str, start: str, **extra: Any) -> dict[str, Any]:
    encounter = {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "AMB"}}
    return {**encounter, "subject": {"reference": "urn:uuid:p1"}, "period": {"start": start}, **extra}


def test_an_encounters_diagnoses_and_a_link_by_identifier_alone_give_conditions_their_visit(tmp_path):
    """FHIR links a visit's diagnoses from the Encounter too (``Encounter.diagnosis[].condition``), and a
    Reference may be an ``identifier`` alone (checker 274 F1): both were read as no visit, silently."""
    ident = {"system": "urn:ehr:visit", "value": "V-2"}

    def listing(*refs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"condition": ref, "use": {"text": "billing"}} for ref in refs]

    resources = [
        PATIENT,
        visit("e1", "2001-02-03T03:00:00Z", diagnosis=listing({"reference": "urn:uuid:c1"})),
        visit("e2", "2002-02-03T03:00:00Z", identifier=[ident], diagnosis=listing({"reference": "Condition/c2"})),
        visit("e3", "2003-02-03T03:00:00Z", diagnosis=listing({"reference": "Condition/c2"}, {"reference": "#x"})),
        condition("c1"),  # listed by e1 only
        condition("c2"),  # listed by e2 and e3: the first visit's, where it was diagnosed
        condition("c3", encounter={"identifier": ident}),
        condition("c4", encounter={"reference": "urn:uuid:e3"}),  # its own link wins over e1's listing, counted
        condition("c5", encounter={"identifier": {"system": "urn:ehr:visit", "value": "V-404"}}),
    ]
    resources[1]["diagnosis"] += listing({"reference": "urn:uuid:c4"})
    write(tmp_path / "set" / "clinic.json", bundle(*resources))
    source = FhirSource(path=str(tmp_path / "set"))
    (record,) = source.records()
    visits = {e.id: e.encounter for e in record.timeline if e.kind == "condition"}
    assert visits == {"c1": "e1", "c2": "e2", "c3": "e2", "c4": "e3", "c5": None}
    stats = source.tally.to_json()
    assert stats["conflicting_encounters"] == 1 and "Condition/c4" in stats["conflicting_examples"][0]
    assert stats["unresolved_references"] == 1 + 1  # c5's identifier, and e3's "#x" (nothing contained)
    assert any("Encounter?identifier=urn:ehr:visit|V-404" in said for said in stats["unresolved_examples"])
    bulk = tmp_path / "bulk"  # an NDJSON export: the Encounters and Conditions in files of their own
    for kind in ("Patient", "Encounter", "Condition"):
        text = "\n".join(json.dumps(r) for r in resources if r["resourceType"] == kind)
        for short, named in (("p", "Patient"), ("e", "Encounter"), ("c", "Condition")):
            text = text.replace(f"urn:uuid:{short}", f"{named}/{short}")
        write(bulk / f"{kind}.ndjson", text + "\n")
    (exported,) = FhirSource(path=str(bulk)).records()
    assert {e.id: e.encounter for e in exported.timeline if e.kind == "condition"} == visits


def test_an_encounter_without_id_or_full_url_is_a_bad_resource_named_by_position(tmp_path):
    """Checker 274 F5: such an Encounter was read as a visit named None, the default visit of a medical
    route, whose answer then failed its own check (INTERNAL, blaming the model)."""
    nameless = {key: value for key, value in visit("e1", "2001-02-03T03:00:00Z").items() if key != "id"}
    text = json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": PATIENT}, {"resource": nameless}]}
    )
    path = write(tmp_path / "set" / "clinic.json", text)
    said = f"{path}: Encounter at entry[1]: an Encounter without an id (or, in a bundle, a fullUrl) cannot be a visit"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(tmp_path / "set")
    stats = stats_or_error(tmp_path / "set", "skip")
    assert (stats["records"], stats["errors"]["skipped_resources"]) == (1, 1)


def test_a_patient_without_id_or_full_url_is_a_bad_resource_not_a_record_named_empty(tmp_path):
    """Checker 295 F1: such a Patient became a record with id '' that no reference reached, and a second
    one in another file was "Patient '' was read already"."""
    nameless = {key: value for key, value in PATIENT.items() if key != "id"}
    text = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": nameless}]})
    path = write(tmp_path / "set" / "a.json", text)
    write(tmp_path / "set" / "b.json", text)
    said = f"{path}: Patient at entry[0]: a Patient without an id (or, in a bundle, a fullUrl) cannot be a record"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(tmp_path / "set")
    stats = stats_or_error(tmp_path / "set", "skip")
    assert (stats["records"], stats["errors"]["skipped_resources"]) == (0, 2)
    bulk = write(tmp_path / "bulk" / "Patient.ndjson", json.dumps(nameless) + "\n")
    with pytest.raises(FhirDataError, match=re.escape(f"{bulk}: Patient at line 1: a Patient without an id")):
        stats_or_error(bulk.parent)


def test_a_full_url_naming_two_resources_is_a_bad_resource_naming_both(tmp_path):
    """Checker 295 F5: the later entry took the earlier's fullUrl, and every reference to it (a 1991
    diagnosis) silently became the later visit's (2017). A fullUrl is unique in a bundle (bdl-7)."""
    first, second = visit("e1", "1991-06-07T10:00:00Z"), visit("e2", "2017-03-21T10:00:00Z")
    document = json.loads(bundle(PATIENT, first, second, condition("c1", encounter={"reference": "urn:uuid:e1"})))
    document["entry"][2]["fullUrl"] = "urn:uuid:e1"
    path = write(tmp_path / "b.json", json.dumps(document))
    said = (
        f"{path}: Encounter/e2 (entry[2]): fullUrl 'urn:uuid:e1' names Encounter/e1 (entry[1]) already"
        " (a fullUrl is unique in a bundle): the first is kept"
    )
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)
    stats = stats_or_error(path, "skip")
    assert stats["errors"]["skipped_resources"] == 1 and said in stats["errors"]["messages"][0]
    (record,) = FhirSource(path=str(path), on_error="skip").records()
    assert [(e.id, e.encounter) for e in record.timeline] == [("e1", None), ("c1", "e1")]
    document["entry"][2]["fullUrl"] = "http://ehr/fhir/Encounter/e1"  # a RESTful fullUrl: its Type/id is e1's
    write(path, json.dumps(document))
    said = f"{path}: Encounter/e2 (entry[2]): Encounter/e1 names Encounter/e1 (entry[1]) already (a Type/id is unique"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)


def test_entries_of_one_full_url_with_different_version_ids_are_versions_and_the_last_is_read(tmp_path):
    """FHIR's bdl-7 allows one fullUrl twice when the meta.versionId differ: versions of one resource."""
    old = visit("e1", "2001-02-03T03:00:00Z", meta={"versionId": "1"}, status="in-progress")
    new = visit("e1", "2001-02-03T03:00:00Z", meta={"versionId": "2"})
    path = write(tmp_path / "b.json", bundle(PATIENT, old, new))
    (record,) = FhirSource(path=str(path)).records()
    assert [(e.id, e.status) for e in record.timeline] == [("e1", "finished")]
    assert stats_or_error(path)["errors"]["skipped_resources"] == 0


def test_conditions_whose_encounter_does_not_resolve_are_counted_and_said(tmp_path, caplog):
    """Checker 295 F6: such Conditions are no diagnosis label of any visit, and nothing said so."""
    resources = [
        PATIENT,
        visit("e1", "2001-02-03T03:00:00Z"),
        condition("c1", encounter={"reference": "urn:uuid:e1"}),
        condition("c2", encounter={"reference": "urn:uuid:gone"}),
        condition("c3", encounter={"reference": "Encounter/gone"}),
    ]
    path = write(tmp_path / "b.json", bundle(*resources))
    source = FhirSource(path=str(path))
    with caplog.at_level(logging.WARNING, logger="heirloom.fhir"):
        (record,) = source.records()
    assert {e.id: e.encounter for e in record.timeline if e.kind == "condition"} == {"c1": "e1", "c2": None, "c3": None}
    stats = source.tally.to_json()
    first = f"{path}: Condition/c2 (entry[3]): encounter urn:uuid:gone"
    assert stats["unlinked_conditions"] == 2 and stats["unlinked_examples"][0] == first
    assert "2 Condition(s) name an encounter their unit does not hold, or one skipped as unreadable" in caplog.text
    assert f"the first: {first}" in caplog.text


def test_a_condition_of_a_visit_that_could_not_be_read_is_unlinked_not_at_a_ghost_visit(tmp_path):
    """An Encounter skipped as unreadable (R5's class, a bad date) left its Conditions at that visit: the summary
    listed problems at visits the record lacked, and no Condition was counted unlinked (checker h450 F2). Whatever
    the order of the resources, in a bundle or a bulk export."""
    bad = {**visit("e2", "2001-03-03T03:00:00Z"), "class": [{"code": "AMB"}]}
    linked = [
        condition("c1", encounter={"reference": "Encounter/e1"}),
        condition("c2", encounter={"reference": "Encounter/e2"}),
    ]
    path = write(tmp_path / "b.json", bundle(PATIENT, *linked, visit("e1", "2001-02-03T03:00:00Z"), bad))
    bulk = tmp_path / "bulk"
    for name, resources in (
        ("Condition", linked),
        ("Encounter", [visit("e1", "2001-02-03T03:00:00Z"), bad]),
        ("Patient", [PATIENT]),
    ):
        lines = [{**r, "subject": {"reference": "Patient/p1"}} if name != "Patient" else r for r in resources]
        write(bulk / f"{name}.ndjson", "".join(json.dumps(r) + "\n" for r in lines))
    for read in (path, bulk):
        source = FhirSource(path=str(read), on_error="skip")
        (record,) = source.records()
        assert {e.id: e.encounter for e in record.timeline if e.kind == "condition"} == {"c1": "e1", "c2": None}, read
        stats = source.tally.to_json()
        assert stats["unlinked_conditions"] == 1 and "Condition/c2" in stats["unlinked_examples"][0], stats


def weight(value: Any, subject: str) -> dict[str, Any]:
    """An Observation of a weight, whatever its value."""
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value},
    }


def test_validation_catches_what_the_lean_path_lets_through(tmp_path):
    odd = weight("heavy", "urn:uuid:p1")
    path = write(tmp_path / "one.json", bundle(PATIENT, odd))
    # the lean path refuses a number given as a string too (h350 F2: it was read as a text value, trained on)
    lean = (
        f'{path}: Observation/o1 (entry[1]): cannot read: valueQuantity.value: expected a number, got a string: "heavy"'
    )
    with pytest.raises(FhirDataError, match=re.escape(lean)):
        stats_or_error(path)
    with pytest.raises(
        FhirDataError, match=re.escape(f"{path}: Observation/o1 (entry[1]): invalid: valueQuantity.value")
    ):
        stats_or_error(path, validate=True)
    # pydantic tries a string where an object goes as JSON: "code: Invalid JSON: expected value at line 1 column 1"
    for code in ("38341003", "penicillin"):
        coded = write(tmp_path / "coded.json", bundle(PATIENT, condition("c1") | {"code": code}))
        said = f'Condition/c1 (entry[1]): invalid: code: expected a JSON object, got a string: "{code}"'
        with pytest.raises(FhirDataError, match=re.escape(f"{coded}: {said}")):
            stats_or_error(coded, validate=True)


@pytest.mark.parametrize(
    ("system", "code", "read"),
    [
        ("urn:oid:2.16.840.1.113883.6.96", "91936005", "snomed:91936005"),  # a penicillin allergy, from CDA
        ("http://snomed.info/sct/731000124108", "91936005", "snomed:91936005"),  # the US edition
        ("http://snomed.info/sct/731000124108/version/20230301", "91936005", "snomed:91936005"),
        ("urn:oid:2.16.840.1.113883.6.90", "E11.9", "icd10cm:E11.9"),
        ("http://loinc.org/", "8480-6", "loinc:8480-6"),
        ("urn:oid:1.2.3.4", "x", "urn:oid:1.2.3.4|x"),  # a system it does not know keeps its name
    ],
)
def test_a_code_system_named_by_its_oid_or_edition_is_the_system_it_names(system, code, read):
    """A penicillin allergy coded with SNOMED's OID was read as another system's code: listed
    unread, and amoxicillin was recommended."""
    assert coding({"coding": [{"system": system, "code": code}]}, "allergy") == (read, None)


ICD10CM, SNOMED = "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct"


def test_prefer_systems_names_the_system_a_kinds_code_is_taken_from(tmp_path):
    """A hospital coding Conditions in ICD-10-CM, some also in SNOMED CT, got two codes for one disease
    (SNOMED's won where both were given): two labels, the SNOMED one never predicted (diagnosis
    micro-F1 0.738 by label, 0.830 by disease). ``prefer_systems`` says which system wins, per kind."""
    strep = {"system": ICD10CM, "code": "J02.0", "display": "Streptococcal pharyngitis"}
    twin = {"system": SNOMED, "code": "43878008", "display": "Streptococcal sore throat"}
    local = {"system": "http://h.example/dx", "code": "S1", "display": "strep (local)"}
    resources = [
        PATIENT,
        condition("c1", code={"coding": [strep]}),
        condition("c2", code={"coding": [twin, strep]}),
        condition("c3", code={"coding": [local, twin]}),
    ]
    write(tmp_path / "b.json", bundle(*resources))

    def read(**settings: Any) -> list[tuple[str | None, str | None]]:
        (record,) = FhirSource(path=str(tmp_path), **settings).records()
        return [(e.code, e.display) for e in record.timeline if e.kind == "condition"]

    assert read() == [
        ("icd10cm:J02.0", "Streptococcal pharyngitis"),
        ("snomed:43878008", "Streptococcal sore throat"),
        ("snomed:43878008", "Streptococcal sore throat"),
    ]
    assert read(prefer_systems={"condition": "icd10cm"}) == [
        ("icd10cm:J02.0", "Streptococcal pharyngitis"),
        ("icd10cm:J02.0", "Streptococcal pharyngitis"),
        ("http://h.example/dx|S1", "strep (local)"),  # no ICD-10 coding: its first
    ]
    assert read(prefer_systems={"condition": "http://h.example/dx"})[2] == ("http://h.example/dx|S1", "strep (local)")
    assert read(prefer_systems={"medication": "icd10cm"}) == read()  # another kind's setting changes nothing here


def test_prefer_systems_refuses_a_kind_or_system_it_does_not_know_naming_each(tmp_path):
    write(tmp_path / "b.json", bundle(PATIENT))
    text = f'[sources.p]\nuse = "fhir"\npath = "{tmp_path}"\n'
    text += 'prefer_systems = {diagnosis = "icd10cm", condition = "icd-10"}\n'
    result = run_heirloom("profile", "check", str(write(tmp_path / "p.toml", text)))
    assert result.returncode != 0
    said = " ".join(result.stderr.split()) + " ".join(result.stdout.split())
    assert (
        "sources.p.prefer_systems: 'prefer_systems': 'diagnosis' is not an event kind with a code (one of condition, "
        "observation, medication, procedure, immunization, encounter, allergy); condition: 'icd-10' is not a code "
        "system: one of cvx, icd10, icd10cm, loinc, rxnorm, snomed, or a system's URL as the codings write it"
    ) in said, said
    padded = text.replace('diagnosis = "icd10cm", condition = "icd-10"', 'condition = "http://snomed.info/sct "')
    result = run_heirloom("profile", "check", str(write(tmp_path / "p.toml", padded)))  # no coding matches it (v13 F6)
    said = "'prefer_systems': condition: 'http://snomed.info/sct ' has a space; a system URL has none (FHIR's uri type)"
    assert result.returncode == 2 and said in " ".join(result.stderr.split()), result.stderr


def test_record_shape_from_every_kind_of_resource(tmp_path):
    note = base64.b64encode(b"Patient is doing well.\nFollow up in 3 months.").decode()
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2001-02-03T03:00:00Z", "end": "2001-02-03T04:00:00Z"},
        "serviceProvider": {"reference": "Organization?identifier=https://example.org|org-1"},
    }
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    resources = [
        {**PATIENT, "deceasedDateTime": "2020-01-01T00:00:00-05:00"},
        encounter,
        condition(encounter={"reference": "urn:uuid:e1"}, abatementDateTime="2005-01-01"),
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "55284-4", "display": "Blood Pressure"}]},
            "subject": {"reference": "urn:uuid:p1"},
            "effectiveDateTime": "2001-02-03",
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 120.0, "unit": "mm[Hg]"},
                }
            ],
        },
        {
            "resourceType": "MedicationRequest",
            "id": "m1",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "urn:uuid:p1"},
            "medicationCodeableConcept": {"coding": [{"system": rxnorm, "code": "860975", "display": "Metformin"}]},
            "authoredOn": "2001-02-04",
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "patient": {"reference": "urn:uuid:p1"},
            "code": {"text": "Peanuts"},
            "recordedDate": "1999",
        },
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "subject": {"reference": "urn:uuid:p1"},
            "date": "2001-02-05T00:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": note}}],
        },
    ]
    write(
        tmp_path / "set" / "org.json",
        bundle(
            {
                "resourceType": "Organization",
                "id": "org-1",
                "identifier": [{"system": "https://example.org", "value": "org-1"}],
            }
        ),
    )
    write(tmp_path / "set" / "patient.json", bundle(*resources))
    source = FhirSource(path=str(tmp_path / "set"))
    [record] = list(source.records())
    assert source.tally.unresolved.count == 0
    assert (record.id, record.birth_date, record.gender, record.deceased, record.deceased_date) == (
        "p1",
        "1970-01-02",
        "female",
        True,
        "2020-01-01T05:00:00Z",
    )
    assert [(e.kind, e.date) for e in record.timeline] == [
        ("allergy", "1999"),
        ("observation", "2001-02-03"),
        ("encounter", "2001-02-03T03:00:00Z"),
        ("condition", "2001-02-03T03:05:06Z"),
        ("medication", "2001-02-04"),
        ("note", "2001-02-05T00:00:00Z"),
    ]
    by_kind = {e.kind: e for e in record.timeline}
    assert by_kind["condition"].encounter == "e1" and by_kind["condition"].end == "2005-01-01"
    assert by_kind["observation"].components[0].value == 120.0
    assert by_kind["note"].text == "Patient is doing well.\nFollow up in 3 months."
    assert record.codes["medication"] == ["rxnorm:860975"]
    assert record.codes["condition"] == ["snomed:44054006"]
    assert "Patient is doing well. Follow up in 3 months." in record.text
    assert "Metformin" in record.text and "died 2020-01-01" in record.text
    assert json.loads(json.dumps(attrs.asdict(record)))["timeline"][1]["components"][0]["unit"] == "mm[Hg]"


def test_a_symlinked_folder_of_exports_is_read_and_a_link_loop_ends(tmp_path):
    """A link to a folder of bundles read as "no FHIR files in it" (linked files were read)."""
    write(tmp_path / "exports" / "p.json", bundle(PATIENT))
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "hospital").symlink_to(tmp_path / "exports")
    (tmp_path / "exports" / "again").symlink_to(tmp_path / "set")  # a loop back up
    [record] = list(FhirSource(path=str(tmp_path / "set")).records())
    assert record.id == "p1"
    for name in (".snap", ".a", ".z"):  # a hidden link to it, walked first, took the folder's turn
        (tmp_path / "set" / name).symlink_to(tmp_path / "exports")
        assert [r.id for r in FhirSource(path=str(tmp_path / "set")).records()] == ["p1"], name


def test_an_allergy_keeps_every_name_its_resource_gives_what_it_is_to(tmp_path):
    """A generic code ("Drug allergy") with the substance in ``code.text``, in a second coding or
    in a reaction's substance: only the first coding's display was kept, and the medical
    safety filter, given "Drug allergy" alone, let amoxicillin through."""
    from heirloom_plugins.medical.safety import allergy_substances

    generic = {"system": "http://snomed.info/sct", "code": "416098002", "display": "Drug allergy"}
    rxnorm = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980", "display": "penicillin G"}
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "urn:uuid:p1"}}
    resources = [
        PATIENT,
        {**allergy, "id": "a1", "code": {"coding": [generic], "text": "Penicillin"}},
        {**allergy, "id": "a2", "code": {"coding": [generic, rxnorm]}},
        {**allergy, "id": "a3", "code": {"coding": [generic]}, "reaction": [{"substance": {"text": "Amoxil"}}]},
        {**allergy, "id": "a4", "code": {"coding": [{**generic, "display": "Latex"}], "text": "latex"}},
        # no code, the substance coded in a reaction only (h402 F6: "(no code)", its mapping never applied)
        {**allergy, "id": "a5", "reaction": [{"substance": {"text": "x"}}, {"substance": {"coding": [rxnorm]}}]},
    ]
    write(tmp_path / "set" / "p.json", bundle(*resources))
    [record] = list(FhirSource(path=str(tmp_path / "set")).records())
    shown = {e.id: (e.code, e.display) for e in record.timeline}
    assert shown == {
        "a1": ("snomed:416098002", "Drug allergy; Penicillin"),
        "a2": ("snomed:416098002", "Drug allergy; penicillin G"),
        "a3": ("snomed:416098002", "Drug allergy; Amoxil"),
        "a4": ("snomed:416098002", "Latex"),  # the same name once
        "a5": ("rxnorm:7980", "x; penicillin G"),
    }
    for allergy_id in ("a1", "a2"):
        assert "amoxicillin" in allergy_substances(*shown[allergy_id]), allergy_id


# -- the profile ----------------------------------------------------------------------------
def test_medical_profile_starts_its_fhir_source(bundles, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA", str(bundles.parent.parent))
    with heirloom.Kernel().system(
        str(REPO / "profiles" / "medical-small.toml"), only={("source", "patients")}
    ) as system:
        source = system.components("source")["patients"]
        assert isinstance(source, FhirSource) and Path(source.path) == bundles
        assert source.on_error == "fail" and source.validate is False


def test_profile_check_names_bad_fhir_fields(tmp_path):
    profile = write(
        tmp_path / "bad.toml",
        '[sources.ehr]\nuse = "fhir"\npath = "missing-folder"\non_error = "ignore"\ntest_fraction = "0.2"\n',
    )  # a wrong type elsewhere once made the on_error message attrs' whole argument tuple
    with pytest.raises(heirloom.ProfileError) as caught:
        heirloom.Kernel().resolve(str(profile))
    problems = {p.path: p.message for p in caught.value.problems}
    assert "path does not exist" in problems["sources.ehr.path"]
    assert problems["sources.ehr.on_error"] == "'on_error' must be in ('fail', 'skip') (got 'ignore')"
    assert problems["sources.ehr.test_fraction"] == "expected float, got str '0.2'"


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ("test_fraction = 1.5", "test_fraction", "'test_fraction' must be between 0 and 1, got 1.5"),
        ("test_fraction = 0.8\nvalidation_fraction = 0.3", "validation_fraction", "plus 'test_fraction' must be"),
        ("cohort = [0.5, 0.2]", "cohort", "'cohort' must be [low, high] with 0 <= low < high <= 1, got [0.5, 0.2]"),
        ("train_patients = 0", "train_patients", "'train_patients' must be at least 1, got 0"),
    ],
)
def test_profile_check_names_bad_split_settings(tmp_path, settings, key, message):
    profile = write(tmp_path / "bad.toml", f'[sources.ehr]\nuse = "fhir"\npath = "{tmp_path}"\n{settings}\n')
    with pytest.raises(heirloom.ProfileError) as caught:
        heirloom.Kernel().resolve(str(profile))
    problems = {p.path: p.message for p in caught.value.problems}
    assert message in problems[f"sources.ehr.{key}"]


def test_a_deeply_nested_file_is_a_bad_file_not_the_end_of_the_pass(tmp_path):
    deep = tmp_path / "set" / "deep.json"
    deep.parent.mkdir()
    deep.write_text('{"resourceType": "Bundle", "type": "collection", "entry": ' + "[" * 200_000 + "]" * 200_000 + "}")
    write(tmp_path / "set" / "good.json", bundle(PATIENT, condition()))
    with pytest.raises(FhirDataError, match=re.escape(f"{deep}: malformed JSON: nested too deeply")):
        stats_or_error(tmp_path / "set")
    stats = stats_or_error(tmp_path / "set", "skip")
    assert stats["errors"]["skipped_files"] == 1 and stats["records"] == 1


def test_numbers_and_strings_past_what_a_reply_can_hold_are_read_as_floats_or_refused(tmp_path):
    """An integer past 64 bits cannot be packed into a msgpack reply (it stopped the daemon
    serving that record): it is read as the float a JavaScript reader would see. A number
    past a float's range would read as infinity: the file is malformed, as with NaN."""
    text = bundle(PATIENT, weight(1, "Patient/p1"))
    huge = write(tmp_path / "huge.json", text.replace('"value": 1}', '"value": 18446744073709551616}'))
    (record,) = FhirSource(path=str(huge)).records()
    assert [event.value for event in record.timeline if event.kind == "observation"] == [float(2**64)]
    beyond = write(tmp_path / "inf.json", text.replace('"value": 1}', '"value": 1e400}'))
    with pytest.raises(FhirDataError, match="the number 1e400 is beyond a 64-bit float"):
        stats_or_error(beyond)
    longer = write(tmp_path / "long.json", text.replace('"value": 1}', f'"value": 1{"0" * 400}}}'))
    with pytest.raises(FhirDataError, match=re.escape(f"the number 1{'0' * 39}... (401 characters) is beyond")):
        stats_or_error(longer)
    half = write(tmp_path / "half.json", text.replace('"text": "weight"', '"text": "weight \\ud800"'))
    with pytest.raises(FhirDataError, match=re.escape("escapes half a UTF-16 pair")):  # no reply could carry it
        stats_or_error(half)
    paired = write(tmp_path / "paired.json", text.replace('"text": "weight"', '"text": "weight \\ud83d\\ude00"'))
    assert stats_or_error(paired)["records"] == 1


def verified(status: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    return {"coding": [{"system": system, "code": status}]}


def test_resources_entered_in_error_and_refuted_conditions_are_left_out_and_counted(tmp_path):
    """FHIR: a resource entered in error, or a Condition or allergy refuted, is to be read as
    if it were not there: no diagnosis label, no problem, no allergy. ``data stats`` counts them."""
    allergy = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "urn:uuid:p1"}}
    allergy |= {"code": {"text": "penicillin"}, "verificationStatus": verified("refuted")}
    visit = {"resourceType": "Encounter", "id": "e2", "status": "entered-in-error", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "urn:uuid:p1"}}
    resources = [
        PATIENT,
        visit,
        condition("kept", verificationStatus=verified("confirmed"), encounter={"reference": "urn:uuid:e2"}),
        condition("refuted", verificationStatus=verified("refuted")),
        condition("mistaken", verificationStatus=verified("entered-in-error")),
        {**weight(80, "urn:uuid:p1"), "status": "entered-in-error"},
        allergy,
    ]
    path = write(tmp_path / "b.json", bundle(*resources))
    (record,) = FhirSource(path=str(path)).records()
    assert [(event.id, event.encounter) for event in record.timeline] == [("kept", None)]  # its visit is gone too
    assert stats_or_error(path)["withdrawn_resources"] == 5


def test_a_second_resource_with_an_id_already_read_is_a_bad_resource(tmp_path):
    """Two Encounters ``e1`` of one patient would merge two visits (the summary kept one,
    the model the other): the second of a kind and id is a resource error, per ``on_error``."""
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "urn:uuid:p1"}}
    first = {**encounter, "period": {"start": "2023-01-01"}, "class": {"code": "AMB"}}
    second = {**encounter, "period": {"start": "2024-06-01"}, "class": {"code": "EMER"}}
    path = write(tmp_path / "b.json", bundle(PATIENT, first, condition("c1"), second, condition("c1")))
    said = f"{path}: Encounter/e1 (entry[3]): the patient has another Encounter with id 'e1' (ids are unique per type)"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(path)
    bulk = tmp_path / "bulk"  # the file and line of the second one are named, not the patient's
    write(bulk / "Patient.ndjson", json.dumps(PATIENT) + "\n")
    lines = [json.dumps({**visit, "subject": {"reference": "Patient/p1"}}) for visit in (first, second)]
    write(bulk / "Encounter.ndjson", "\n".join(lines) + "\n")
    said = f"{bulk / 'Encounter.ndjson'}: Encounter/e1 (line 2): the patient has another Encounter"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(bulk)
    stats = stats_or_error(path, "skip")
    assert stats["errors"]["skipped_resources"] == 2 and stats["records"] == 1
    (record,) = FhirSource(path=str(path), on_error="skip").records()
    assert [(e.kind, e.id, e.date) for e in record.timeline if e.kind == "encounter"] == [
        ("encounter", "e1", "2023-01-01")
    ]


def test_an_encounter_class_in_r5s_shape_is_a_bad_resource_not_a_classless_visit(tmp_path):
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "urn:uuid:p1"}}
    r5 = write(tmp_path / "r5.json", bundle(PATIENT, {**encounter, "class": [{"coding": [{"code": "AMB"}]}]}))
    with pytest.raises(FhirDataError, match=re.escape("cannot read: class is a list (FHIR R5's shape)")):
        stats_or_error(r5)
    drug = {"concept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "723"}]}}
    request = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order"}
    request |= {"subject": {"reference": "urn:uuid:p1"}, "medication": drug}  # "missing ... medication[x]" (h450 F1)
    r5 = write(tmp_path / "r5.json", bundle(PATIENT, request))
    with pytest.raises(
        FhirDataError, match=re.escape("MedicationRequest/m1 (entry[1]): medication is FHIR R5's shape")
    ):
        stats_or_error(r5)


def test_clinical_resources_contained_in_another_are_read_as_the_patients_own(tmp_path):
    """An allergy inside a List (``entry[].item`` -> ``#alg1``) and a diagnosis inside its Encounter
    (``diagnosis.condition`` -> ``#dx1``) were dropped without a word: the allergy ruled nothing
    out. They are the container's patient's (or their own subject's), the diagnosis its visit's,
    in a bundle and in a bulk export alike; ``data stats`` counts them."""
    from heirloom_plugins.medical.safety import excluded_by, recorded_allergies, ruled_out

    named = "Allergy to penicillin"
    penicillin = {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": named}]}
    allergy = {"resourceType": "AllergyIntolerance", "id": "alg1", "code": penicillin}
    listed = {"resourceType": "List", "id": "l1", "status": "current", "mode": "snapshot"}
    latex = {"resourceType": "AllergyIntolerance", "id": "alg3", "code": {"text": "Latex"}}
    listed |= {"subject": {"reference": "Patient/p1"}, "contained": [allergy, latex]}  # one container, two events
    listed |= {"entry": [{"item": {"reference": "#alg1"}}, {"item": {"reference": "#alg3"}}]}
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "Patient/p1"}, "period": {"start": "2021-03-01"}}
    visit |= {"contained": [condition("dx1") | {"subject": {"reference": "Patient/p1"}}]}
    visit |= {"diagnosis": [{"condition": {"reference": "#dx1"}}]}
    patient = PATIENT | {"contained": [{"resourceType": "AllergyIntolerance", "id": "alg2", "code": {"text": "Latex"}}]}
    path = write(tmp_path / "b.json", bundle(patient, listed, visit))
    bulk = tmp_path / "bulk"
    for resource in (patient, listed, visit):
        write(bulk / f"{resource['resourceType']}.ndjson", json.dumps(resource) + "\n")
    for where in (path, bulk):
        (record,) = FhirSource(path=str(where)).records()
        events = [(e.kind, e.id, e.code, e.encounter) for e in record.timeline if e.kind != "encounter"]
        assert sorted(events, key=str) == [
            ("allergy", "l1#alg1", "snomed:91936005", None),
            ("allergy", "l1#alg3", None, None),
            ("allergy", "p1#alg2", None, None),
            ("condition", "e1#dx1", "snomed:44054006", "e1"),
        ]
        amoxicillin = {"rxnorm:308182": frozenset({"amoxicillin"})}
        assert ruled_out(excluded_by(recorded_allergies(record)), amoxicillin) == {"rxnorm:308182": [named]}
        assert stats_or_error(where)["contained_resources"] == 4


def test_a_display_keeps_the_spaces_and_invisible_characters_of_free_text(tmp_path):
    """Tabs, line breaks (FHIR's strings allow them) and a zero-width space (Synthea writes some) are no control
    character a clinician would be shown: read as written, where a NUL or a BEL is a bad resource (above)."""
    text = "Sinus\titis\n(dis\u200border)"
    path = write(tmp_path / "one.json", bundle(PATIENT, condition() | {"code": {"text": text}}))
    [record] = FhirSource(path=str(path)).records()
    assert [e.display for e in record.timeline] == [text]


def folder_and(tmp_path: Path, name: str, make: Any) -> tuple[Path, Path]:
    """A folder holding a good bundle and ``name``, made by ``make(path)``."""
    write(tmp_path / "set" / "good.json", bundle(PATIENT, condition()))
    odd = tmp_path / "set" / name
    make(odd)
    return tmp_path / "set", odd


@pytest.mark.parametrize(
    ("make", "said"),
    [  # passed over without a word (checker 311 F3): a link into a share not mounted lost its patients unsaid
        (lambda path: path.symlink_to("/nonexistent/x.json"), "cannot read: No such file or directory (a link to "),
        (lambda path: os.mkfifo(path), "is a FIFO, not a regular file"),  # and never opened: it would hang the pass
    ],
)
def test_a_broken_link_or_a_fifo_named_as_a_fhir_file_is_a_bad_file_not_unseen(tmp_path, make, said):
    folder, odd = folder_and(tmp_path, "z.json", make)
    with pytest.raises(FhirDataError, match=re.escape(f"{odd}: {said}")):
        stats_or_error(folder)
    stats = stats_or_error(folder, "skip")
    assert (stats["records"], stats["files"], stats["errors"]["skipped_files"]) == (1, 1, 1)
    assert stats["errors"]["messages"][0].startswith(f"{odd}: {said}")
    source = FhirSource(path=str(folder))
    first = source.fingerprint()  # counted by name and why, never opened
    assert FhirSource(path=str(folder)).fingerprint() == first
    odd.unlink()
    assert source.fingerprint() != first


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_file_the_system_cannot_read_is_a_bad_file_not_a_traceback(tmp_path):
    """An I/O error (a flaky mount; /proc/self/mem gives EIO at offset 0) ended the pass with a bare
    ``OSError`` naming no file (checker 311 F2)."""
    folder, odd = folder_and(tmp_path, "eio.json", lambda path: path.symlink_to("/proc/self/mem"))
    said = f"{odd}: cannot read: Input/output error (a link to /proc/self/mem)"
    with pytest.raises(FhirDataError, match=re.escape(said)):
        stats_or_error(folder)
    stats = stats_or_error(folder, "skip")
    assert (stats["records"], stats["errors"]["skipped_files"], stats["errors"]["messages"]) == (1, 1, [said])


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_file_gone_while_a_pass_reads_is_a_bad_file_not_a_traceback(tmp_path, on_error):
    """A clinic exporting into the folder while a pass runs: a file listed, then gone before its turn, ended
    the pass with a FileNotFoundError traceback, even under ``on_error = "skip"`` (checker 311 F2). Bundles
    stream, so one is deleted after the first record arrives; an NDJSON set is read after the bundles."""
    write(tmp_path / "set" / "a.json", bundle(PATIENT, condition()))
    second = write(tmp_path / "set" / "b.json", bundle({**PATIENT, "id": "p2"}))
    bulk = write(tmp_path / "set" / "Condition.ndjson", json.dumps(condition("c9")) + "\n")
    write(tmp_path / "set" / "Patient.ndjson", json.dumps({**PATIENT, "id": "p3"}) + "\n")
    source = FhirSource(path=str(tmp_path / "set"), on_error=on_error)
    records = source.records()
    assert next(records).id == "p1"
    second.unlink()
    bulk.unlink()
    if on_error == "fail":
        with pytest.raises(FhirDataError, match=re.escape(f"{second}: cannot read: No such file or directory")):
            list(records)
        return
    assert [r.id for r in records] == ["p3"]
    said = [f"{second}: cannot read: No such file or directory", f"{bulk}: cannot read: No such file or directory"]
    assert (source.tally.skipped_files, source.tally.messages) == (2, said)


def test_a_folder_without_fhir_files_is_said_to_be_one(tmp_path):
    """Not ``files 0`` and, at train, "no encounter with a condition to learn from"."""
    write(tmp_path / "notes" / "readme.txt", "the export goes here")
    with pytest.raises(FhirDataError, match=re.escape(f"{tmp_path / 'notes'}: no FHIR files in it (*.json bundles")):
        stats_or_error(tmp_path / "notes", "skip")


def test_nan_values_are_malformed_json_and_never_reach_data_show(tmp_path):
    observation = weight(float("nan"), "Patient/p1")
    path = write(tmp_path / "nan.json", bundle(PATIENT, observation))  # json.dumps writes NaN
    with pytest.raises(FhirDataError, match="NaN is not valid JSON"):
        stats_or_error(path)
    folder = tmp_path / "bulk"
    write(folder / "Patient.ndjson", json.dumps(PATIENT) + "\n")
    write(folder / "Observation.ndjson", json.dumps(observation) + "\n")
    profile = write(tmp_path / "p.toml", f'[sources.patients]\nuse = "fhir"\npath = "{folder}"\non_error = "skip"\n')
    shown = run_heirloom("data", "show", str(profile), "patients", "--limit", "0", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "NaN is not valid JSON" in shown.stderr and "NaN" not in shown.stdout
    records = [json.loads(line, parse_constant=lambda name: pytest.fail(name)) for line in shown.stdout.splitlines()]
    assert [record["id"] for record in records] == ["p1"]


def test_resources_no_patient_of_their_unit_owns_are_warned_of_at_the_end_of_every_pass(tmp_path, caplog):
    """A visit sent in its own bundle (the Patient in another) is on no record: ``heirloom train``
    read the split without a word, where ``data stats`` counted it."""
    folder = tmp_path / "set"
    write(folder / "p1.json", bundle(PATIENT))
    write(folder / "p1-more.json", bundle(condition("c1") | {"subject": {"reference": "Patient/p1"}}))
    source = FhirSource(path=str(folder), test_fraction=0.0)
    with caplog.at_level("WARNING", logger="heirloom.fhir"):
        assert [r.id for r in source.records("train")] == ["p1"]
    assert f"{folder}: 1 clinical resource(s) belong to no patient of their own unit" in caplog.text


def test_a_reference_to_a_resource_of_the_wrong_type_is_counted_and_unassigned_ones_are_named(tmp_path, caplog):
    """``Condition.encounter`` -> ``Patient/p1`` left the condition without its visit unsaid, and
    ``Condition.subject`` -> ``Encounter/e1`` counted only as ``unassigned_resources: 1``: both are
    named under ``mistyped_examples``, and unassigned resources under ``unassigned_examples`` and in
    the end-of-pass warning, from a bundle and from a bulk export alike."""
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
    visit |= {"subject": {"reference": "Patient/p1"}, "period": {"start": "2020-01-01"}}
    wrong_visit = condition("c1") | {"subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Patient/p1"}}
    wrong_patient = condition("c2") | {"subject": {"reference": "Encounter/e1"}}
    path = write(tmp_path / "b.json", bundle(PATIENT, visit, wrong_visit, wrong_patient))
    bulk = tmp_path / "bulk"
    write(bulk / "Patient.ndjson", json.dumps(PATIENT) + "\n")
    write(bulk / "Encounter.ndjson", json.dumps(visit) + "\n")
    write(bulk / "Condition.ndjson", json.dumps(wrong_visit) + "\n" + json.dumps(wrong_patient) + "\n")
    for file, first, second in ((path, "entry[2]", "entry[3]"), (bulk / "Condition.ndjson", "line 1", "line 2")):
        where = path if file == path else bulk
        stats = stats_or_error(where)
        assert stats["mistyped_references"] == 2
        assert stats["mistyped_examples"] == [
            f"{file}: Condition/c1 ({first}): encounter Patient/p1: type Patient, not Encounter",
            f"{file}: Condition/c2 ({second}): subject Encounter/e1: type Encounter, not Device or Group or "
            "Location or Patient or Practitioner",
        ]
        stray = f"{file}: Condition/c2 ({second}): subject Encounter/e1"
        assert (stats["unassigned_resources"], stats["unassigned_examples"]) == (1, [stray])
        with caplog.at_level("WARNING", logger="heirloom.fhir"):
            list(FhirSource(path=str(where)).records())
        assert "1 clinical resource(s) belong to no patient" in caplog.text and f"the first: {stray}" in caplog.text
        caplog.clear()


def test_stats_list_the_codes_recorded_in_more_than_one_unit(tmp_path):
    """°F beside °C, lb beside kg: the same code on two scales is worth seeing before training."""

    def measured(oid: str, code: str, value: float, unit: str | None) -> dict[str, Any]:
        found = {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "urn:uuid:p1"}}
        return found | {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": unit},
        }

    path = write(
        tmp_path / "one.json",
        bundle(
            PATIENT,
            measured("o1", "8310-5", 37.0, "Cel"),
            measured("o2", "8310-5", 98.6, "[degF]"),
            measured("o3", "8310-5", 36.5, "Cel"),
            measured("o4", "29463-7", 70.0, "kg"),
            measured("o5", "72514-3", 3, None),
            measured("o6", "72514-3", 4, "{score}"),
            # a unit that is no text (stats, then training, crashed; then it was read as no unit, unsaid: h350 F1)
            measured("o7", "29463-7", 71.0, {"text": "kg"}),
            measured("o8", "29463-7", 72.0, 5),
        ),
    )
    skipped = FhirSource(path=str(path), on_error="skip").stats()
    assert skipped["errors"]["messages"] == [
        f"{path}: Observation/o7 (entry[7]): cannot read: valueQuantity.unit: expected a string, got an object: "
        + '{"text": "kg"}',
        f"{path}: Observation/o8 (entry[8]): cannot read: valueQuantity.unit: expected a string, got a number: 5",
    ]
    assert skipped["mixed_units"] == {
        "loinc:72514-3": {"": 1, "{score}": 1},
        "loinc:8310-5": {"Cel": 2, "[degF]": 1},
    }


def test_a_reference_by_an_identifier_two_resources_share_names_neither(tmp_path):
    """Two visits of one bundle with one identifier: a Condition naming it (a conditional reference) was put at
    the later visit, silently; FHIR calls a conditional reference that matches several an error."""
    same = {"identifier": [{"system": "urn:visits", "value": "v1"}]}
    resources = [
        PATIENT,
        visit("e1", "2001-02-03T03:00:00Z") | same,
        visit("e2", "2009-02-03T03:00:00Z") | same,
        visit("e3", "2010-02-03T03:00:00Z") | {"identifier": [{"system": "urn:visits", "value": "v3"}]},
        condition("c1", encounter={"reference": "Encounter?identifier=urn:visits|v1"}),
        condition("c2", encounter={"reference": "Encounter?identifier=urn:visits|v3"}),
    ]
    source = FhirSource(path=str(write(tmp_path / "b.json", bundle(*resources))))
    (record,) = source.records()
    assert {e.id: e.encounter for e in record.timeline if e.kind == "condition"} == {"c1": None, "c2": "e3"}
    assert source.tally.to_json()["unlinked_conditions"] == 1


def _coded(**code: Any) -> dict[str, Any]:
    return {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes", **code}]}


def _measured(**fields: Any) -> dict[str, Any]:
    found = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "urn:uuid:p1"}}
    return found | {"code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}} | fields


def _drug(concept: Any) -> dict[str, Any]:
    request = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order"}
    return request | {"subject": {"reference": "urn:uuid:p1"}, "medicationCodeableConcept": concept}


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        # h350 F2: a display or text of another type passed data stats, then made train crash (unhashable label
        # names) and the daemon refuse to start, naming nothing
        (
            condition(code=_coded(display={"a": 1})),
            'code.coding[0].display: expected a string, got an object: {"a": 1}',
        ),
        (condition(code={"text": 5}), "code.text: expected a string, got a number: 5"),
        (_drug({"text": ["amoxicillin"]}), 'medicationCodeableConcept.text: expected a string, got an array: ["amo'),
        (_measured(valueQuantity={"value": "NaN", "unit": "Cel"}), "valueQuantity.value: expected a number, got a str"),
        # h350 F1: read as "nothing" (the code lost), or turned into another value, unsaid
        (condition(code={"coding": _coded()["coding"][0]}), "code.coding: expected a list of Coding objects, got an"),
        (condition(code={"coding": ["snomed"]}), 'code.coding[0]: expected a Coding object, got a string: "snomed"'),
        (condition(code=_coded(system=5)), "code.coding[0].system: expected a string, got a number: 5"),
        (visit("e1", "2001", period="2020"), 'period: expected a Period object ({"start": ..., "end": ...}), got a st'),
        (_measured(valueQuantity={"value": 37.0, "unit": 5}), "valueQuantity.unit: expected a string, got a number: 5"),
        (_measured(valueQuantity={"value": True}), "valueQuantity.value: expected a number, got a boolean: true"),
        # h350 F8: refused with an AttributeError or KeyError repr instead of the field
        (_measured(component="x"), 'component: expected a list of objects, got a string: "x"'),
        (_measured(valueQuantity=5), 'valueQuantity: expected a Quantity object ({"value": ..., "unit": ...}), got'),
        (visit("e1", "2001", type={"coding": []}), "type: expected a list of CodeableConcept objects, got an object"),
        (_measured(component=[{"code": {"coding": []}, "valueQuantity": {"value": "1"}}]), "component[0].valueQuan"),
        (condition(clinicalStatus={"coding": {"code": "active"}}), "clinicalStatus.coding: expected a list of Codi"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_or_skipped_naming_file_resource_and_field(tmp_path, resource, field):
    """Each wrong type the records would copy is a resource error naming the file, the resource and the field's
    path: ``on_error = "fail"`` stops there, ``"skip"`` skips that resource and keeps the patient."""
    path = write(tmp_path / "one.json", bundle(PATIENT, resource))
    label = f"{resource['resourceType']}/{resource['id']} (entry[1])"
    with pytest.raises(FhirDataError, match=re.escape(f"{path}: {label}: cannot read: {field}")):
        stats_or_error(path)
    skipped = stats_or_error(path, on_error="skip")
    assert (skipped["records"], skipped["errors"]["skipped_resources"]) == (1, 1)
    assert skipped["errors"]["messages"][0].startswith(f"{path}: {label}: cannot read: {field}")
    (record,) = FhirSource(path=str(path), on_error="skip").records()
    assert record.timeline == ()
