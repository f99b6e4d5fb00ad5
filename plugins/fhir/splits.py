"""Patient splits by a hash of the patient id: the same patient lands on the same side in
every data set, whatever the files, their order or the machine.

sha256(patient id) gives two independent points in [0, 1): the *split point* (first 8
bytes) places a patient in ``test`` (under ``test_fraction``), ``validation`` (the next
``validation_fraction``) or ``train``; the *cohort point* (next 8 bytes) selects the
patients a source reads at all (``cohort = [low, high)``), so two sources with disjoint
cohorts of one folder never share a patient (two hospitals from one data set) while a
patient's split stays the same in both.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

SPLITS = ("train", "validation", "test")


def points(patient_id: str) -> tuple[float, float]:
    """``(split point, cohort point)`` of a patient: two independent numbers in [0, 1)."""
    digest = hashlib.sha256(patient_id.encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64, int.from_bytes(digest[8:16]) / 2**64


@attrs.frozen
class Splitter:
    """Which split a patient is in, or None when it is outside the cohort."""

    test_fraction: float = 0.2
    validation_fraction: float = 0.0
    cohort: tuple[float, float] = (0.0, 1.0)

    def side(self, patient_id: str) -> str | None:
        split, cohort = points(patient_id)
        if not self.cohort[0] <= cohort < self.cohort[1]:
            return None
        if split < self.test_fraction:
            return "test"
        if split < self.test_fraction + self.validation_fraction:
            return "validation"
        return "train"


def first_by_hash(records: Iterable[Any], count: int) -> Iterator[Any]:
    """The ``count`` records whose patients have the lowest split points, in that order.

    One pass holding at most ``count`` records: the chosen patients of a smaller count
    are always among those of a larger one (10 of 20 of 40 training patients).
    """
    kept: list[tuple[float, int, Any]] = []
    for order, record in enumerate(records):
        entry = (-points(record.id)[0], order, record)
        if len(kept) < count:
            heapq.heappush(kept, entry)
        elif entry > kept[0]:
            heapq.heapreplace(kept, entry)
    for _, _, record in sorted(kept, reverse=True):
        yield record
