"""The two prediction tasks: which encounters are examples, their labels, what they may read.

The leakage rules live here and nowhere else (docs/MEDICAL.md, "Leakage"):

- diagnosis: one example per encounter with at least one Condition; labels are those
  Conditions' codes. Inputs: sex, age, every event strictly before the encounter, the
  encounter's class and type, and the Observations recorded at it. Never the encounter's
  reason (the fhir source does not even carry it), its own Conditions, Procedures,
  MedicationRequests or Claims.
- treatment: one example per encounter with at least one MedicationRequest; labels are
  the prescribed RxNorm codes. Inputs: sex, age, the Conditions recorded at the encounter,
  and the conditions, medications and allergies before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from heirloom_plugins.medical.patients import Visit, visits

#: One answer's whole shape, every key, as the routes send it (``model_needs.shape_problem``): what the
#: medical apis check each model answer against, and the shipped model's ``evaluate`` its own answers.
CODE_NEEDS = {
    "code": "a string",
    "display": "a string or null",
    "probability": "a number from 0 to 1",
    "selected": "true or false",
}
DIAGNOSIS_NEEDS = {"patient": "a string", "encounter": "a string", "date": "a string or null", "codes": [CODE_NEEDS]}
TREATMENT_NEEDS = {  # a drug's display is its RxNorm name, which the allergy filter reads: never null
    **DIAGNOSIS_NEEDS,
    "codes": [{**CODE_NEEDS, "display": "a string", "answers": [{"code": "a string", "display": "a string or null"}]}],
    "blocked": [{"code": "a string", "display": "a string or null", "allergies": ["a string"]}],
    "unread_allergies": ["a string"],
}


@attrs.frozen
class Task:
    """What one model type predicts and may read."""

    name: str
    #: The timeline kind whose codes at the encounter are the labels.
    label_kind: str
    #: Timeline kinds of the history (strictly before the encounter) it may read.
    history: tuple[str, ...]
    #: Timeline kinds recorded at the encounter itself it may read.
    current: tuple[str, ...]
    #: Whether it reads the encounter's class and type.
    encounter: bool
    #: The shape of one answer its route sends (``DIAGNOSIS_NEEDS``, ``TREATMENT_NEEDS``).
    answer: dict[str, Any] = attrs.field(eq=False)

    def labels(self, visit: Visit) -> list[str]:
        """The label codes of a visit (sorted, each once)."""
        return sorted({e.code for e in visit.at if e.kind == self.label_kind and e.code})

    def examples(
        self, records: Iterable[Any], uncoded: Counter[str] | None = None, blank: bool = False
    ) -> Iterable[tuple[Visit, list[str]]]:
        """``(visit, labels)`` for every visit of every record that has labels, and with ``blank``
        ``(visit, [])`` for each with no label event at all (nothing diagnosed or prescribed there:
        what the decision's floor is chosen and scored on, ``decision.py``), in one pass.

        A label event without a code (a Condition coded only in text) can be no label: it is
        counted in ``uncoded`` (``events``, and ``visits`` that had only such events, so are no
        example, and no visit without labels either), for the caller to warn of what it could not
        learn or score.
        """
        for record in records:
            for one in visits(record):
                labels = self.labels(one)
                missing = sum(1 for e in one.at if e.kind == self.label_kind and not e.code)
                if missing and uncoded is not None:
                    uncoded["events"] += missing
                    uncoded["visits"] += not labels
                if labels or (blank and not missing):
                    yield one, labels


DIAGNOSIS = Task(
    name="diagnosis",
    label_kind="condition",
    history=("encounter", "condition", "observation", "medication", "procedure", "immunization", "allergy"),
    current=("observation",),
    encounter=True,
    answer=DIAGNOSIS_NEEDS,
)
TREATMENT = Task(
    name="treatment",
    label_kind="medication",
    history=("condition", "medication", "allergy"),
    current=("condition",),
    encounter=True,
    answer=TREATMENT_NEEDS,
)
