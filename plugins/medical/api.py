"""The ``medical-diagnosis`` and ``medical-treatment`` apis: ``<name>.predict`` and
``<name>.recommend``, batched.

A request names a patient the daemon indexed (``{"patient": id, "encounter": id}``,
looked up in the ``medical-records`` api its ``records`` field names) or carries the
record inline (``{"record": {...}, "encounter": id}``, the shape ``heirloom data show
--json`` prints) for a patient the daemon has not seen. Without ``encounter``, the
record's last encounter is used. Unknown patients and encounters are NOT_FOUND, and a
malformed record INVALID_ARGUMENT, each naming the field, and only that request fails.

Any model type may answer (docs/MEDICAL.md, "Another model behind diagnosis and
treatment"): ``check`` asks a started one about a probe record and refuses one whose
answers the routes cannot send, and the treatment api withholds what the record's
allergies rule out from whatever the model answers (``safety.py``, the shipped model's filter).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.medical.caution import FIELD, first_of, listed, quoted_all, unselected, why_unselected
from heirloom_plugins.medical.formulary import formulary_field, read_formulary
from heirloom_plugins.medical.model import Query
from heirloom_plugins.medical.patients import EventInput, RecordInput, find_encounter
from heirloom_plugins.medical.safety import (
    MAX_ALLERGIES,
    Allergy,
    Formulary,
    ingredients,
    read_drug,
    recorded_allergies,
    unread,
    withheld,
)
from heirloom_plugins.medical.tasks import DIAGNOSIS, TREATMENT
from heirloom_plugins.medical.treatment import TreatmentModel
from heirloom_plugins.model_needs import (
    failed_answer,
    predictions_of,
    probed,
    refusal,
    shape_problem,
    unsendable,
)

#: How ``unread_allergies`` names an allergy found outside the patient's unit whose fields the source could not read.
OUTSIDE = "outside the patient's unit, its fields not read (keep a patient's resources in one bundle)"
MEDICAL_DOC = "docs/MEDICAL.md, 'Another model behind diagnosis and treatment'"
#: What a route takes for a FHIR export (a FHIR Bundle sent is refused saying so: ``PredictInput.misread_body``).
CONVERTED = "the record `heirloom data show PROFILE SOURCE --json` prints for the export (docs/MEDICAL.md, 'Routes')"


@attrs.frozen
class Asked:
    """A request as its model is asked it (``query``), and the encounter its answer must be for
    (``visit``: the one named, else the record's last, found once, where the request is read)."""

    query: Query
    visit: str


def probes() -> list[Asked]:
    """What ``check`` asks a model about: a visit for a sore throat of a patient allergic to penicillin,
    and the same visit of a patient with no allergy. A model answers them differently: the shipped one
    withholds a drug it cannot name from an allergic patient alone, so probed with the first only, a
    treatment model with a nameless drug started, then failed every patient without an allergy."""
    at = {"encounter": "probe-visit", "date": "2020-01-06T09:00:00Z"}
    visit = [
        EventInput("encounter", "probe-visit", at["date"], code="snomed:185345009", value="AMB"),
        EventInput("condition", "probe-sore-throat", code="snomed:43878008", display="Streptococcal sore throat", **at),
    ]
    allergy = EventInput(
        "allergy", "probe-allergy", "2019-05-01", code="snomed:91936005", display="Allergy to penicillin"
    )
    records = [
        RecordInput([*visit, allergy], id="probe", gender="female", birth_date="1980-02-01"),
        RecordInput(visit, id="probe-no-allergy", gender="female", birth_date="1980-02-01"),
    ]
    return [Asked(Query(record, "probe-visit"), "probe-visit") for record in records]


def ranking_problem(codes: list[dict[str, Any]]) -> str | None:
    """Why ``codes`` are no ranking, or None: a ranking holds each code once, the most probable
    first (ties in any order). A model's codes in another order, or one code twice, were sent
    as ranked; one pass, as every answer is checked as it is sent."""
    where: dict[str, int] = {}
    for index, item in enumerate(codes):
        if (first := where.setdefault(item["code"], index)) != index:
            return f"its prediction's codes[{index}] repeats codes[{first}]'s code {item['code']!r:.80}"
        if index and item["probability"] > (above := codes[index - 1]["probability"]):
            return (
                f"its prediction's codes are not ranked: codes[{index}]'s probability {item['probability']!r} is "
                f"above codes[{index - 1}]'s {above!r} (the most probable first)"
            )
    return None


@attrs.define
class PredictInput:
    """A patient of the daemon (``patient``) or a record given inline (``record``), and the
    encounter to predict for (default: the record's last)."""

    #: Exactly one of the two, as ``__attrs_post_init__`` enforces (the schema let ``{}`` and both pass: h404 F1).
    __schema__: ClassVar[dict[str, Any]] = heirloom.one_of(patient="string", record="object")

    patient: str | None = None
    record: RecordInput | None = None
    encounter: str | None = None

    @staticmethod
    def misread_body(body: dict[str, Any]) -> tuple[str, str] | None:
        """A FHIR resource (a Bundle) sent as the body or as its ``record``, said so with how to convert it,
        or None: it was refused as its first unknown key (``body.entry: unknown key``), which told a FHIR
        client what it had sent wrong, not what to send."""
        for field, sent in (("body", body), ("body.record", body.get("record"))):
            if (kind := _fhir_kind(sent)) is not None:
                wanted = "a record: send"
                if field == "body":
                    wanted = 'a request: send {"record": ..., "encounter": id}, its record'
                return field, f"{kind}, not {wanted} {CONVERTED}"
        return None

    def __attrs_post_init__(self) -> None:
        if (self.patient is None) == (self.record is None):
            given = "both were given" if self.patient is not None else "neither was given"
            raise ValueError(f"'patient' (an id) or 'record' (a timeline given inline): give one of them ({given})")


def _fhir_kind(sent: Any) -> str | None:
    """What FHIR content ``sent`` is ("a FHIR Bundle"; a Bundle's ``entry`` list without its resourceType, one
    wrapped as ``{"bundle": ...}``, a list of resources), or None: each was refused as an unknown key or a type."""
    if isinstance(sent, dict):
        if "resourceType" in sent:
            return f"a FHIR {sent['resourceType'][:40] if isinstance(sent['resourceType'], str) else 'resource'}"
        if isinstance(sent.get("entry"), list):
            return "a FHIR Bundle's entries"
        wrapped = next((sent[key] for key in ("bundle", "Bundle", "resource") if isinstance(sent.get(key), dict)), None)
        return f"a FHIR {wrapped['resourceType']!s:.40}" if wrapped is not None and "resourceType" in wrapped else None
    if isinstance(sent, list) and sent and all(isinstance(item, dict) and "resourceType" in item for item in sent[:20]):
        return "a list of FHIR resources"
    return None


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
    #: Why no drug is selected (an allergy the filter cannot read: caution.py), else None.
    selection_withheld: str | None


@attrs.define
class CodesApi(heirloom.Api):
    """Serves a medical model's ranked codes for one encounter per request."""

    route: ClassVar[str]
    what: ClassVar[str]
    #: The api type's name, and what its routes read of each prediction.
    api_type: ClassVar[str]
    needs: ClassVar[dict[str, Any]]
    #: The reply's shape (``_routes``, OpenAPI and the gateway's OIP model metadata).
    output: ClassVar[type]

    #: The model that predicts.
    model: str = heirloom.ref("model")
    #: The ``medical-records`` api whose patients requests may name (None: inline records only).
    records: str | None = heirloom.ref("api", default=None)
    #: Batching: at most this many encounters per model call, waiting at most ``max_wait_ms``.
    max_batch: int = attrs.field(default=64, validator=heirloom.route_limit("max_batch"))
    max_wait_ms: float = attrs.field(default=2.0, validator=heirloom.route_limit("max_wait_ms"))
    #: Largest request body in bytes (an inline record is structured on the batcher thread,
    #: about 7 us per timeline event: the bound also bounds how long it delays its route).
    max_payload: int = attrs.field(default=1 << 20, validator=heirloom.route_limit("max_payload"))

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """A model of another type must answer what the route sends: asked about a probe record
        where it was started (``serve``'s start, a hot swap), once per instance, as the other shipped
        apis ask theirs (``model_needs.probed``), its answer checked as every answer is, and sendable."""
        if (model := models.get(self.model)) is None:
            return []
        asked = probes()
        predictions, problem = probed(model, [one.query for one in asked], "[two probe queries]")
        answers = zip(predictions or (), asked, strict=False)
        problem = problem or next(filter(None, (self._probe_problem(one, whom) for one, whom in answers)), None)
        return [refusal("model", model, self.api_type, problem, MEDICAL_DOC)] if problem else []

    def _probe_problem(self, answer: Any, asked: Asked) -> str | None:
        """The probe answer's problem: as every answer's, and one msgpack cannot send (numpy's floats)."""
        return self._problem(answer, asked) or unsendable(answer)

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
                "'encounter': id} (default encounter: the last).",
                model=self.model,
                output=self.output,
            )
        ]

    def batch(self, inputs: list[PredictInput]) -> list[Any]:
        model, version = heirloom.served_model(self.handle)
        results: list[Any] = []
        queries: list[tuple[int, Asked]] = []
        for position, body in enumerate(inputs):
            try:
                queries.append((position, self._query(body)))
                results.append(None)
            except heirloom.RequestError as error:
                results.append(error)
        for one_call in _told_apart(queries):
            answers = predictions_of(model, [asked.query for _, asked in one_call])
            for (position, asked), answer in zip(one_call, answers, strict=True):
                if (problem := self._problem(answer, asked)) is not None:
                    results[position] = failed_answer(model, problem, MEDICAL_DOC)
                    continue
                reply = {**self._answer(asked.query, answer, model), "version": version}
                results[position] = heirloom.Versioned(reply, version)
        return results

    def _problem(self, answer: Any, asked: Asked) -> str | None:
        """What is wrong with the answer to ``asked``, or None: its shape (``needs``, and no key the
        reply's schema does not name), its ranking, its patient and encounter. The check asks about
        one probe record: a model whose answers changed with the record passed it, then broke the
        reply schema (a KeyError) or, answering in another order, gave every patient another's."""
        problem = shape_problem(answer, self.needs, "its prediction") or ranking_problem(answer["codes"])
        if problem is None and answer["patient"] != (patient := asked.query.record.id):
            problem = f"its prediction is for patient {answer['patient']!r:.80}, asked about {patient!r}"
        if problem is None and answer["encounter"] != asked.visit:
            problem = f"its prediction is for encounter {answer['encounter']!r:.80}, asked about {asked.visit!r}"
        return problem

    def _answer(self, query: Query, answer: dict[str, Any], model: Any) -> dict[str, Any]:
        """The reply to ``query`` from the answer of ``model`` (as it is, unless a subclass says)."""
        return answer

    def _query(self, body: PredictInput) -> Asked:
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
            visit = find_encounter(record, body.encounter).id  # the named one, else the last: the model's default
        except LookupError as error:
            field = "body.encounter" if body.encounter is not None else where
            code = "NOT_FOUND" if body.encounter is not None else "INVALID_ARGUMENT"
            raise heirloom.RequestError(code, f"{field}: {error}", field) from None
        return Asked(Query(record, body.encounter), visit)


def _told_apart(queries: list[tuple[int, Asked]]) -> list[list[tuple[int, Asked]]]:
    """``queries`` in model calls within which no two ask about one patient and encounter: ``_problem``
    tells answers apart by them only. Inline records without an ``id`` are all "inline": answered in
    another order in one call, 12 of 20 concurrent clients got another request's diagnosis, unsaid."""
    calls: list[list[tuple[int, Asked]]] = []
    seen: dict[tuple[str, str], int] = {}
    for one in queries:
        key = (one[1].query.record.id, one[1].visit)
        seen[key] = turn = seen.get(key, -1) + 1
        if turn == len(calls):
            calls.append([])
        calls[turn].append(one)
    return calls


@attrs.define
class DiagnosisApi(CodesApi):
    """``<name>.predict``: the conditions likely diagnosed at an encounter, ranked, with probabilities."""

    route = "predict"
    what = "Ranked condition codes (as the records code them) with display names and probabilities"
    output = DiagnosisOutput
    api_type = "medical-diagnosis"
    needs = DIAGNOSIS.answer


@attrs.define
class TreatmentApi(CodesApi):
    """``<name>.recommend``: drugs to prescribe at an encounter, ranked, with the conditions
    each answers; never one the patient has a recorded allergy to."""

    route = "recommend"
    output = TreatmentOutput
    what = "Ranked drug codes (as the records code them) with the conditions each answers, allergy conflicts withheld,"
    api_type = "medical-treatment"
    needs = TREATMENT.answer

    #: A hospital's own drugs for the allergy filter (``formulary.py``), for a model of another type;
    #: unset, the shipped treatment model's ``formulary`` (one setting, read by both).
    formulary: str | None = formulary_field()

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.tables = self._formulary_of(ctx.get(self.model, "model"))

    def _formulary_of(self, model: Any) -> Formulary:
        """The filter's tables: this api's ``formulary``, else the shipped treatment model's."""
        if self.formulary is None and isinstance(model, TreatmentModel):
            return model.tables()
        return read_formulary(self.formulary)

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """As every medical api's, and a shipped treatment model that reads drug names with other
        tables than this api's (each ``formulary``): one would withhold a drug the other offers."""
        problems = super().check(models)
        model = models.get(self.model)
        try:
            tables = self._formulary_of(model)
        except heirloom.HeirloomError:  # a file missing or with mistakes: said at the 'formulary' key (h402 F5)
            return problems
        if isinstance(model, TreatmentModel) and not tables.same_names(model.tables()):
            problems.append(
                (
                    "formulary",
                    f"{self.formulary} is not the formulary of models.{self.model} "
                    f"({model.formulary or 'unset: the shipped tables alone'}), which withholds the drugs it cannot "
                    f"read before the api sees them: set 'formulary' on models.{self.model} alone (this api reads it)",
                )
            )
        return problems

    def _answer(self, query: Query, answer: dict[str, Any], model: Any) -> dict[str, Any]:
        """The answer without the drugs the record's allergies rule out, whatever model gave it: the
        shipped model's filter (``safety.py``), so the guarantee is the api's, not each model's. The
        withheld drugs join ``blocked``; the allergies the filter cannot read against the answer's
        drugs join ``unread_allergies``, and with one listed no drug is selected, saying why (``caution.py``).
        A no-op on the shipped model's answers but for that list and why. The tables are the serving model's
        (``formulary`` unset here): after a swap the api filtered with the old version's file, the model with
        the new one's, two lists at once (checker h402 F2)."""
        tables = model.tables() if self.formulary is None and isinstance(model, TreatmentModel) else self.tables
        allergies = recorded_allergies(query.record, tables)
        filtered = self._filtered(answer, allergies, tables) if allergies else answer
        elsewhere = self.lookup.unread_elsewhere(query.record) if self.lookup is not None else []
        outside = [f"{where}: {OUTSIDE}" for where in elsewhere]  # the first 100: 3,000 made 600 KB (v45 F1)
        outside = first_of(outside, MAX_ALLERGIES, "more outside the patient's unit")
        not_read = listed([*filtered["unread_allergies"], *outside])
        filtered = {**filtered, "unread_allergies": not_read}
        return {**filtered, "codes": unselected(filtered["codes"], not_read), FIELD: why_unselected(not_read)}

    def _filtered(self, answer: dict[str, Any], allergies: list[Allergy], tables: Formulary) -> dict[str, Any]:
        """The answer without the drugs ``allergies`` rule out (``blocked``), and those ``tables`` cannot read."""
        drugs = {item["code"]: read_drug(item["display"], tables) for item in answer["codes"]}  # vetted: once each
        found = withheld(allergies, drugs, tables)  # an unreadable name too, the reason in place of allergies
        blocked = {item["code"]: {**item, "allergies": quoted_all(item["allergies"])} for item in answer["blocked"]}
        for item in answer["codes"]:  # each allergy quoted (caution.py): a long one was repeated whole per drug
            if names := found.get(item["code"]):
                blocked[item["code"]] = {
                    "code": item["code"],
                    "display": item["display"],
                    "allergies": quoted_all(names),
                }
        blocked_parts = (ingredients(item["display"], tables) for item in answer["blocked"])
        known = [*(parts for parts, _ in drugs.values()), *blocked_parts]
        return {
            **answer,
            "codes": [item for item in answer["codes"] if item["code"] not in found],
            "blocked": [blocked[code] for code in sorted(blocked)],
            "unread_allergies": listed([*answer["unread_allergies"], *unread(allergies, known, tables)]),
        }
