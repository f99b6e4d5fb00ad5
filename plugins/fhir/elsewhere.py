"""Allergies recorded in another unit than their patient's: on no record, so named where a drug is chosen.

A per-query export (``AllergyIntolerance?patient=p1`` saved as a file of its own) or an NDJSON allergy file
beside bundles leaves a patient's allergies outside the unit that builds the record (docs/FHIR.md, "Streaming
and units"). The record is yielded before the pass reaches them, so they cannot join it; the pass keeps, per
patient, which ones name it, and the medical treatment route withholds its selection for that patient, naming
them, as it does for an allergy its filter cannot read (checker h456 F1: amoxicillin was selected, unsaid).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from heirloom_plugins.fhir.references import key


@attrs.define
class AllergiesElsewhere:
    """What a pass found of allergies outside their patient's unit."""

    #: ``Patient/p1`` (the key of the patient reference) -> ``file: AllergyIntolerance/a1 (entry[0])`` of each.
    by_key: dict[str, list[str]] = attrs.Factory(dict)
    #: After ``settle``: patient id -> those of its allergies, for each patient of the set some name.
    of_patients: dict[str, list[str]] = attrs.Factory(dict)

    def add(self, reference: str | None, where: str) -> None:
        """Note an unassigned allergy whose patient reference is ``reference`` (none, or a bundle's ``urn:``: it
        names no patient another unit could hold)."""
        found = key(reference) if reference else None
        if found is not None and found.startswith("Patient/"):
            self.by_key.setdefault(found, []).append(where)

    def settle(self, patients: Iterable[str]) -> None:
        """At the end of a pass: keep those naming one of ``patients`` (the ids of the set's Patient resources)."""
        self.of_patients = {pid: found for pid in patients if (found := self.by_key.get(f"Patient/{pid}"))}
        self.by_key = {}

    def to_json(self) -> dict[str, object]:
        """What ``data stats`` prints: how many patients and allergies, and the first 20 named."""
        named = [f"{pid}: {where}" for pid, found in self.of_patients.items() for where in found]
        return {"patients": len(self.of_patients), "allergies": len(named), "examples": named[:20]}
