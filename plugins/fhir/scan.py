"""One streaming pass over a FHIR data set: files in, patient records out, figures tallied.

A patient's record is built from its *unit*: the bundle file that holds its Patient
resource (yielded as soon as that file is read), or, for NDJSON bulk exports, which
split resources by type across files, all the NDJSON files of the set together. Those
are indexed by byte offset in a first pass (keys and offsets only, never resources),
then each patient's lines are read back. References a unit cannot resolve wait until
the end of the pass, when every file's keys are known.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from heirloom_plugins.fhir.diagnoses import Diagnoses
from heirloom_plugins.fhir.elsewhere import AllergiesElsewhere, Outside, patient_keys
from heirloom_plugins.fhir.parse import (
    COMPRESSED,
    Entry,
    FhirDataError,
    discover,
    file_size,
    is_compressed,
    is_ndjson,
    open_file,
    problem,
    read_bundle,
    read_line,
    read_ndjson,
)
from heirloom_plugins.fhir.records import (
    EVENTS,
    PATIENT_FIELD,
    PREFERRED,
    Event,
    PatientRecord,
    Preferred,
    demographics,
    encounter_ending_before_start,
    event,
    event_after_today,
    patient_record,
    patient_reference,
    today_anywhere,
    with_medication,
    withdrawn,
)
from heirloom_plugins.fhir.references import LINKS, Catalog, Known, Target, key, logical, reference_of, walk
from heirloom_plugins.timelines import first_before_birth

log = logging.getLogger("heirloom.fhir")

#: Error messages and unresolved references quoted in the tally; the rest are counted.
KEPT = 20
#: What a folder holding none of the files a pass reads says.
NO_FHIR_FILES = "no FHIR files in it (*.json bundles, *.ndjson or *.jsonl bulk exports, searched recursively)"

#: Odd shapes the lean parser lets through surface as these while building an event.
SHAPE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)

#: (file index, byte offset, "line N", position in ``contained_events`` or -1) of an NDJSON resource
Place = tuple[int, int, str, int]
#: The resource types each Reference field the records read may point at (FHIR R4's, of the
#: timeline's resources); a reference to another type is counted as mistyped.
HOLDS = {
    "subject": frozenset({"Patient", "Group", "Device", "Location", "Practitioner"}),
    "patient": frozenset({"Patient"}),
    "encounter": frozenset({"Encounter"}),
}
#: The resource type of an allergy: one outside its patient's unit is named (``AllergiesElsewhere``).
ALLERGY = "AllergyIntolerance"
#: Contained resources read as timeline events of their own (a contained Encounter is no visit).
CONTAINED = frozenset(EVENTS) - {"Encounter"}


def contained_events(entry: Entry) -> list[Entry]:
    """The clinical resources ``entry`` contains (``CONTAINED``), each as an entry of its own:
    an allergy inside a List, a diagnosis inside its Encounter. Each is about its own patient
    when it names one, else the container's (the container itself, when a Patient); one
    contained in an Encounter without an ``encounter`` of its own is that visit's. Its id is
    ``container#id`` (a contained id is unique only in its container). Left unread, such an
    allergy ruled nothing out."""
    container = entry.resource or {}
    cid = container.get("id")
    here = f"{container.get('resourceType')}/{cid}" if isinstance(cid, str) else entry.full_url
    holder = container.get("subject") or container.get("patient")  # a List's, an Encounter's, a Claim's
    if container.get("resourceType") == "Patient" and here:
        holder = {"reference": here}
    found = []
    for index, inner in enumerate(container.get("contained") or ()):
        if not isinstance(inner, dict) or inner.get("resourceType") not in CONTAINED:
            continue
        resource = {**inner, "id": f"{cid or entry.where}#{inner.get('id') or index}"}
        field = PATIENT_FIELD.get(inner["resourceType"], "subject")
        if resource.get(field) is None and holder is not None:
            resource[field] = holder
        if container.get("resourceType") == "Encounter" and "encounter" not in resource and here:
            resource["encounter"] = {"reference": here}
        found.append(Entry(resource, f"{entry.where}.contained[{index}]", offset=entry.offset))
    return found


@attrs.define
class Sampled:
    """A count, and the first ``KEPT`` of what it counted, named: enough to find them in the files."""

    count: int = 0
    examples: list[str] = attrs.Factory(list)

    @property
    def full(self) -> bool:
        """Whether another example would be dropped (so a costly name need not be made)."""
        return len(self.examples) >= KEPT

    def add(self, example: str, count: int = 1) -> None:
        self.count += count
        if example and not self.full:
            self.examples.append(example)


@attrs.define
class Tally:
    """What one pass saw; ``to_json`` is what ``heirloom data stats`` prints."""

    on_error: str
    records: int = 0
    splits: Counter[str] = attrs.Factory(Counter)
    files: int = 0
    bytes: int = 0
    resources: Counter[str] = attrs.Factory(Counter)
    references: int = 0
    #: References no resource of the pass answers (``file: Type/id (entry[i]): the reference``).
    unresolved: Sampled = attrs.Factory(Sampled)
    #: Resources no patient of their unit owns (``file: Type/id (entry[i]): its patient reference``).
    unassigned: Sampled = attrs.Factory(Sampled)
    #: Of those, the AllergyIntolerance resources naming a patient of the set: allergies its record lacks.
    elsewhere: AllergiesElsewhere = attrs.Factory(AllergiesElsewhere)
    #: References to a resource of a type their field cannot hold (``Condition.encounter`` -> a Patient).
    mistyped: Sampled = attrs.Factory(Sampled)
    #: Conditions whose ``encounter`` reference resolves to nothing of their unit: no visit's diagnosis label.
    unlinked: Sampled = attrs.Factory(Sampled)
    #: Conditions whose own ``encounter`` is another visit than the Encounter that lists them as its diagnosis.
    conflicting: Sampled = attrs.Factory(Sampled)
    outside_cohort: int = 0
    skipped_files: int = 0
    skipped_resources: int = 0
    #: Resources entered in error, and Conditions or allergies refuted: left out of the records.
    withdrawn: int = 0
    #: Clinical resources read from inside another resource's ``contained``.
    contained: int = 0
    messages: list[str] = attrs.Factory(list)
    #: Patients with an encounter dated before their birthDate (``file: Patient/id: ...``).
    before_birth: Sampled = attrs.Factory(Sampled)
    #: Patients with an event dated after today (``records.event_after_today``).
    after_today: Sampled = attrs.Factory(Sampled)
    #: Patients with an encounter whose period ends before it starts (``records.encounter_ending_before_start``).
    ending_before_start: Sampled = attrs.Factory(Sampled)
    #: Units of the numeric observation values (components too) per code.
    units: defaultdict[str, Counter[str]] = attrs.Factory(lambda: defaultdict(Counter))

    def fault(self, error: FhirDataError, *, whole_file: bool) -> None:
        """Apply ``on_error``: raise, or count the skipped file or resource and go on."""
        if self.on_error == "fail":
            raise error
        if whole_file:
            self.skipped_files += 1
        else:
            self.skipped_resources += 1
        log.warning("skipped %s: %s", "the file" if whole_file else "one resource", error)
        if len(self.messages) < KEPT:
            self.messages.append(str(error))

    def measured(self, found: Event) -> None:
        """Count each numeric value's unit (``""``: none): a code recorded in several units is on
        several scales, which a reader must convert or keep apart (``mixed_units``)."""
        for part in (found, *found.components):
            if part.code and isinstance(part.value, int | float) and not isinstance(part.value, bool):
                self.units[part.code][part.unit or ""] += 1

    def misdated(self, found: Sampled, said: str, why: str) -> None:
        """Count, keep and say a patient read with a date a person should check (an encounter before its
        birth or ending before it starts, an event after today): read as it is (one wrong date of 331 Synthea
        patients would stop the pass), but never unsaid."""
        found.add(said)
        log.warning("%s: %s (data stats counts these)", said, why)

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "splits": dict(sorted(self.splits.items())),
            "files": self.files,
            "bytes": self.bytes,
            "resources": dict(sorted(self.resources.items(), key=lambda item: (-item[1], item[0]))),
            "references": self.references,
            "unresolved_references": self.unresolved.count,
            "unresolved_examples": self.unresolved.examples,
            "mistyped_references": self.mistyped.count,
            "mistyped_examples": self.mistyped.examples,
            "unlinked_conditions": self.unlinked.count,
            "unlinked_examples": self.unlinked.examples,
            "conflicting_encounters": self.conflicting.count,
            "conflicting_examples": self.conflicting.examples,
            "unassigned_resources": self.unassigned.count,
            "unassigned_examples": self.unassigned.examples,
            "allergies_outside_unit": self.elsewhere.to_json(),
            "withdrawn_resources": self.withdrawn,
            "contained_resources": self.contained,
            "mixed_units": {
                code: dict(units.most_common()) for code, units in sorted(self.units.items()) if len(units) > 1
            },
            "encounters_before_birth": {"patients": self.before_birth.count, "examples": self.before_birth.examples},
            "events_after_today": {"patients": self.after_today.count, "examples": self.after_today.examples},
            "encounters_ending_before_start": {
                "patients": self.ending_before_start.count,
                "examples": self.ending_before_start.examples,
            },
            "outside_cohort": self.outside_cohort,
            "errors": {
                "on_error": self.on_error,
                "skipped_files": self.skipped_files,
                "skipped_resources": self.skipped_resources,
                "messages": self.messages,
            },
        }


@attrs.define
class Drugs:
    """The ``code`` of each Medication resource of a unit, which prescriptions may name by
    reference (``medicationReference``) instead of coding the drug themselves; only these
    concepts are kept, never whole resources."""

    catalog: Catalog
    codes: dict[tuple[str, str], Any] = attrs.Factory(dict)

    def add(self, target: tuple[str, str], resource: dict[str, Any]) -> None:
        if target[0] == "Medication" and isinstance(resource.get("code"), dict):
            self.codes[target] = resource["code"]

    def code(self, reference: str) -> Any:
        target = self.catalog.resolve(reference)
        return self.codes.get(target) if target else None


class Scan:
    """A single pass; ``records(split)`` streams, ``tally`` fills in as it goes."""

    def __init__(
        self,
        root: Path,
        on_error: str,
        side: Callable[[str], str | None],
        check: Callable[[dict[str, Any]], str | None] | None,
        prefer: Preferred = PREFERRED,
    ):
        self.root = root
        self.side = side
        self.check = check
        #: The system each kind's code is taken from first (``records.coding``).
        self.prefer = prefer
        self.tally = Tally(on_error)
        #: Today where it is latest: an event after it is counted (``Tally.after_today``).
        self.today = today_anywhere()
        self.known = Known()
        #: Where each patient's Patient resource was read (one record per patient).
        self._patients: dict[str, str] = {}
        #: Each reference form another unit may name a patient by -> the ids of those it names (``AllergiesElsewhere``).
        self._patient_keys: defaultdict[str, set[str]] = defaultdict(set)
        #: The ids of the allergies each record built holds: one found again in another file is on it.
        self._allergies_on: dict[str, set[str]] = {}
        #: ``(type, id)`` of the withdrawn resources seen: an event's link to one is dropped.
        self._withdrawn: set[tuple[str, str]] = set()
        #: The unit's Encounters that could not be read (skipped): a link to one is no visit, said as unlinked.
        self._unreadable: set[tuple[str, str]] = set()

    def records(self, split: str | None) -> Iterator[PatientRecord]:
        paths = discover(self.root)
        if not paths:  # a wrong folder: said here, not as "no encounter to learn from" after a pass
            raise FhirDataError(self.root, None, NO_FHIR_FILES)
        bulk = []
        for path in paths:  # a file at a time: the first bundle's patients come before the last is opened
            try:
                self._count_file(path)
            except FhirDataError as error:  # gone, a broken link, no plain file: said and counted, never unseen
                self.tally.fault(error, whole_file=True)
                continue
            if is_compressed(path, sniff=is_ndjson(path)):
                self.tally.fault(FhirDataError(path, None, COMPRESSED), whole_file=True)
            elif is_ndjson(path):
                bulk.append(path)
            else:
                yield from self._bundle(path, split)
        if bulk:
            yield from self._bulk(bulk, split)
        for ref, count, where in self.known.settle():
            self.tally.unresolved.add(f"{where}: {ref}", count)
        self.tally.elsewhere.settle(self._patient_keys, self._allergies_on, lambda pid: self.side(pid) is not None)

    # -- units ---------------------------------------------------------------------------
    def _bundle(self, path: Path, split: str | None) -> Iterator[PatientRecord]:
        try:
            entries = [e for e in read_bundle(path) if self._accept(path, e)]
        except FhirDataError as error:
            self.tally.fault(error, whole_file=True)
            return
        catalog, entries, targets = self._catalog(path, entries)
        self._withdrawn.update(t for t, e in zip(targets, entries, strict=True) if withdrawn(e.resource))
        self.known.keys.update(catalog.reachable())
        drugs, diagnoses = Drugs(catalog), Diagnoses()
        for target, e in zip(targets, entries, strict=True):
            drugs.add(target, e.resource)
            diagnoses.add(target, e.resource)
        diagnoses.settle(catalog)
        for e in entries:
            self._check_references(path, e, catalog)
        inside = [c for e in entries for c in contained_events(e) if self._accept_contained(path, c)]
        patients = {
            t[1]: e for t, e in zip(targets, entries, strict=True) if t[0] == "Patient" and self._claim(t[1], path, e)
        }
        wanted = self._wanted(patients, split)
        chosen = set(wanted)
        events: dict[str, list[Event]] = defaultdict(list)
        seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._unreadable = set()
        for e in sorted(entries + inside, key=_visits_first):
            if e.resource["resourceType"] in EVENTS:
                owner = self._owner(patient_reference(e.resource), catalog, patients)
                if owner is None and withdrawn(e.resource):  # entered in error or refuted: none, wherever it is
                    self.tally.withdrawn += 1
                elif owner is None:
                    self.tally.unassigned.add(_stray(path, e))
                    self._allergy_elsewhere(path, e)
                elif owner in chosen:
                    self._add_event(events[owner], seen[owner], path, e, catalog, drugs, diagnoses)
        for pid in wanted:
            yield self._record(path, patients[pid], pid, events[pid])

    def _bulk(self, paths: list[Path], split: str | None) -> Iterator[PatientRecord]:
        catalog = Catalog()
        drugs, diagnoses = Drugs(catalog), Diagnoses()
        patients: dict[str, Place] = {}
        by_reference: dict[str | None, list[Place]] = defaultdict(list)
        allergies: set[Place] = set()  # the AllergyIntolerance resources: one no patient of the unit owns is named
        gone: set[Place] = set()  # those entered in error or refuted: none, owned or not
        lost: set[int] = set()  # files that could not be read: what was indexed of them is dropped
        for index, path in enumerate(paths):
            try:
                for e in read_ndjson(path):
                    if not self._accept(path, e):
                        continue
                    kind, rid = catalog.add(e.resource, None)
                    if withdrawn(e.resource):
                        self._withdrawn.add((kind, rid))
                    drugs.add((kind, rid), e.resource)
                    diagnoses.add((kind, rid), e.resource)
                    self._check_references(path, e, None)
                    place = (index, e.offset or 0, e.where, -1)
                    if kind == "Patient":
                        if self._claim(rid, path, e):
                            patients[rid] = place
                    elif kind in EVENTS:
                        by_reference[patient_reference(e.resource)].append(place)
                        if kind == ALLERGY:
                            allergies.add(place)
                        if withdrawn(e.resource):
                            gone.add(place)
                    for j, inner in enumerate(contained_events(e)):
                        if self._accept_contained(path, inner):
                            by_reference[patient_reference(inner.resource)].append((*place[:3], j))
                            if inner.resource["resourceType"] == ALLERGY:
                                allergies.add((*place[:3], j))
            except FhirDataError as error:  # gone or unreadable mid-pass: the file is skipped, as a malformed one
                self.tally.fault(error, whole_file=True)
                lost.add(index)
        self.known.keys.update(catalog.reachable())
        diagnoses.settle(catalog)
        with ExitStack() as stack:
            handles: dict[int, BinaryIO] = {}
            for index, path in enumerate(paths):  # all opened before a patient is read back: one gone is left out whole
                try:
                    if index not in lost:
                        handles[index] = stack.enter_context(open_file(path))
                except FhirDataError as error:
                    self.tally.fault(error, whole_file=True)
                    lost.add(index)
            patients = {pid: place for pid, place in patients.items() if place[0] not in lost}
            owned: dict[str, list[Place]] = defaultdict(list)
            for ref, places in by_reference.items():
                places = [place for place in places if place[0] not in lost]
                owner = self._owner(ref, catalog, patients)
                if owner is None:
                    for place in places:  # the first few read back, for their names, and every allergy: once each
                        if place in gone:
                            self.tally.withdrawn += 1
                            continue
                        unassigned, i = self.tally.unassigned, place[0]
                        wanted = place in allergies or not unassigned.full
                        entry = _read_back(handles[i], *place[1:]) if wanted else None
                        unassigned.add("" if entry is None or unassigned.full else _stray(paths[i], entry))
                        if entry is not None and place in allergies:
                            self._allergy_elsewhere(paths[i], entry)
                else:
                    owned[owner].extend(places)
            for pid in self._wanted(patients, split):
                try:
                    record = self._read_back_record(
                        pid, patients[pid], owned[pid], paths, handles, catalog, drugs, diagnoses
                    )
                except FhirDataError as error:  # a line the system cannot read back (an I/O error): no record
                    self.tally.fault(error, whole_file=False)
                    continue
                yield record

    def _read_back_record(
        self,
        pid: str,
        place: Place,
        owned: list[Place],
        paths: list[Path],
        handles: dict[int, BinaryIO],
        catalog: Catalog,
        drugs: Drugs,
        diagnoses: Diagnoses,
    ) -> PatientRecord:
        """The record of bulk-export patient ``pid`` (its Patient at ``place``, its resources at ``owned``),
        read back by offset; FhirDataError when a line cannot be read."""
        index, offset, where, _ = place
        events: list[Event] = []
        seen: set[tuple[str, str]] = set()
        inside: dict[tuple[int, int], list[Entry]] = {}  # a container read once for all it holds
        entries: list[tuple[Path, Entry]] = []
        for i, o, w, j in owned:
            if j < 0:
                entries.append((paths[i], read_line(handles[i], o, w)))
            else:
                if (i, o) not in inside:
                    inside[i, o] = contained_events(read_line(handles[i], o, w))
                entries.append((paths[i], inside[i, o][j]))
        self._unreadable = set()
        for path, entry in sorted(entries, key=lambda found: _visits_first(found[1])):
            self._add_event(events, seen, path, entry, catalog, drugs, diagnoses)
        return self._record(paths[index], read_line(handles[index], offset, where), pid, events)

    # -- steps ---------------------------------------------------------------------------
    def _count_file(self, path: Path) -> None:
        """Count a file to read; FhirDataError when it cannot be read (``file_size``)."""
        self.tally.bytes += file_size(path)
        self.tally.files += 1

    def _accept(self, path: Path, entry: Entry) -> bool:
        """Lean checks, then validation when asked; counts what passes."""
        message = entry.error or problem(entry.resource) or _nameless(entry)
        message = message or (self.check(entry.resource) if self.check else None)
        if message:
            self.tally.fault(FhirDataError(path, entry.label(), message), whole_file=False)
            return False
        self.tally.resources[entry.resource["resourceType"]] += 1
        return True

    def _catalog(self, path: Path, entries: list[Entry]) -> tuple[Catalog, list[Entry], list[Target]]:
        """The bundle's resources by every name, with the entries that joined it and their targets:
        an earlier version of a resource is passed over (``_latest``), and an entry whose fullUrl or
        ``Type/id`` names another resource read already is a fault (``Catalog.clash``)."""
        catalog, kept, targets = Catalog(), [], []
        for e in _latest(entries):
            if clash := catalog.clash(e.resource, e.full_url):
                self.tally.fault(FhirDataError(path, e.label(), clash), whole_file=False)
            else:
                kept.append(e)
                targets.append(catalog.add(e.resource, e.full_url, e.label()))
        return catalog, kept, targets

    def _accept_contained(self, path: Path, entry: Entry) -> bool:
        """The lean checks of a contained clinical resource (its container passed them and
        validation); counts what passes."""
        message = problem(entry.resource)
        if message:
            self.tally.fault(FhirDataError(path, entry.label(), message), whole_file=False)
            return False
        self.tally.contained += 1
        return True

    def _check_references(self, path: Path, entry: Entry, catalog: Catalog | None) -> None:
        """Resolve what the unit can now; leave the rest for the end of the pass."""
        resource = entry.resource
        self._check_types(path, entry, catalog)
        contained = {c.get("id") for c in resource.get("contained") or () if isinstance(c, dict)}
        for ref in walk(resource) + logical(resource):
            self.tally.references += 1
            if ref.startswith("#"):
                if ref != "#" and ref[1:] not in contained:
                    self.tally.unresolved.add(f"{path}: {entry.label()}: {ref}")
            elif catalog is None or catalog.resolve(ref) is None:
                if ref.startswith("urn:"):  # bundle-local by definition
                    self.tally.unresolved.add(f"{path}: {entry.label()}: {ref}")
                else:
                    self.known.defer(ref, f"{path}: {entry.label()}")

    def _check_types(self, path: Path, entry: Entry, catalog: Catalog | None) -> None:
        """Count a patient or visit reference of a timeline resource whose target is of a type
        its field cannot hold (``Condition.encounter`` -> ``Patient/p2``): the link is dropped,
        and without a word the condition lost its visit (``HOLDS``)."""
        resource = entry.resource
        if resource["resourceType"] not in EVENTS:
            return
        for field in ("subject", "patient", "encounter"):
            ref = reference_of(resource.get(field), LINKS[field])
            kind = _target_type(ref, catalog) if ref else None
            if kind is not None and kind not in HOLDS[field]:
                holds = " or ".join(sorted(HOLDS[field]))
                self.tally.mistyped.add(f"{path}: {entry.label()}: {field} {ref}: type {kind}, not {holds}")

    def _claim(self, pid: str, path: Path, entry: Entry) -> bool:
        """Whether this Patient resource makes the record of patient ``pid``: not when its own
        fields cannot be read, nor when it is the pass's second Patient with that id (in another
        file, or twice in a unit: a second record of the same person, each with part of the
        history). Either is a fault before the patient counts, and leaves its resources unassigned."""
        label = entry.label()
        try:
            demographics(entry.resource)
        except SHAPE_ERRORS as exc:
            self.tally.fault(FhirDataError(path, label, f"cannot read: {_detail(exc)}"), whole_file=False)
            return False
        first = self._patients.setdefault(pid, f"{path}: {label}")
        for name in patient_keys(entry.resource, entry.full_url):  # a second Patient of one id: the same person's
            self._patient_keys[name].add(pid)
        if first == f"{path}: {label}":
            return True
        advice = "keep a patient's resources in one bundle, or export them as NDJSON"
        if is_ndjson(path):
            advice = "a bulk export lists each Patient once"
        message = f"Patient {pid!r} was read already ({first}); {advice}"
        self.tally.fault(FhirDataError(path, label, message), whole_file=False)
        return False

    @staticmethod
    def _owner(ref: str | None, catalog: Catalog, patients: dict[str, Any]) -> str | None:
        """The id of the unit's patient that ``ref`` points at, if it is one."""
        target = catalog.resolve(ref) if ref else None
        return target[1] if target is not None and target[0] == "Patient" and target[1] in patients else None

    def _wanted(self, patients: dict[str, Any], split: str | None) -> list[str]:
        """Patients of ``split`` (all when None); every patient of the cohort counts in the tally."""
        wanted = []
        for pid in patients:
            side = self.side(pid)
            if side is None:
                self.tally.outside_cohort += 1
                continue
            self.tally.records += 1
            self.tally.splits[side] += 1
            if split in (None, side):
                wanted.append(pid)
        return wanted

    def _add_event(
        self,
        events: list[Event],
        seen: set[tuple[str, str]],
        path: Path,
        entry: Entry,
        catalog: Catalog,
        drugs: Drugs,
        diagnoses: Diagnoses,
    ) -> None:
        """Add ``entry``'s event to one patient's ``events``, unless withdrawn, or a second
        resource of its type and id for that patient (a fault: two Encounters ``e1`` would merge
        two visits into one). Its visit is its own ``encounter``, else the Encounter listing it
        as a diagnosis (``diagnoses``); when the two disagree, its own, counted (``conflicting``)."""
        if withdrawn(entry.resource):
            self.tally.withdrawn += 1
            return
        rid = entry.resource.get("id") or entry.full_url  # a transaction's new resources have only a fullUrl
        key = (entry.resource["resourceType"], rid)
        if key[1] is not None and key in seen:
            message = (
                f"the patient has another {key[0]} with id {key[1]!r} (ids are unique per type): the first is kept"
            )
            self.tally.fault(FhirDataError(path, entry.label(), message), whole_file=False)
            return
        seen.add(key)
        try:
            ref, target = self._named_encounter(entry.resource.get("encounter"), catalog)
            target = None if target in self._unreadable else target  # no visit: unlinked, not a ghost's (h450 F2)
            listed = diagnoses.visits.get(key)
            if target is None:
                target = listed
                if target is None and ref and entry.resource["resourceType"] == "Condition":
                    self.tally.unlinked.add(f"{path}: {entry.label()}: encounter {ref}")
            elif listed is not None and listed != target:
                said = f"{path}: {entry.label()}: encounter {ref}, but Encounter/{listed[1]} lists it as its diagnosis"
                self.tally.conflicting.add(said)
            resource = with_medication(
                entry.resource if rid == entry.resource.get("id") else {**entry.resource, "id": rid}, drugs.code
            )
            visit = self._visit(target)
            statement = key[0] == "MedicationStatement"  # history: its visit places it, as none of its prescriptions
            found = event(resource, None if statement else visit, self.prefer)
            if statement:  # its own encounter (R5), its container (v38 F1), else its context (R4): read to place it
                context = entry.resource.get("context")  # in time only (undated, it was listed by id: v36 F8)
                found = attrs.evolve(found, during=visit or self._visit(self._named_encounter(context, catalog)[1]))
            if found.kind == "observation":
                self.tally.measured(found)
            events.append(found)
        except SHAPE_ERRORS as exc:
            self.tally.fault(FhirDataError(path, entry.label(), f"cannot read: {_detail(exc)}"), whole_file=False)
            if key[0] == "Encounter":
                self._unreadable.add(key)

    @staticmethod
    def _named_encounter(holder: Any, catalog: Catalog) -> tuple[str | None, Target | None]:
        """The Encounter reference ``holder`` (a Reference) writes, and the resource of the unit it resolves to."""
        ref = reference_of(holder, "Encounter")
        return ref, catalog.resolve(ref) if ref else None

    def _visit(self, target: Target | None) -> str | None:
        """The id of ``target`` if it is an Encounter, not withdrawn: a visit an event can belong to."""
        if not target or target[0] != "Encounter" or target in self._withdrawn or target in self._unreadable:
            return None
        return target[1]

    def _name(self, path: Path) -> str:
        """``path`` as a record names its file: relative to the source's folder."""
        return path.name if self.root.is_file() else path.relative_to(self.root).as_posix()

    def _allergy_elsewhere(self, path: Path, entry: Entry) -> None:
        """Note an unassigned resource that is an allergy, which a patient of another unit may have, as its event
        (None when its fields cannot be read: listed for a person, never dropped)."""
        if entry.resource["resourceType"] != ALLERGY:
            return
        try:
            found: Event | None = event(entry.resource, None, self.prefer)
        except SHAPE_ERRORS:
            found = None
        rid = entry.resource.get("id")
        outside = Outside(f"{self._name(path)}: {entry.label()}", rid if isinstance(rid, str) else None, found)
        self.tally.elsewhere.add(patient_reference(entry.resource), outside)

    def _record(self, path: Path, entry: Entry, pid: str, events: list[Event]) -> PatientRecord:
        record = patient_record(entry.resource, pid, self._name(path), self.side(pid) or "", events)
        self._allergies_on[pid] = {e.id for e in record.timeline if e.kind == "allergy" and e.id}
        where = f"{path}: {entry.label()}"
        if (first := first_before_birth(record.birth_date, record.timeline)) is not None:
            said = f"{where}: birthDate {record.birth_date} is after encounter {first.id!r} on {first.date}"
            self.tally.misdated(self.tally.before_birth, said, "ages there are below zero; check the two dates")
        if (late := event_after_today(record, self.today)) is not None:
            said = f"{where}: {late.kind} {late.id!r} is dated {late.date}, after today"
            why = "a mistyped year? a model reads it as the patient's latest (the default visit of a medical route)"
            self.tally.misdated(self.tally.after_today, said, why)
        if (inverted := encounter_ending_before_start(record)) is not None:
            said = f"{where}: encounter {inverted.id!r} ends ({inverted.end}) before it starts ({inverted.date})"
            why = "one of the two dates is wrong (FHIR's invariant per-1); check them"
            self.tally.misdated(self.tally.ending_before_start, said, why)
        return record


def _target_type(ref: str, catalog: Catalog | None) -> str | None:
    """The type of the resource ``ref`` points at: the unit's resource, else as the reference
    writes it (``Patient/p2``, ``Patient?identifier=...``); None for an unknown ``urn:``."""
    target = catalog.resolve(ref) if catalog is not None else None
    if target is not None:
        return target[0]
    written = key(ref)
    return written.split("?")[0].split("/")[0] if written else None


#: The resources a record needs a name for, and what each would be.
NAMED = {"Encounter": ("an Encounter", "a visit"), "Patient": ("a Patient", "a record")}


def _nameless(entry: Entry) -> str | None:
    """Why an Encounter cannot be a visit, or a Patient a record: it has neither an id nor a fullUrl, so
    nothing can name it (an Encounter read as a visit named None was the default visit of a medical
    route, whose answer then failed its own check; a Patient became a record with id '', whose
    resources no reference could reach, and a second such Patient "was read already")."""
    kind = entry.resource.get("resourceType")
    if kind not in NAMED or entry.resource.get("id") or entry.full_url:
        return None
    what, becomes = NAMED[kind]
    return f"{what} without an id (or, in a bundle, a fullUrl) cannot be {becomes}: nothing can name it"


def _latest(entries: list[Entry]) -> list[Entry]:
    """``entries`` but the earlier versions of a resource: entries with one fullUrl and different
    ``meta.versionId`` are versions of one resource (FHIR's bdl-7 allows them in a bundle), and the
    last in the bundle is read, as FHIR reads a resource's history."""
    last = {e.full_url: e for e in entries if e.full_url and _version(e)}
    return [
        e
        for e in entries
        if not (
            e.full_url in last and (later := last[e.full_url]) is not e and _version(e) not in (None, _version(later))
        )
    ]


def _version(entry: Entry) -> str | None:
    meta = entry.resource.get("meta") if entry.resource else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def _visits_first(entry: Entry) -> bool:
    """A unit's Encounters are read before what links to them: one that cannot be read is then no visit to link."""
    return entry.resource["resourceType"] != "Encounter"


def _stray(path: Path, entry: Entry) -> str:
    """An unassigned resource named with the patient reference it has (or lacks)."""
    ref, field = patient_reference(entry.resource), PATIENT_FIELD.get(entry.resource["resourceType"], "subject")
    return f"{path}: {entry.label()}: " + (f"{field} {ref}" if ref else f"no {field} reference")


def _read_back(handle: BinaryIO, offset: int, where: str, inner: int) -> Entry:
    """An NDJSON resource (or the one contained at ``inner``, when not -1) read again."""
    entry = read_line(handle, offset, where)
    return entry if inner < 0 else contained_events(entry)[inner]


def _detail(exc: Exception) -> str:
    """A ValueError's message names the field and the value (records.instant); for the other
    shape errors (a KeyError's bare key) the exception's type says what kind of fault it was."""
    return str(exc) if type(exc) is ValueError else repr(exc)
