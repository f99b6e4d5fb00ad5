"""The ``medical-diagnosis`` and ``medical-treatment`` apis: ``<name>.predict`` and
``<name>.recommend``, batched.

A request names a patient the daemon indexed (``{"patient": id, "encounter": id}``,
looked up in the ``medical-records`` api its ``records`` field names) or carries the
record inline (``{"record": {...}, "encounter": id}``, the shape ``heirloom data show
--json`` prints) for a patient the daemon has not seen. Without ``encounter``, the
record's last encounter is used. Unknown patients and encounters are NOT_FOUND, and a
malformed record INVALID_ARGUMENT, each naming the field, and only that request fails.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.medical.model import Query
from heirloom_plugins.medical.patients import RecordInput, find_encounter


@attrs.define
class PredictInput:
    """A patient of the daemon (``patient``) or a record given inline (``record``), and the
    encounter to predict for (default: the record's last)."""

    patient: str | None = None
    record: RecordInput | None = None
    encounter: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.patient is None) == (self.record is None):
            given = "both were given" if self.patient is not None else "neither was given"
            raise ValueError(f"'patient' (an id) or 'record' (a timeline given inline): give one of them ({given})")


@attrs.define
class RankedCode:
    """One code of a ranked answer: ``selected`` when its probability passes the model's
    decision threshold (the multi-label decision); the list is ordered by probability."""

    code: str
    display: str | None
    probability: float
    selected: bool


@attrs.define
class TreatedCode(RankedCode):
    """A recommended drug and the encounter's conditions that raise its score most."""

    answers: list[dict[str, str | None]]


@attrs.define
class WithheldCode:
    """A drug the answer would have shown, withheld because of a recorded allergy."""

    code: str
    display: str | None
    allergies: list[str]


@attrs.define
class DiagnosisOutput:
    """The reply to one encounter: its ranked condition codes (the top ones and every
    selected one), with the patient, encounter and its date."""

    patient: str
    encounter: str
    date: str | None
    codes: list[RankedCode]
    version: str | None


@attrs.define
class TreatmentOutput:
    """The reply to one encounter: ranked drugs with the conditions each answers, and the
    drugs withheld for an allergy."""

    patient: str
    encounter: str
    date: str | None
    codes: list[TreatedCode]
    blocked: list[WithheldCode]
    #: Recorded allergies the filter cannot map to a substance (safety.py): check by hand.
    unread_allergies: list[str]
    version: str | None


@attrs.define
class CodesApi(heirloom.Api):
    """Serves a medical model's ranked codes for one encounter per request."""

    route: ClassVar[str]
    what: ClassVar[str]
    #: The reply's shape (``_routes``, OpenAPI and the gateway's OIP model metadata).
    output: ClassVar[type]

    #: The model that predicts.
    model: str = heirloom.ref("model")
    #: The ``medical-records`` api whose patients requests may name (None: inline records only).
    records: str | None = heirloom.ref("api", default=None)
    #: Batching: at most this many encounters per model call, waiting at most ``max_wait_ms``.
    max_batch: int = attrs.field(default=64, validator=heirloom.above(0))
    max_wait_ms: float = attrs.field(default=2.0, validator=heirloom.at_least(0))
    #: Largest request body in bytes (an inline record is structured on the batcher thread,
    #: about 7 us per timeline event: the bound also bounds how long it delays its route).
    max_payload: int = attrs.field(default=1 << 20, validator=heirloom.above(0))

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.handle = ctx.model(self.model)
        self.lookup = ctx.get(self.records, "api") if self.records else None

    def routes(self) -> list[heirloom.Route]:
        return [
            heirloom.Route(
                self.route,
                handler=self.batch,
                input=PredictInput,
                batched=True,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                max_payload=self.max_payload,
                description=f"{self.what} for {{'patient': id, 'encounter': id}} or {{'record': {{...}}, "
                "'encounter': id}} (default encounter: the last).",
                model=self.model,
                output=self.output,
            )
        ]

    def batch(self, inputs: list[PredictInput]) -> list[Any]:
        model, version = heirloom.served_model(self.handle)
        results: list[Any] = []
        queries: list[tuple[int, Query]] = []
        for position, body in enumerate(inputs):
            try:
                queries.append((position, self._query(body)))
                results.append(None)
            except heirloom.RequestError as error:
                results.append(error)
        answers = model.predict([query for _, query in queries]) if queries else []
        for (position, _), answer in zip(queries, answers, strict=True):
            results[position] = heirloom.Versioned({**answer, "version": version}, version)
        return results

    def _query(self, body: PredictInput) -> Query:
        if body.record is not None:
            record, where = body.record, "body.record"
        elif self.lookup is None:
            raise heirloom.RequestError(
                "INVALID_ARGUMENT",
                f'body.patient: {self.ctx.name} has no patient index (set records = "<records api>"); '
                "send the record inline as 'record'",
                "body.patient",
            )
        else:
            record, where = self.lookup.patient(body.patient), "body.patient"
        try:
            find_encounter(record, body.encounter)
        except LookupError as error:
            field = "body.encounter" if body.encounter is not None else where
            code = "NOT_FOUND" if body.encounter is not None else "INVALID_ARGUMENT"
            raise heirloom.RequestError(code, f"{field}: {error}", field) from None
        return Query(record, body.encounter)


@attrs.define
class DiagnosisApi(CodesApi):
    """``<name>.predict``: the conditions likely diagnosed at an encounter, ranked, with probabilities."""

    route = "predict"
    what = "Ranked condition codes (SNOMED CT) with display names and probabilities"
    output = DiagnosisOutput


@attrs.define
class TreatmentApi(CodesApi):
    """``<name>.recommend``: drugs to prescribe at an encounter, ranked, with the conditions
    each answers; never one the patient has a recorded allergy to."""

    route = "recommend"
    output = TreatmentOutput
    what = "Ranked drugs (RxNorm) with the conditions each answers, allergy conflicts withheld,"
