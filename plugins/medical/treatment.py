"""The ``medical-treatment`` model type: the diagnosis model's machine (``model.py``) on the
treatment task, plus what only drugs need: the allergy filter (``safety.py``) and, for each
recommended drug, the conditions of the visit that speak for it most in the linear model's weights.
torch is imported inside methods only."""

from __future__ import annotations

import re
from typing import Any

import attrs

from heirloom_plugins.medical.caution import listed, quoted, quoted_all, unselected
from heirloom_plugins.medical.features import Description
from heirloom_plugins.medical.formulary import formulary_field, read_formulary
from heirloom_plugins.medical.model import Fitted, MultiLabelModel
from heirloom_plugins.medical.patients import Visit
from heirloom_plugins.medical.safety import (
    Drug,
    Formulary,
    allergy_substances,
    conflicts,
    read_drug,
    recorded_allergies,
    unread,
    withheld,
)
from heirloom_plugins.medical.tasks import TREATMENT

#: Columns that speak of a condition (``now:condition:snomed:1&age:...`` -> ``snomed:1``).
_CONDITION_COLUMN = re.compile(r"(?:^|:)condition:([^&#]+)")
#: Conditions named as the reasons for one recommended drug.
REASONS = 3


@attrs.define(kw_only=True)
class TreatmentModel(MultiLabelModel):
    """Recommends the drugs to prescribe at an encounter (RxNorm codes), from sex, age, the
    encounter's class and type and conditions, and the conditions, medications and
    allergies before it. Never a drug the patient has a recorded allergy to (safety.py)."""

    task = TREATMENT

    #: A hospital's own drugs for the allergy filter (``formulary.py``): a formulary file. The
    #: treatment api serving this model reads it too.
    formulary: str | None = formulary_field()

    def tables(self) -> Formulary:
        """The allergy filter's tables: the shipped ones and ``formulary``'s, read once per instance."""
        tables = getattr(self, "_tables", None)
        if tables is None:
            self._tables = tables = read_formulary(self.formulary)
        return tables

    def _drugs(self, fitted: Fitted) -> dict[str, Drug]:
        """Each drug label as the allergy filter reads its name, computed once per fitted state."""
        cached = getattr(self, "_read_drugs", None)
        if cached is None or cached[0] is not fitted:
            drugs = {code: read_drug(fitted.name(code), self.tables()) for code in fitted.labels}
            self._read_drugs = cached = (fitted, drugs)
        return cached[1]

    def _blocked(self, visits: list[Visit], fitted: Fitted) -> list[dict[str, list[str]]]:
        drugs, tables = self._drugs(fitted), self.tables()  # the api's filter (safety.withheld): unreadable names too
        return [withheld(recorded_allergies(one.record, tables), drugs, tables) for one in visits]

    def _explain(
        self, one: Visit, found: Description, codes: list[dict[str, Any]], blocked: dict[str, list[str]], fitted: Fitted
    ) -> dict[str, Any]:
        """Each drug's reasons (the visit's conditions whose columns raise its score most), the drugs
        withheld for an allergy, and the allergies the filter cannot read (then no drug is selected)."""
        import torch

        columns = self._condition_columns(fitted)
        index = fitted.vocabulary.index
        present = [(index.get(name), value) for name, value in fitted.vocabulary.named(found).items()]
        present = [(column, value) for column, value in present if column in columns]
        names = {e.code: quoted(e.display) for e in one.record.timeline if e.kind == "condition" and e.code}
        labels = [fitted.position[item["code"]] for item in codes]
        if present and labels:
            rows = torch.tensor([column for column, _ in present])
            values = torch.tensor([value for _, value in present])
            contribution = (fitted.weights.weight[rows][:, labels] * values[:, None]).t().tolist()
        else:
            contribution = [[] for _ in labels]
        for item, weights in zip(codes, contribution, strict=True):
            total: dict[str, float] = {}
            for (column, _), weight in zip(present, weights, strict=True):
                total[columns[column]] = total.get(columns[column], 0.0) + weight
            ranked = sorted(((w, c) for c, w in total.items() if w > 0), reverse=True)[:REASONS]
            item["answers"] = [{"code": code, "display": names.get(code)} for _, code in ranked]
        not_read = listed(  # whole, once: the list a person checks the drugs against (caution.py)
            unread(
                recorded_allergies(one.record, self.tables()),
                [parts for parts, _ in self._drugs(fitted).values()],
                self.tables(),
            )
        )
        return {
            "codes": unselected(codes, not_read),  # the api's rule (caution.py): evaluate scores what is served
            "blocked": [
                {"code": code, "display": fitted.name(code), "allergies": quoted_all(allergies)}
                for code, allergies in sorted(blocked.items())
            ],
            "unread_allergies": not_read,
        }

    def _condition_columns(self, fitted: Fitted) -> dict[int, str]:
        """Column -> the condition code it speaks of, for the columns that speak of one."""
        cached = getattr(self, "_columns", None)
        if cached is None or cached[0] is not fitted:
            found = {}
            for column, name in enumerate(fitted.vocabulary.columns):
                match = _CONDITION_COLUMN.search(name)
                if match:
                    found[column] = match.group(1)
            self._columns = cached = (fitted, found)
        return cached[1]

    def _unnamed_note(self) -> str:
        return (
            "; the allergy filter cannot read such a name, so withholds the drug from every patient with a recorded "
            "allergy: give its coding a display, or map the code to its ingredients in a formulary file, "
            '[brands] "rxnorm:CODE" = ["ingredient"] (docs/MEDICAL.md, "A hospital\'s own drugs")'
        )

    def _extra_metrics(self, examples: list[tuple[Visit, list[str]]], answers: list[dict[str, Any]]) -> dict[str, Any]:
        """Allergy safety: recommendations that conflict with a recorded allergy the filter reads (must be
        0), and the encounters with allergies it cannot read, whose ranked drugs nothing checked: a
        hospital coding allergies by RxNorm ingredient (``rxnorm:70618``) or in other languages had 36
        ranked drugs of a class its patients were allergic to while the violations read 0."""
        fitted, tables = self._require(), self.tables()
        violations = 0
        for (one, _), answer in zip(examples, answers, strict=True):
            ruled_out = frozenset().union(
                *(allergy_substances(code, display, tables) for code, display in recorded_allergies(one.record, tables))
            )
            for item in answer["codes"]:
                if conflicts(self._drugs(fitted)[item["code"]][0], ruled_out):
                    violations += 1
        unread_at = [answer for answer in answers if answer["unread_allergies"]]
        return {
            "allergy_violations": violations,
            "allergy_blocked": sum(len(answer["blocked"]) for answer in answers),
            "allergy_checked": len(answers),
            "allergy_unread_encounters": len(unread_at),
            "allergy_unread_ranked": sum(len(answer["codes"]) for answer in unread_at),
        }

    def _extra_text(self, metrics: dict[str, Any]) -> str:
        return (
            f"allergy safety: {metrics['allergy_violations']} recommendation(s) conflict with a recorded allergy "
            f"the filter reads; {metrics['allergy_blocked']} drug(s) withheld over {metrics['allergy_checked']} "
            "encounters; "
            f"{metrics['allergy_unread_encounters']} encounter(s) with allergies it cannot read (listed in their "
            f"answers' unread_allergies), whose {metrics['allergy_unread_ranked']} ranked drug(s) were not checked "
            "against them (none selected)\n"
        )
