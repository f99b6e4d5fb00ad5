"""The ``classify`` api: ``<name>.predict`` (batched), ``<name>.labels``, ``<name>.feedback``.

Predictions come from the model's handle, read once per batch, so a hot swap never
mixes versions inside one reply and every reply names the version that produced it.
Feedback labels are checked against the served model's labels, so a typo never becomes
a new class in the next model; new labels, where allowed, wait for an operator's
``heirloom feedback accept-label`` before they train.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.model_needs import (
    PerInstance,
    classification_problem,
    classifier_problems,
    failed_answer,
    first_problem,
    labels_of,
    predictions_of,
)
from heirloom_plugins.text.sources import label_spelling

#: Where a model of another type learns what this api reads of it.
CLASSIFY_DOC = "docs/TEXT.md, 'Another model behind classify'"


def predict_input(max_chars: int, max_texts: int) -> type:
    """The attrs class of a predict body, with this api's limits in its validators."""

    @attrs.define
    class PredictInput:
        """One text (``text``) or several (``texts``) to classify."""

        __schema__: ClassVar[dict[str, Any]] = heirloom.one_of(text="string", texts="array")

        # a blank text has no words: its "label" would be the class of the largest bias, an answer about nothing
        text: str | None = attrs.field(default=None, validator=heirloom.text_limit(max_chars, blank=False))
        texts: list[str] | None = attrs.field(
            default=None, validator=heirloom.list_limit(max_texts, each=heirloom.text_limit(max_chars, blank=False))
        )

        def __attrs_post_init__(self) -> None:
            if (self.text is None) == (self.texts is None):
                given = "both were given" if self.text is not None else "neither was given"
                raise ValueError(f"'text' (a string) or 'texts' (a list of strings): give one of them ({given})")

    return PredictInput


def label_schema(labels: list[str]) -> dict[str, Any]:
    """``heirloom.LABEL_SCHEMA`` with the served model's labels as ``examples`` (none while none is served), read
    with each ``_routes``: a generated client or the gateway's ``/docs`` form starts from a label the route takes (the
    form sent ``"label": "example"``, refused: checker h320 F3). Examples, not an ``enum``: with ``new_labels`` the
    route takes others too."""
    return {**heirloom.LABEL_SCHEMA, **({"examples": labels} if labels else {})}


def feedback_input(max_chars: int, labels: Callable[[], list[str]] = list) -> type:
    """The attrs class of a feedback body, with this api's text limit in its validator; ``labels``:
    the served model's, which its schema gives as examples."""

    @attrs.define
    class FeedbackInput:
        """A text and the label it should have had."""

        text: str = attrs.field(validator=heirloom.text_limit(max_chars, blank=False))
        label: str = attrs.field(metadata={"schema": lambda: label_schema(labels())})

    return FeedbackInput


@attrs.define
class PredictOutput:
    """The reply to {'text'}: the best label and every label's probability."""

    label: str
    probabilities: dict[str, float]
    version: str | None


@attrs.define
class Prediction:
    """One text's best label and every label's probability."""

    label: str
    probabilities: dict[str, float]


@attrs.define
class PredictManyOutput:
    """The reply to {'texts'}: one prediction per text, in their order."""

    predictions: list[Prediction]
    version: str | None


#: A predict route answers in the form it was asked in (the one-text form first).
PREDICT_OUTPUT = PredictOutput | PredictManyOutput


@attrs.define
class ClassifyApi(heirloom.Api):
    """Serves a text classifier: predictions with probabilities, its labels, corrections."""

    #: The model that classifies.
    model: str = heirloom.ref("model")
    #: Batching: at most this many texts per model call, waiting at most ``max_wait_ms``.
    max_batch: int = attrs.field(default=128, validator=heirloom.route_limit("max_batch"))
    max_wait_ms: float = attrs.field(default=2.0, validator=heirloom.route_limit("max_wait_ms"))
    #: Off: every request is its own model call (for comparison; on is faster under load).
    batching: bool = True
    #: Longest text accepted, and most texts per request.
    max_text_chars: int = attrs.field(default=10_000, validator=heirloom.above(0))
    max_texts: int = attrs.field(default=256, validator=heirloom.above(0))
    #: Where ``<name>.feedback`` appends corrections (default: under HEIRLOOM_HOME, see
    #: the ``feedback`` source, which reads the same place).
    feedback_path: str | None = None
    #: The feedback log's size limit in MiB; past it, feedback is refused RESOURCE_EXHAUSTED.
    feedback_max_mb: int = attrs.field(default=256, validator=heirloom.mebibytes())
    #: Let ``<name>.feedback`` take labels the served model lacks. They are recorded, but
    #: train only once accepted: ``heirloom feedback accept-label PROFILE LABEL``.
    new_labels: bool = False
    #: With ``new_labels``: a regular expression a new label must match in full.
    new_label_pattern: str | None = attrs.field(
        default=None,
        converter=lambda value: value or None,
        validator=heirloom.label_pattern,  # "": unset
    )

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """A model of another type must give what this api serves: labels, and per text a label
        and its probabilities."""
        model = models.get(self.model)
        return classifier_problems("model", model, "classify", CLASSIFY_DOC) if model is not None else []

    def feedback_log(self, project: str, name: str) -> Path:
        return Path(self.feedback_path) if self.feedback_path else heirloom.log_path("feedback", project, name)

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.handle = ctx.model(self.model)
        self._labels = PerInstance(labels_of)
        self.input = predict_input(self.max_text_chars, self.max_texts)
        self.feedback_input = feedback_input(self.max_text_chars, self.served_labels)
        path = self.feedback_log(ctx.project, ctx.name)
        self.feedback_records = heirloom.FeedbackLog(path, max_bytes=self.feedback_max_mb << 20, quota=ctx.log_quota())
        replay = heirloom.FeedbackLog.replay(path) if self.new_labels else None  # new labels the model has not yet
        self._waiting = {*replay.pending_labels(), *replay.accepted} if replay is not None else set()

    def stop(self) -> None:
        log = getattr(self, "feedback_records", None)
        if log is not None:
            log.close()

    def routes(self) -> list[heirloom.Route]:
        predict = (
            heirloom.Route(
                "predict",
                handler=self.predict_batch,
                input=self.input,
                batched=True,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                items=lambda body: 1 if body.text is not None else len(body.texts),
                description="Label and probabilities for {'text': str} or {'texts': [str, ...]}.",
                model=self.model,
                output=PREDICT_OUTPUT,
            )
            if self.batching
            else heirloom.Route(
                "predict",
                handler=lambda body: self.predict_batch([body])[0],
                input=self.input,
                description="Label and probabilities for {'text': str} or {'texts': [str, ...]} (unbatched).",
                model=self.model,
                output=PREDICT_OUTPUT,
            )
        )
        return [
            predict,
            heirloom.Route(
                "labels",
                handler=self.labels,
                input=type(None),  # _routes says {"type": "null"}: it said any body, and refused one
                inline=True,
                description="The labels the model predicts.",
            ),
            heirloom.Route(
                "feedback",
                handler=self.feedback,
                input=self.feedback_input,
                description="Record the correct label of a text (one the model knows; durable before OK); "
                "the next train uses it.",
            ),
        ]

    def predict_batch(self, inputs: list[Any]) -> list[heirloom.Versioned | heirloom.RequestError]:
        model, version = heirloom.served_model(self.handle)
        texts = [text for body in inputs for text in ([body.text] if body.text is not None else body.texts)]
        predictions, labels = iter(predictions_of(model, texts)), self._labels(model)
        results: list[heirloom.Versioned | heirloom.RequestError] = []
        for body in inputs:
            batch = [next(predictions) for _ in ([body.text] if body.text is not None else body.texts)]
            if problem := first_problem(batch, classification_problem, labels):
                results.append(failed_answer(model, problem, CLASSIFY_DOC))
            elif body.text is not None:
                results.append(heirloom.Versioned({**batch[0], "version": version}, version))
            else:
                results.append(heirloom.Versioned({"predictions": batch, "version": version}, version))
        return results

    def labels(self, body: None) -> heirloom.Versioned:
        model, version = heirloom.served_model(self.handle)  # an empty list would read as a model with no labels
        return heirloom.Versioned({"labels": list(getattr(model, "labels", [])), "version": version}, version)

    def served_labels(self) -> list[str]:
        """The served model's labels in its order, none while no trained version is served."""
        model, version = self.handle.current
        return [] if version is None else list(getattr(model, "labels", []))

    def feedback(self, body: Any) -> dict[str, Any]:
        model, _ = heirloom.served_model(self.handle)
        new = heirloom.check_label(
            body.label, list(model.labels), "body.label", allow_new=self.new_labels, pattern=self.new_label_pattern
        )
        if new:  # one printed like a new label sent before (full-width, a no-break space) slipped by (h422 F2)
            heirloom.check_label(body.label, sorted(self._waiting), "body.label", allow_new=True)
        # a new label a known one differs from only by case, spaces, '_' or '-' (Claims: claims) would
        # train as a class of its own: recorded, and said, in the reply and to accept-label
        close = _close_to(body.label, model.labels) if new else None
        marks = {heirloom.FeedbackLog.NEW_LABEL: True, **({heirloom.FeedbackLog.CLOSE_TO: close} if close else {})}
        record = {"text": body.text, "label": body.label, **(marks if new else {})}
        with heirloom.durable_write("feedback", f"apis.{self.ctx.name}.feedback_max_mb = {self.feedback_max_mb} MiB"):
            record_id = self.feedback_records.add(record)
        self._waiting.update([body.label] if new else [])
        return {"recorded": True, "id": record_id, "new_label": new, **({"close_to": close} if close else {})}


def _close_to(label: str, known: list[str]) -> str | None:
    """The known label that ``label`` differs from only by case, spaces, '_' or '-', if any."""
    spelling = label_spelling(label)
    return next((name for name in known if label_spelling(name) == spelling), None)
