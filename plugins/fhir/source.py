"""The ``fhir`` source component: its configuration, splits, fingerprint and stats."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.fhir.parse import discover
from heirloom_plugins.fhir.records import SPLITS, PatientRecord
from heirloom_plugins.fhir.scan import Scan, Tally

CHUNK = 1 << 20
ON_ERROR = ("fail", "skip")


def _on_error(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in ON_ERROR:
        raise ValueError(f"'{attribute.name}' must be one of {', '.join(ON_ERROR)}, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"'{attribute.name}' must be >= 0 and < 1, got {value!r}")


@attrs.define
class FhirSource(heirloom.Source):
    """FHIR R4 JSON (bundles, NDJSON bulk exports, folders of either) as one record per patient.

    There is no split in the data, so one is made: a patient is in ``test`` when the
    hash of its id falls under ``test_fraction`` (stable across runs and machines).
    """

    #: A bundle or NDJSON file, or a folder searched recursively for ``*.json``/``*.ndjson``.
    path: str = heirloom.path_field()
    #: ``fail``: the first bad file or resource stops the pass; ``skip``: skip and count it.
    on_error: str = attrs.field(default="fail", validator=_on_error)
    #: Also validate every resource with the fhir.resources models (about 8x slower; docs/FHIR.md).
    validate: bool = False
    test_fraction: float = attrs.field(default=0.2, validator=_fraction)

    def records(self, split: str | None = None) -> Iterator[PatientRecord]:
        """Stream patient records; ``self.tally`` holds the figures of this pass."""
        if split not in (None, *SPLITS):
            raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
        check = None
        if self.validate:
            from heirloom_plugins.fhir.validate import checker  # pulls in pydantic models: only when asked

            check = checker()
        scan = Scan(Path(self.path), self.on_error, self.test_fraction, check)
        self.tally: Tally = scan.tally
        yield from scan.records(split)

    def splits(self) -> list[str]:
        return list(SPLITS)

    def stats(self) -> dict[str, Any]:
        """One pass over everything: patients, resources by type, references, errors."""
        for _ in self.records():
            pass
        return self.tally.to_json()

    def fingerprint(self) -> str:
        """sha256 over the files' relative paths and bytes; recomputed only when a file changes."""
        root = Path(self.path)
        paths = discover(root)
        stamp = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        if getattr(self, "_fingerprint", (None, None))[0] != stamp:
            digest = hashlib.sha256()
            for path in paths:
                name = path.relative_to(root if root.is_dir() else root.parent).as_posix()
                digest.update(f"{name}\0{path.stat().st_size}\0".encode())
                with path.open("rb") as handle:
                    while chunk := handle.read(CHUNK):
                        digest.update(chunk)
            self._fingerprint = (stamp, f"sha256:{digest.hexdigest()}")
        return self._fingerprint[1]
