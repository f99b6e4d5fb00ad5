"""A small in-process plugin for kernel tests: components that record their lifecycle.

This is a plugin like any third party's, not a stand-in for heirloom's own parts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import attrs

import heirloom

#: Lifecycle events, in order, appended by the components below.
EVENTS: list[str] = []
#: ``id`` of each model instance stopped, in order: instances of equal settings compare equal.
STOPPED_MODELS: list[int] = []


def _record(event: str) -> None:
    EVENTS.append(event)


@attrs.define
class ToySource(heirloom.Source):
    rows: int = 3
    after: str | None = heirloom.ref("source", default=None)
    #: a file read before the rows, as a plugin's own source reads its data
    path: str | None = heirloom.path_field(default=None)
    #: Declares a validation split too, yielding the same rows for every split (as a buggy source does).
    validation: bool = False
    #: What ``splits()`` lists instead, when set (a third-party source's typo, ``valid`` for ``validation``).
    listed_splits: list[str] = attrs.field(factory=list)
    #: ``records`` raises KeyError after its first row, and ``stop`` raises: a plugin's bugs.
    bug: bool = False
    fail_stop: bool = False
    #: The split whose records stop at a bad line of the source's file: a user's HeirloomError, not a bug.
    bad_split: str | None = None
    #: ``fingerprint`` raises ValueError, or (``no_fingerprint``) returns None: a plugin's bugs.
    bad_fingerprint: bool = False
    no_fingerprint: bool = False
    #: What the fingerprint starts with: two of one long start differ only past it.
    fingerprint_prefix: str = ""
    #: ``splits`` raises NotADirectoryError, as a source given a file for its folder does: a plugin's bug.
    bad_splits: bool = False
    #: ``splits`` returns the text ``"train"``, no list: a plugin's bug, read letter by letter (checker v41 F6);
    #: ``none_splits``: None, a ``splits`` without its ``return`` (a traceback into heirloom's code: v42 F1).
    text_splits: bool = False
    none_splits: bool = False
    #: The number (from 1) of the record of each split yielded as a list, no dict or attrs object: a plugin's bug.
    list_record: int = 0
    #: ``records`` returns one dict, not records one by one: a plugin's bug.
    dict_records: bool = False

    def start(self, ctx):
        super().start(ctx)
        _record(f"start {ctx.name}")

    def splits(self):
        if self.bad_splits:
            raise NotADirectoryError(20, "Not a directory", "rows.jsonl")
        if self.text_splits or self.none_splits:
            return None if self.none_splits else "train"
        return self.listed_splits or (["train", "validation", "test"] if self.validation else super().splits())

    def stop(self):
        _record(f"stop {self.ctx.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.ctx.name} refuses to stop")

    def records(self, split=None):
        return {"i": 0} if self.dict_records else self._rows(split)

    def _rows(self, split):
        if self.path is not None:
            os.close(heirloom.open_regular(Path(self.path)))
        if self.bad_split is not None and split == self.bad_split:
            raise heirloom.HeirloomError(f"rows.csv:7: 'temp' is not a number (the {split} split)")
        for i in range(self.rows):
            if self.bug and i:
                raise KeyError("body")
            yield ["i", i] if i + 1 == self.list_record else {"i": i}

    def fingerprint(self) -> str:
        if self.bad_fingerprint:
            raise ValueError("cannot hash")
        return None if self.no_fingerprint else f"{self.fingerprint_prefix}toy-{self.rows}"


@attrs.define
class ToyModel(heirloom.Model):
    data: str = heirloom.ref("source")
    epochs: int = 1
    rate: float = 0.1
    tags: list[str] = attrs.field(factory=list)
    fail_start: bool = False
    fail_stop: bool = False
    #: ``load`` raises, as a plugin's bug in reading its weights does.
    fail_load: bool = False
    start_seconds: float = 0.0
    allocate_mb: int = 0
    #: Memory fit grows by without a word of progress (building features, one long op).
    silent_allocate_mb: int = 0
    #: A warm start moves the state even on the same data (as a fitted threshold does).
    drift: bool = False
    generation: int = 0
    #: Stored in the state and left out of ``==``, as a real model's weights are: instances of
    #: two versions then compare equal.
    note: str = attrs.field(default="", eq=False)
    #: ``numpy``: evaluate reports a numpy float; ``dict``: a plain dict, not a Report; ``textless``: a Report whose
    #: text is None (plugin bugs); ``nested``: only nested scores; ``warning``: a report that warns.
    odd_report: str = ""
    #: ``TOY_STATE_FORMAT=2`` plays a newer release of this model type.
    state_format: ClassVar[int] = int(os.environ.get("TOY_STATE_FORMAT", "1"))

    def start(self, ctx):
        super().start(ctx)
        if self.start_seconds:
            time.sleep(self.start_seconds)
        if self.fail_start:
            raise RuntimeError(f"{ctx.name} refuses to start")
        _record(f"start {ctx.name}")

    def stop(self):
        _record(f"stop {self.ctx.name}")
        STOPPED_MODELS.append(id(self))
        if self.fail_stop:
            raise RuntimeError(f"{self.ctx.name} refuses to stop")

    def fit(self, data, parent=None, progress=None):
        self.seen = sum(1 for _ in data)
        held = []
        for _ in range(self.allocate_mb // 10):  # memory that grows as fitting reports progress
            held.append(bytearray(10 << 20))
            time.sleep(0.02)
            progress.advance(1)
        for _ in range(self.silent_allocate_mb // 10):
            held.append(bytearray(10 << 20))
            time.sleep(0.02)
        if parent is not None and "refuse-parent" in self.tags:  # a parent of its own type it cannot use
            raise heirloom.ForeignState("the parent has dim 64, this model 32")
        if parent is not None:
            self.epochs = parent.metadata["epochs"]  # a warm start keeps what the parent learnt
            if self.drift:
                self.generation = parent.metadata.get("generation", 0) + 1

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def evaluate(self, data):
        metrics = {"accuracy": 1.0, "records": sum(1 for _ in data)}
        if self.odd_report == "numpy":
            import numpy

            metrics["accuracy"] = numpy.float32(1.0)
        if self.odd_report == "nested":
            metrics = {"per_class": {"a": metrics}}
        said = "perfect\nwarning: these scores flatter\n" if self.odd_report == "warning" else "perfect"
        said = None if self.odd_report == "textless" else said
        return metrics if self.odd_report == "dict" else heirloom.Report(metrics, said)

    def state(self):
        drifted = {"generation": self.generation} if self.drift else {}
        return heirloom.State({}, {"epochs": self.epochs} | drifted | ({"note": self.note} if self.note else {}))

    def load(self, state):
        if self.fail_load:
            raise RuntimeError(f"{self.ctx.name} cannot read its weights")
        if state.metadata.get("note") == "hangs-in-load":  # a plugin's load stuck on a lock or a mount
            time.sleep(3)
        self.epochs = state.metadata["epochs"]
        self.generation = state.metadata.get("generation", 0)
        self.note = state.metadata.get("note", "")


@attrs.define
class ToyClassifier(ToyModel):
    """A model of another type than the shipped classifiers, as a third party writes one: it
    labels every text ``a`` (with ``float32``, numpy's floats as its probabilities)."""

    float32: bool = False
    #: ``dunno``: labels every text ``dunno``, a label of none of its probabilities (an "I don't
    #: know"); ``by_text``: labels the text ``b`` b (a label-monitor's stream); ``needs_start``: predicts with
    #: what start sets; ``one``: one prediction whatever the batch; ``chances``: probabilities that are none (NaN,
    #: infinite, negative); after the first call
    #: (the probe), ``chances_later`` and ``none_later`` (None for the last text). ``support``: an
    #: intent and FAQ answers in one; ``support_FLAW`` breaks them from the first call,
    #: ``support_FLAW_later`` after it (the probe): ``noid`` (an answer without its id), ``nan``
    #: (a NaN confidence), ``oos_in_scope`` (``dunno`` said in scope), ``unknown_id`` (an answer of
    #: no document), ``extras`` (two answers, worst first, one with a key the reply does not name).
    mode: str = ""
    labels: ClassVar[list[str]] = ["a", "b"]
    out_of_scope_label: ClassVar[str] = "dunno"

    def document_ids(self) -> list[str]:
        return ["t/1", "t/2"]

    def start(self, ctx):
        super().start(ctx)
        self.calls = 0

    def predict(self, batch: list[Any]) -> list[Any]:
        chances = {"a": 0.75, "b": 0.25}
        if self.float32:
            import numpy

            chances = {label: numpy.float32(chance) for label, chance in chances.items()}
        if self.mode == "needs_start" or self.mode.startswith("support") or self.mode.endswith("_later"):
            self.calls += 1
        if self.mode.startswith("support"):
            return [self._support_answer(chances) for _ in batch]
        later = self.mode.endswith("_later") and self.calls > 1
        if self.mode == "chances" or (self.mode == "chances_later" and later):
            chances = {"a": float("nan"), "b": float("-inf")}
        given = "dunno" if self.mode == "dunno" else "a"
        labels = ["b" if self.mode == "by_text" and text == "b" else given for text in batch]
        answers = [{"label": label, "probabilities": chances} for label in labels]
        if self.mode == "none_later" and later:
            answers[-1] = None
        return answers[:1] if self.mode == "one" else answers

    def _support_answer(self, chances: dict[str, Any]) -> dict[str, Any]:
        """An intent and FAQ answers in one, as the support api reads them (``mode``)."""
        flaw = self.mode.removeprefix("support").removeprefix("_").removesuffix("_later")
        if self.mode.endswith("_later") and self.calls == 1:
            flaw = ""
        answers = [{"id": "t/1", "question": "Where?", "answer": "Here.", "score": 1.0}]
        if flaw == "extras":
            answers = [{**answers[0], "score": 0.2, "internal_path": "/srv/kb.xml"}, {**answers[0], "id": "t/2"}]
        answer = {"label": "a", "probabilities": chances, "guess": "a", "confidence": 0.75, "in_scope": True}
        answer |= {"answers": answers, "confident": True}
        if flaw == "noid":
            del answers[0]["id"]
        if flaw == "nan":
            answer["confidence"] = float("nan")
        if flaw == "oos_in_scope":
            answer["label"] = "dunno"
        if flaw == "unknown_id":
            answers[0]["id"] = "elsewhere/1"
        return answer

    def state(self):
        state = super().state()  # what changes predictions travels in the state (docs/PLUGINS.md)
        return heirloom.State(state.tensors, {**state.metadata, "float32": self.float32})

    def load(self, state):
        super().load(state)
        self.float32 = state.metadata["float32"]


@attrs.define
class ToyRecommender(ToyModel):
    """What the recommend api reads of a model, and no more: items ``i1``, ``i2``, ``i3`` (scored
    1/2, 1/3, 1/4), one user ``u1`` who has none (with ``float32``, numpy's floats as scores).
    ``mode`` breaks each answer for a request whose history or exclude holds ``i3`` (the start
    check asks an empty history and ``[i1]``) as a third party's did: ``extra`` (describe adds a
    key replies do not name), ``untitled`` (describe has no title), ``own`` (``i3`` ranked),
    ``minus`` (position -1 first), ``true`` (position True first), ``beyond`` (position 3 first),
    ``more`` (an item more than k), ``twice`` (the best item twice), ``unranked`` (worst first),
    ``nan``, ``text`` (scores as text), ``raise``; ``self`` (similar ranks the item asked about
    first), ``swap`` (a batch's answers in reverse order)."""

    float32: bool = False
    mode: str = ""

    def load(self, state):
        super().load(state)
        import numpy

        self.catalogue = attrs.make_class("Catalogue", ["index", "describe"])(
            {"i1": 0, "i2": 1, "i3": 2}, self._describe
        )
        self.histories = attrs.make_class("Histories", ["index", "of"])(
            {"u1": 0}, lambda row: numpy.zeros(0, dtype=numpy.int64)
        )

    def _describe(self, position: int) -> dict[str, Any]:
        item = {"item": f"i{position + 1}", "title": "One", "year": None, "genres": []}
        if position and self.mode == "extra":  # i1 is what the start check describes
            item["internal_path"] = "/srv/acme/secret.pem"
        if position and self.mode == "untitled":
            del item["title"]
        return item

    def _ranked(self, leave: set[int], k: int) -> list[tuple[int, Any]]:
        import numpy

        ranked = [(position, 1 / (position + 2)) for position in range(3) if position not in leave][:k]
        return [(position, numpy.float32(score)) for position, score in ranked] if self.float32 else ranked

    def recommend(self, histories, ks, excluded=None):
        excluded = excluded or [[] for _ in histories]
        answers = [
            self._broken(ranked, k) if 2 in history or 2 in left else ranked
            for history, k, left in zip(histories, ks, excluded, strict=True)
            for ranked in [self._ranked({*history.tolist(), *left}, k)]
        ]
        return answers[::-1] if self.mode == "swap" else answers

    def _broken(self, ranked: list[tuple[int, Any]], k: int) -> list[tuple[Any, Any]]:
        best = ranked[1:]  # the first makes way for a wrong one
        broken = {
            "own": [(2, 0.9), *best],
            "minus": [(-1, 0.9), *best],
            "true": [(True, 0.9), *best],
            "beyond": [(3, 0.9), *best],
            "more": [*ranked, (2, 0.1)],
            "twice": ranked[:1] * 2,
            "unranked": ranked[::-1],
            "nan": [(position, float("nan")) for position, _ in ranked],
            "text": [(position, str(score)) for position, score in ranked],
        }
        if self.mode == "raise":
            raise ValueError("too many values to unpack")
        return broken.get(self.mode, ranked)

    def similar(self, position, k):
        ranked = self._ranked({position}, k)
        return [(position, 1.0), *ranked][:k] if self.mode == "self" else ranked

    def similar_text(self, text, k):
        return self._ranked(set(), k)


@attrs.define
class ToyCodes(ToyModel):
    """A model of another type behind the medical apis, as a third party writes one: it reads
    ``record.codes`` (docs/FHIR.md), answers the record's conditions as diagnoses and, with
    ``treatment``, penicillin V for them, whatever the patient's allergies. ``mode`` breaks it
    as plugins do: ``nocodes``, ``strcodes`` (codes as plain strings), ``float32``, ``noextras``
    (treatment without ``blocked``, ``unread_allergies``, ``answers``), ``nodisplay`` (drugs
    without their names), ``nodisplay_unallergic`` (so for patients without an allergy alone, as the
    shipped model answered a drug no training visit named: it withheld it from allergic ones),
    ``nan`` (a probability), ``debug`` (keys the reply does not name),
    ``itemdebug`` (such a key in each ranked item), ``unranked`` (the least probable first),
    ``repeats`` (a condition recorded twice, answered twice); after its first call (the probe):
    ``short_later`` (one prediction too few), ``noextras_later``, ``other_later`` (another patient's answer),
    ``elsewhere_later`` (another encounter's), ``reversed_later`` (a batch's answers in reverse order, slowly,
    so requests batch)."""

    treatment: bool = False
    mode: str = ""
    #: The name of the drug it recommends.
    drug: str = "Penicillin V Potassium 500 MG Oral Tablet"

    def start(self, ctx):
        super().start(ctx)
        self.calls = 0

    def predict(self, batch: list[Any]) -> list[Any]:
        self.calls += 1
        answers = [self._answer(query) for query in batch]
        if self.mode == "reversed_later" and self.calls > 1:
            time.sleep(0.3)
            return answers[::-1]
        return answers[1:] if self.mode == "short_later" and self.calls > 1 else answers

    def state(self):
        state = super().state()  # a mode it was trained with travels (a hot swap to a broken version)
        return heirloom.State(state.tensors, {**state.metadata, "mode": self.mode})

    def load(self, state):
        super().load(state)
        self.mode = state.metadata["mode"] or self.mode

    def _answer(self, query: Any) -> dict[str, Any]:
        visit = query.encounter or [e.id for e in query.record.timeline if e.kind == "encounter" and e.date][-1]
        conditions = query.record.codes["condition"]
        found = [
            {"code": code, "display": None}
            for code in (conditions if self.mode == "repeats" else dict.fromkeys(conditions))
        ]
        answer: dict[str, Any] = {"patient": query.record.id, "encounter": visit, "date": None}
        if self.treatment:
            drug = {"code": "rxnorm:834102", "display": self.drug}
            codes = [{**drug, "probability": 0.9, "selected": True, "answers": found}]
            answer |= {"codes": codes, "blocked": [], "unread_allergies": []}
        else:
            answer["codes"] = [{**item, "probability": 0.5, "selected": True} for item in found]
        if self.mode == "unranked":
            for index, item in enumerate(answer["codes"]):
                item["probability"] = min(1.0, 0.1 * (index + 1))
        if self.mode == "debug":
            answer |= {"debug": {"features": len(found)}, "internal_path": "/srv/models/toy"}
        if self.mode == "itemdebug":
            for index, item in enumerate(answer["codes"]):
                item["internal_rank"] = index
        if self.mode == "float32":
            import numpy

            for item in answer["codes"]:
                item["probability"] = numpy.float32(item["probability"])
        if self.mode == "strcodes":
            answer["codes"] = [item["code"] for item in answer["codes"]]
        if self.mode == "nocodes":
            del answer["codes"]
        later = self.calls > 1
        if self.mode == "noextras" or (self.mode == "noextras_later" and later):
            del answer["blocked"], answer["unread_allergies"], answer["codes"][0]["answers"]
        if self.mode == "nan":
            answer["codes"][0]["probability"] = float("nan")
        allergic = any(e.kind == "allergy" for e in query.record.timeline)
        if self.mode == "nodisplay" or (self.mode == "nodisplay_unallergic" and not allergic):
            answer["codes"][0]["display"] = None
        if self.mode == "other_later" and later:
            answer["patient"] = "someone-else"
        if self.mode == "elsewhere_later" and later:
            answer["encounter"] = "elsewhere"
        return answer


@attrs.define
class ToyApi(heirloom.Api):
    model: str = heirloom.ref("model")
    #: look the model up in check, as a plugin author might, forgetting an untrained model is absent
    check_model: bool = False
    #: a setting only a version trained for these epochs can serve (as a monitored label a version lacks)
    needs_epochs: int = 0
    #: read the model through ``heirloom.served_model`` and reply with the version too
    versioned: bool = False
    #: ``check`` returns no list of pairs once a model is stored, as a plugin's bug: ``str`` "nope", ``letters`` ["ab"]
    odd_check: str = ""
    #: ``feedback_log``: ``log`` the api's log; a plugin's bugs: ``raise`` (KeyError), ``int`` (42, no path)
    feedback: str = ""
    #: ``routes`` raises, as a plugin's bug does.
    fail_routes: bool = False

    def feedback_log(self, project, name):
        if self.feedback == "raise":
            raise KeyError("feedback_dir")
        return {"log": heirloom.log_path("feedback", project, name), "int": 42}.get(self.feedback)

    def check(self, models):
        if self.odd_check and models:
            return {"str": "nope", "letters": ["ab"]}[self.odd_check]
        if self.needs_epochs and (model := models.get(self.model)) and model.epochs != self.needs_epochs:
            return [("needs_epochs", f"the model was trained for {model.epochs} epochs")]
        return [("model", "no model")] if self.check_model and models[self.model] is None else []

    def start(self, ctx):
        super().start(ctx)
        self.target = ctx.get(self.model, "model")
        _record(f"start {ctx.name}")

    def stop(self):
        _record(f"stop {self.ctx.name}")

    def routes(self):
        if self.fail_routes:
            raise RuntimeError("routes broke")
        return [heirloom.Route("predict", handler=self.predict)]

    def predict(self, body):
        if not self.versioned:
            return self.target.predict([body])[0]
        model, version = heirloom.served_model(self.ctx.model(self.model))
        return {"out": model.predict([body])[0], "version": version}


@attrs.define
class ToyChecks(heirloom.Api):
    """An api with an evaluation of its own: every record passes, plus one false alarm."""

    data: str | None = heirloom.ref("source", default=None)

    def routes(self):
        return []

    def evaluate(self, data):
        passed = sum(1 for _ in data)
        summary = {"precision": passed / (passed + 1), "recall": 1.0, "f1": 2 * passed / (2 * passed + 1)}
        summary |= {"support": passed, "tp": passed, "fp": 1, "fn": 0}
        return heirloom.Report({"summary": summary}, f"{passed} checks passed")


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("toy-source", ToySource)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("toy-model", ToyModel)
    register("toy-classifier", ToyClassifier)
    register("toy-recommender", ToyRecommender)
    register("toy-codes", ToyCodes)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("toy-api", ToyApi)
    register("toy-checks", ToyChecks)
