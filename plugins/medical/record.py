"""The ``medical-records`` api: record analysis, no training.

At start it reads every patient of its source once and builds the index it answers
from: each patient's summary (``summary.py``) and a BM25 search index (``search.py``).
``<name>.summary`` is then a dictionary lookup, answered on the daemon's I/O loop;
``<name>.search`` ranks patients on a handler thread. Other apis of the profile (the
diagnosis and treatment apis) look patients up here by id instead of keeping their
own copy (``records = "<name>"`` in their table).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import attrs

import heirloom
from heirloom_plugins.medical.caution import first_of
from heirloom_plugins.medical.checks import search_checks, summary_checks
from heirloom_plugins.medical.metrics import counts_metrics, multilabel_text
from heirloom_plugins.medical.safety import MAX_ALLERGIES
from heirloom_plugins.medical.search import SearchIndex
from heirloom_plugins.medical.summary import summarize


@attrs.define
class SummaryInput:
    """The id of a patient of the source."""

    patient: str


def _inputs(max_results: int, max_text_chars: int) -> tuple[type, type]:
    """``search``'s and ``patients``' request classes, with the api's limits in their validators
    and in the schemas ``_routes`` states (a client learnt ``limit``'s bound from a refusal)."""
    count = {"schema": {"minimum": 1, "maximum": max_results}}

    def at_most_results(instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if not 1 <= value <= max_results:
            raise ValueError(f"'{attribute.name}' must be between 1 and {max_results}, got {value}")

    @attrs.define
    class SearchInput:
        """Words, a condition or drug name, or a code (``snomed:44054006``); at most ``k`` patients."""

        text: str = attrs.field(validator=heirloom.text_limit(max_text_chars, blank=False))
        k: int = attrs.field(default=10, validator=at_most_results, metadata=count)

    @attrs.define
    class PatientsInput:
        """A page of the indexed patients."""

        offset: int = attrs.field(default=0, validator=heirloom.at_least(0))
        limit: int = attrs.field(default=max_results, validator=at_most_results, metadata=count)

    return SearchInput, PatientsInput


@attrs.define
class RecordsApi(heirloom.Api):
    """Patient summaries and patient search over the records of a source."""

    #: The fhir source whose patients it indexes (every split).
    data: str = heirloom.ref("source")
    #: The most patients one search or page returns.
    max_results: int = attrs.field(default=100, validator=heirloom.above(0))
    #: Longest search text accepted, in characters.
    max_text_chars: int = attrs.field(default=1000, validator=heirloom.above(0))

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.inputs = _inputs(self.max_results, self.max_text_chars)
        began = time.perf_counter()
        records: dict[str, Any] = {}
        summaries: dict[str, dict[str, Any]] = {}
        index = SearchIndex()
        source = ctx.get(self.data, "source")
        for record in source.records():
            records[record.id] = record
        elsewhere = self._join_elsewhere(source, records)
        for record in records.values():
            summaries[record.id] = summarize(record)
            if found := elsewhere.get(record.id):  # the first MAX_ALLERGIES, as unread_allergies (4,348 were sent)
                wheres = [allergy["where"] for allergy in found]
                summaries[record.id]["allergies_outside_unit"] = first_of(wheres, MAX_ALLERGIES, "more")
            index.add(record.id, record.timeline)
        self._records, self._summaries, self._index, self._elsewhere = records, summaries, index, elsewhere
        self.index_seconds = time.perf_counter() - began

    def ready(self) -> bool:
        return hasattr(self, "_summaries")

    # -- what other components use -----------------------------------------------------------
    def patient(self, patient_id: str, field: str = "body.patient") -> Any:
        """The record of ``patient_id``; NOT_FOUND naming ``field`` when it is not indexed."""
        record = self._records.get(patient_id)
        if record is None:
            raise heirloom.RequestError(
                "NOT_FOUND",
                f"{field}: no patient {patient_id!r} in {self.ctx.name} ({len(self._records)} patients)",
                field,
            )
        return record

    @staticmethod
    def _join_elsewhere(source: Any, records: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The fhir source's allergies of each patient found outside the patient's unit (docs/FHIR.md), joined to
        ``records`` in place (those it could read); a source of another type has none."""
        asked, joined = getattr(source, "allergies_elsewhere", None), getattr(source, "joined", None)
        if not (callable(asked) and callable(joined)):
            return {}
        elsewhere = {pid: found for pid, found in asked().items() if pid in records}
        for pid in elsewhere:
            records[pid] = joined(records[pid])
        return elsewhere

    def unread_elsewhere(self, record: Any) -> list[str]:
        """Where the allergies of this indexed patient found outside its unit are, of those whose fields could not
        be read (so not joined to ``record``); none for a record sent inline, which is whole as sent."""
        if self._records.get(record.id) is not record:
            return []
        return [allergy["where"] for allergy in self._elsewhere.get(record.id, ()) if not allergy["read"]]

    # -- routes -------------------------------------------------------------------------------
    def routes(self) -> list[heirloom.Route]:
        return [
            heirloom.Route(
                "summary",
                handler=self.summary,
                input=SummaryInput,
                inline=True,
                description="Problem list, medications, allergies, latest vitals and labs with abnormal flags, "
                "and the encounter history of {'patient': id}.",
            ),
            heirloom.Route(
                "search",
                handler=self.search,
                input=self.inputs[0],
                description="Patients ranked by a condition, a medication, a code or free text: "
                "{'text': str, 'k': int}.",
            ),
            heirloom.Route(
                "patients",
                handler=self.patients,
                input=self.inputs[1],
                inline=True,
                description="A page of the indexed patients (id, gender, birth date, split): {'offset', 'limit'}.",
            ),
        ]

    def summary(self, body: SummaryInput) -> dict[str, Any]:
        self.patient(body.patient)
        return self._summaries[body.patient]

    def search(self, body: Any) -> dict[str, Any]:
        hits = self._index.search(body.text, body.k)
        return {"patients": [attrs.asdict(hit) for hit in hits]}

    def patients(self, body: Any) -> dict[str, Any]:
        page = list(self._records.values())[body.offset : body.offset + body.limit]
        return {
            "total": len(self._records),
            "patients": [{"id": r.id, "gender": r.gender, "birth_date": r.birth_date, "split": r.split} for r in page],
        }

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, data: Iterable[Any]) -> heirloom.Report:
        """Summaries and search of the given patients checked against their resources (checks.py)."""
        records = [self._records.get(record.id, record) for record in data]
        started = time.perf_counter()
        for record in records:
            self.summary(SummaryInput(record.id))
        per_summary_ms = (time.perf_counter() - started) * 1000 / max(len(records), 1)
        counts = summary_checks(records, lambda pid: self._summaries[pid])
        counts.update(
            search_checks(records, self._records, lambda text, k: [h.patient for h in self._index.search(text, k)])
        )
        metrics = counts_metrics(counts)
        metrics.update(
            {
                "patients": len(records),
                "indexed_patients": len(self._records),
                "index_seconds": round(self.index_seconds, 3),
                "summary_ms": round(per_summary_ms, 4),
            }
        )
        title = (
            f"record analysis: {len(records)} patients checked against their FHIR resources "
            f"(index of {len(self._records)} patients built in {self.index_seconds:.1f}s)"
        )
        return heirloom.Report(metrics, f"{title}\n{multilabel_text(metrics)}")
