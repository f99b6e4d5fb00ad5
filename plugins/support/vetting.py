"""What the support api requires of its two models, where a version meets the api (its start
check) and in every answer.

The start check asks about two probe texts; a model whose later answers differed passed it,
then sent NaN confidences (written into the handoff log, which strict JSON parsers refuse),
answers of documents it does not have (a person could not resolve with them), intents it does
not predict (5 MB, or with control characters), or the out-of-scope label beside
``in_scope: true``: that customer was told "out of scope" and never handed off. Each answer is
now checked as it is sent, and a failing one is INTERNAL naming the model, for that request
alone.
"""

from __future__ import annotations

from typing import Any

import attrs

import heirloom
from heirloom_plugins.model_needs import shape_problem, strings_of

#: What ``answer`` reads of each prediction of the intent model and of the FAQ retriever.
INTENT_NEEDS = {
    "label": "a string",
    "guess": "a string",
    "confidence": "a number from 0 to 1",
    "in_scope": "true or false",
}
ANSWER_NEEDS = {"id": "a string", "question": "a string", "answer": "a string", "score": "a finite number"}
FAQ_NEEDS = {"answers": [ANSWER_NEEDS], "confidence": "a finite number", "confident": "true or false"}


@attrs.frozen
class IntentTerms:
    """The intents a model predicts, and its label of "none of them"."""

    labels: frozenset[str]
    out_of_scope: str


def intent_terms(model: Any) -> IntentTerms | str:
    """``model``'s ``labels`` and ``out_of_scope_label``, or what is wrong with them: a person's
    resolution names one of them, so each must be a label a person could send."""
    labels, out_of_scope = strings_of(getattr(model, "labels", None)), getattr(model, "out_of_scope_label", None)
    if not labels:
        return f"its 'labels' is {getattr(model, 'labels', None)!r:.80}, not a list of strings"
    for label in labels:
        try:
            heirloom.check_label(label, (), "labels", allow_new=True)
        except heirloom.RequestError as refused:
            return f"its labels include {label!r:.80}: {refused.message}"
    if not isinstance(out_of_scope, str) or heirloom.blank(out_of_scope):
        return f"its 'out_of_scope_label' is {out_of_scope!r:.80}, not a label"
    if out_of_scope in labels:
        return f"its 'out_of_scope_label' {out_of_scope!r} is one of its labels (a person's 'none of them' too)"
    return IntentTerms(frozenset(labels), out_of_scope)


def intent_problem(prediction: Any, terms: IntentTerms) -> str | None:
    """What is wrong with one prediction of the intent model, or None."""
    if problem := shape_problem(prediction, INTENT_NEEDS, "its prediction", exact=False):
        return problem
    label, guess = prediction["label"], prediction["guess"]
    if label != terms.out_of_scope and label not in terms.labels:
        return f"its prediction's label {label!r:.80} is none of its labels, nor {terms.out_of_scope!r}"
    if guess not in terms.labels:
        return f"its prediction's guess {guess!r:.80} is none of its labels"
    if prediction["in_scope"] == (label == terms.out_of_scope):
        return f"its prediction says in_scope {prediction['in_scope']} with the label {label!r:.80}"
    return None


def answer_ids(model: Any) -> frozenset[str] | str:
    """The ids ``model.document_ids()`` gives (the answers a person may name), or what is wrong."""
    try:
        ids = strings_of(model.document_ids())
    except Exception as exc:  # noqa: BLE001 - the plugin's bug, said as the api's check
        return f"its document_ids() raised {type(exc).__name__}: {str(exc)[:200]}"
    if ids is None:
        return "its document_ids() is not a list of strings (the ids of its answers)"
    return frozenset(ids) if ids else "its document_ids() is empty: a person could resolve with none of its answers"


def faq_problem(prediction: Any, ids: frozenset[str]) -> str | None:
    """What is wrong with one prediction of the retriever, or None."""
    if problem := shape_problem(prediction, FAQ_NEEDS, "its prediction", exact=False):
        return problem
    unknown = next((answer["id"] for answer in prediction["answers"] if answer["id"] not in ids), None)
    return None if unknown is None else f"its prediction's answer id {unknown!r:.80} is none of its document_ids()"


def best_answers(answers: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` best answers, best first, holding only the keys the reply's schema names."""
    ranked = sorted(answers, key=lambda answer: -answer["score"])[:count]
    return [{key: answer[key] for key in ANSWER_NEEDS} for answer in ranked]
