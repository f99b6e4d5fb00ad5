"""Allergies recorded in another unit than their patient's: joined to the patient's record where it is served.

A per-query export (``AllergyIntolerance?patient=p1`` saved as a file of its own) or an NDJSON allergy file beside
bundles leaves a patient's allergies outside the unit that builds the record (docs/FHIR.md, "Streaming and units").
The record is yielded before the pass reaches them, so they cannot join it there; the pass keeps, per patient of
the set, the allergies that name it, as events, and a reader that holds every record (the medical records api)
joins them afterwards (``FhirSource.joined``): amoxicillin was selected for a penicillin-allergic patient whose
allergy was in such a file, nothing said (checker h456 F1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from heirloom_plugins.fhir.records import Event
from heirloom_plugins.fhir.references import key, keys_of


@attrs.frozen
class Outside:
    """One allergy outside its patient's unit: where it is (``file: AllergyIntolerance/a1 (entry[0])``, the file
    relative to the source's ``path``), its id, and its event (None: its fields could not be read)."""

    where: str
    id: str | None
    event: Event | None


def patient_keys(resource: dict[str, Any], full_url: str | None) -> Iterator[str]:
    """Every reference form another file may name a Patient by: ``Patient/id`` (an absolute URL's tail too), its
    identifiers (``Patient?identifier=system|value``, with and without the system), its ``urn:uuid:`` fullUrl."""
    yield from keys_of(resource, full_url)
    if full_url and full_url.startswith("urn:"):
        yield full_url


def reference_key(reference: str | None) -> str | None:
    """The key ``patient_keys`` gives for what an allergy's ``patient`` reference names: a bare id (no type, as
    some exports write it) is a Patient's, the only type that field holds."""
    if not reference:
        return None
    if reference.startswith("urn:"):
        return reference
    found = key(reference)
    if found is None and "/" not in reference and "?" not in reference:
        return f"Patient/{reference}"
    return found if found is not None and found.startswith("Patient") else None


@attrs.define
class AllergiesElsewhere:
    """What a pass found of allergies outside their patient's unit."""

    #: The key of the patient reference (``Patient/p1``, ``Patient?identifier=...``, ``urn:uuid:...``) -> its allergies.
    by_key: dict[str, list[Outside]] = attrs.Factory(dict)
    #: After ``settle``: patient id -> its allergies outside its unit that its record lacks.
    of_patients: dict[str, list[Outside]] = attrs.Factory(dict)

    def add(self, reference: str | None, outside: Outside) -> None:
        """Note an unassigned allergy whose patient reference is ``reference`` (one naming no patient, a
        ``Group``, is left as the unassigned resource it is)."""
        if (found := reference_key(reference)) is not None:
            self.by_key.setdefault(found, []).append(outside)

    def settle(
        self, keys: Mapping[str, set[str]], on_records: Mapping[str, set[str]], ours: Callable[[str], bool]
    ) -> None:
        """At the end of a pass: keep those naming a patient the pass read (``keys``: each reference key -> the ids
        of every patient it names, of any cohort), once each, for the patients ``ours`` says are this source's,
        but for an allergy a record of one of them holds already (the same resource in two files). One whose
        reference names several (an identifier two Patients carry) is each one's, unread: which patient's it is
        the reference does not say, and dropped, amoxicillin was selected for both (v44 F1), in any cohort (F4)."""
        found: dict[str, dict[str | None, list[Outside]]] = {}
        for reference, allergies in self.by_key.items():
            pids = sorted(keys.get(reference, ()))
            for allergy in allergies:
                if allergy.id is not None and any(allergy.id in on_records.get(pid, ()) for pid in pids):
                    continue  # on the record of the patient whose bundle holds it (v45 F8)
                if len(pids) > 1:
                    named = f"{allergy.where}, whose patient reference names {len(pids)} patients"
                    allergy = attrs.evolve(allergy, where=named, event=None)
                for pid in filter(ours, pids):
                    kept = found.setdefault(pid, {})
                    if allergy.id is None or allergy.id not in kept:  # the same id in three files: once (v44 F6)
                        kept.setdefault(allergy.id, []).append(allergy)
        self.of_patients = {pid: [a for same in kept.values() for a in same] for pid, kept in found.items() if kept}
        self.by_key = {}

    def to_json(self) -> dict[str, object]:
        """What ``data stats`` prints: how many patients and allergies, and the first 20 named."""
        named = [f"{pid}: {a.where}" for pid, allergies in self.of_patients.items() for a in allergies]
        return {"patients": len(self.of_patients), "allergies": len(named), "examples": named[:20]}


def events_of(allergies: Iterable[Outside]) -> list[Event]:
    """The events of ``allergies`` whose fields were read."""
    return [a.event for a in allergies if a.event is not None]
