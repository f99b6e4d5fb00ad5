"""The visit of a Condition that an Encounter lists as its diagnosis (``Encounter.diagnosis[].condition``).

FHIR R4 links an encounter's diagnoses from either side: ``Condition.encounter``, or the Encounter's
``diagnosis`` list, which many exports fill while leaving ``Condition.encounter`` empty. Read from one
side only, such a visit had no labels and its conditions no visit, and nothing said so. A contained
Condition (``#dx1``) is its container's already (``scan.contained_events``); these are the others.
"""

from __future__ import annotations

from typing import Any

import attrs

from heirloom_plugins.fhir.records import instant
from heirloom_plugins.fhir.references import Catalog, Target, reference_of


def _start(encounter: dict[str, Any]) -> str:
    """The sortable start of an Encounter ("" when it has none or a malformed one: the reading of the
    Encounter itself says so)."""
    period = encounter.get("period")
    try:
        return instant(period.get("start") if isinstance(period, dict) else None) or ""
    except (ValueError, TypeError):
        return ""


@attrs.define
class Diagnoses:
    """The Encounters' diagnosis lists of one unit (a bundle, or an NDJSON set), then ``visits``: each
    listed Condition's visit. A Condition several Encounters list (a chronic problem on each visit's
    billing list) is the earliest one's: where it was diagnosed."""

    listed: list[tuple[str, str, Target]] = attrs.Factory(list)
    #: Condition -> the Encounter that lists it (after ``settle``).
    visits: dict[Target, Target] = attrs.Factory(dict)

    def add(self, target: Target, resource: dict[str, Any]) -> None:
        if target[0] != "Encounter" or not isinstance(resource.get("diagnosis"), list):
            return
        start = _start(resource)
        for diagnosis in resource["diagnosis"]:
            ref = reference_of(diagnosis.get("condition") if isinstance(diagnosis, dict) else None, "Condition")
            if ref and not ref.startswith("#"):
                self.listed.append((start, ref, target))

    def settle(self, catalog: Catalog) -> None:
        """Resolve the listed references once every resource of the unit is in ``catalog``."""
        for _, ref, visit in sorted(self.listed, key=lambda listed: listed[0]):
            condition = catalog.resolve(ref)
            if condition is not None and condition[0] == "Condition":
                self.visits.setdefault(condition, visit)
        self.listed.clear()
