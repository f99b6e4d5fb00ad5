"""The ``fhir`` source component: its configuration, splits, fingerprint and stats."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.code_systems import SYSTEMS
from heirloom_plugins.fhir.elsewhere import Outside, events_of
from heirloom_plugins.fhir.parse import discover, holds_fhir_files
from heirloom_plugins.fhir.records import PREFERRED, PatientRecord, with_events
from heirloom_plugins.fhir.scan import NO_FHIR_FILES, Scan, Tally, log
from heirloom_plugins.fhir.splits import SPLITS, Splitter, first_by_hash

ON_ERROR = ("fail", "skip")


def _fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1, got {value!r}")


def _validation(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    _fraction(instance, attribute, value)
    if instance.test_fraction + value > 1:
        raise ValueError(
            f"'{attribute.name}' plus 'test_fraction' must be at most 1, got {value!r} + {instance.test_fraction!r}"
        )


def _cohort(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 2 or not 0 <= value[0] < value[1] <= 1:
        raise ValueError(f"'{attribute.name}' must be [low, high] with 0 <= low < high <= 1, got {list(value)!r}")


#: The kinds whose code ``prefer_systems`` may choose the system of (a Condition, a drug, ...).
PREFERABLE = (*PREFERRED, "allergy")


def _systems(instance: Any, attribute: attrs.Attribute, value: dict[str, str]) -> None:
    """Each key a kind of ``PREFERABLE``, each value a system's short name or URL; every mistake said."""
    short = sorted(set(SYSTEMS.values()))
    mistakes = []
    for kind, system in value.items():
        if kind not in PREFERABLE:
            mistakes.append(f"{kind!r} is not an event kind with a code (one of {', '.join(PREFERABLE)})")
        if isinstance(system, str) and ":" in system and any(c.isspace() for c in system):  # no coding matches it
            mistakes.append(f"{kind}: {system!r} has a space; a system URL has none (FHIR's uri type)")
        elif not isinstance(system, str) or not (system in short or ":" in system):
            mistakes.append(
                f"{kind}: {system!r} is not a code system: one of {', '.join(short)}, or a system's URL as the "
                "codings write it"
            )
    if mistakes:
        raise ValueError(f"'{attribute.name}': {'; '.join(mistakes)}")


def _count(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"'{attribute.name}' must be at least 1, got {value!r}")


@attrs.define
class FhirSource(heirloom.Source):
    """FHIR R4 JSON (bundles, NDJSON bulk exports, folders of either) as one record per patient.

    There is no split in the data, so one is made from a hash of the patient id
    (``splits.py``): the same patient is on the same side in every data set, on every
    machine. ``cohort`` reads a share of the patients (another hospital, for development),
    ``train_patients`` caps the training patients (the first by hash).
    """

    #: A bundle or NDJSON file, or a folder searched recursively for ``*.json``/``*.ndjson``.
    path: str = heirloom.path_field()
    #: ``fail``: the first bad file or resource stops the pass; ``skip``: skip and count it.
    on_error: str = attrs.field(default="fail", validator=attrs.validators.in_(ON_ERROR))
    #: Also validate every resource with the fhir.resources models (about 8x slower; docs/FHIR.md).
    validate: bool = False
    #: Share of patients in ``test``; 1.0 makes every patient a test patient (evaluate a
    #: stored model on another hospital's data).
    test_fraction: float = attrs.field(default=0.2, validator=_fraction)
    #: Share of patients in ``validation``, taken from the training side (0: no such split).
    validation_fraction: float = attrs.field(default=0.0, validator=_validation)
    #: ``[low, high)``: read only the patients whose cohort hash falls in it.
    cohort: tuple[float, float] = attrs.field(default=(0.0, 1.0), converter=tuple, validator=_cohort)
    #: Train on at most this many patients (those with the lowest split hash); None: all.
    train_patients: int | None = attrs.field(default=None, validator=_count)
    #: Per event kind, the code system its code is taken from when a concept has several codings
    #: (``{condition = "icd10cm"}``); unnamed kinds keep their usual one (SNOMED CT for conditions).
    prefer_systems: dict[str, str] = attrs.field(factory=dict, validator=_systems)

    def records(self, split: str | None = None) -> Iterator[PatientRecord]:
        """Stream patient records; ``self.tally`` holds the figures of this pass.

        With ``train_patients``, the ``train`` split is chosen over the whole pass and
        yielded at its end (at most that many records are held).
        """
        if split is not None and split not in self.splits():
            raise ValueError(f"split must be one of {tuple(self.splits())} or None, not {split!r}")
        check = None
        if self.validate:
            from heirloom_plugins.fhir.validate import checker  # pulls in pydantic models: only when asked

            check = checker()
        splitter = Splitter(self.test_fraction, self.validation_fraction, self.cohort)
        scan = Scan(Path(self.path), self.on_error, splitter.side, check, {**PREFERRED, **self.prefer_systems})
        self.tally: Tally = scan.tally
        if split == "train" and self.train_patients is not None:
            yield from first_by_hash(scan.records(split), self.train_patients)
        else:
            yield from scan.records(split)
        if self.tally.unassigned.count:
            log.warning(
                "%s: %d clinical resource(s) belong to no patient of their own unit (their bundle file, or the NDJSON "
                "files together) and are on no record: keep a patient's resources in one bundle (data stats: "
                "unassigned_resources, unassigned_examples); the first: %s",
                self.path,
                self.tally.unassigned.count,
                "; ".join(self.tally.unassigned.examples[:3]),
            )
        if elsewhere := self.tally.elsewhere.of_patients:
            log.warning(
                "%s: %d patient(s) have allergies in another unit than their Patient's, on no record this pass "
                "yields (data stats: allergies_outside_unit; a medical records api joins them to the records it "
                "serves); the first: %s",
                self.path,
                len(elsewhere),
                "; ".join(f"{pid}: {found[0].where}" for pid, found in list(elsewhere.items())[:3]),
            )
        if self.tally.unlinked.count:
            log.warning(
                "%s: %d Condition(s) name an encounter their unit does not hold, or one skipped as unreadable, and "
                "are at no visit: no diagnosis label of any (data stats: unlinked_conditions, unlinked_examples); "
                "the first: %s",
                self.path,
                self.tally.unlinked.count,
                self.tally.unlinked.examples[0],
            )

    def allergies_elsewhere(self) -> dict[str, list[dict[str, Any]]]:
        """After a pass read to its end: per patient id, the allergies naming it from another unit, which its
        record lacks: ``{"where": "file: AllergyIntolerance/id (entry[0])", "read": bool}`` (``read``: ``joined``
        adds it; else its fields could not be read). What a reader holding every record asks after its pass
        (the medical records api): the records were yielded before the pass reached them."""
        return {
            pid: [{"where": a.where, "read": a.event is not None} for a in found]
            for pid, found in self._elsewhere().items()
        }

    def joined(self, record: PatientRecord) -> PatientRecord:
        """``record`` with the allergies ``allergies_elsewhere`` names for it on its timeline (those whose fields
        could be read), after a pass read to its end; ``record`` itself when it has none."""
        found = events_of(self._elsewhere().get(record.id, ()))
        return with_events(record, found) if found else record

    def _elsewhere(self) -> dict[str, list[Outside]]:
        tally = getattr(self, "tally", None)
        return tally.elsewhere.of_patients if tally is not None else {}

    def check_profile(self, profile: Any) -> list[tuple[str, str]]:
        """A folder holding no FHIR file, said by ``profile check`` as a pass says it (check passed an empty
        folder that train refused: h366 F2); a missing path is the path check's to report."""
        empty = Path(self.path).is_dir() and not holds_fhir_files(Path(self.path))
        return [("path", f"'path' {self.path}: {NO_FHIR_FILES}")] if empty else []

    def splits(self) -> list[str]:
        return [split for split in SPLITS if split != "validation" or self.validation_fraction > 0]

    def stats(self) -> dict[str, Any]:
        """One pass over everything: patients, resources by type, references, errors."""
        for _ in self.records():
            pass
        return self.tally.to_json()

    def fingerprint(self) -> str:
        """sha256 over the files' relative paths and bytes; recomputed only when a file changes. A file that
        cannot be read (a broken link, one gone, a FIFO) counts by its name and why: the pass refuses or
        skips it by name, and the version changes when it is readable again."""
        root = Path(self.path)
        paths = discover(root)
        stamp = [(str(p), *_status(p)) for p in paths]
        if getattr(self, "_fingerprint", (None, None))[0] != stamp:
            digest = hashlib.sha256()
            for path in paths:
                name = path.relative_to(root if root.is_dir() else root.parent).as_posix()
                try:
                    digest.update(f"{name}\0{path.stat().st_size}\0".encode())
                    heirloom.hash_regular(path, digest)
                except OSError as exc:
                    digest.update(f"{name}\0cannot read: {exc.strerror or exc}\0".encode())
            self._fingerprint = (stamp, f"sha256:{digest.hexdigest()}")
        return self._fingerprint[1]


def _status(path: Path) -> tuple[int, int] | tuple[str]:
    """``(size, mtime_ns)`` of ``path``, or why it cannot be read: what tells the fingerprint a file changed."""
    try:
        status = path.stat()
    except OSError as exc:
        return (exc.strerror or str(exc),)
    return status.st_size, status.st_mtime_ns
