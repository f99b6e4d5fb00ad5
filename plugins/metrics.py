"""Classification metrics in pure Python, shared by the built-in plugins.

No torch, no numpy: any model that predicts labels can report the same numbers in the
same shape (and artifacts compare across model types). The definitions follow
scikit-learn's ``classification_report`` (a class nobody predicted has precision 0), but for a
label the data never has: see ``classification_metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len

from heirloom.reports import absent_labels

#: Above this many labels the text shows the most frequent confusions, not the matrix.
MATRIX_TEXT_LIMIT = 15
#: Labels longer than this (terminal columns) number the matrix's columns: a 135-column label made each that wide.
MATRIX_LABEL_WIDTH = 16
TOP_CONFUSIONS = 10


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = ()
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, and
    the confusion matrix (rows: true label, columns: predicted label).

    ``labels`` fixes the order (e.g. the model's label set); labels seen in ``truth`` or
    ``predicted`` but not listed are appended in sorted order. Every label gets a row; the
    averages count only the labels ``truth`` has, so a label the model knows but the data never
    has (a new label learnt from feedback, which never enters a test split) does not pull
    ``macro_f1`` down, predicted or not: its row's recall and F1 are None (no record, no score
    anyone would average), its precision 0 when it was predicted. Its wrong answers count where
    they belong, in the true labels' recall and in accuracy. scikit-learn's default averages such a
    label in with F1 0: one stray answer of a version that learnt a label then cost it a quarter of its
    macro-F1 (0.711 -> 0.533 on 970 texts) and a gate would refuse it.
    ``unknown_labels``, when there are some, counts the records whose true label is not in
    ``labels`` (a typo in the test data, a label only the test split has).
    Everything is JSON-able.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    order = list(dict.fromkeys(labels))
    order += sorted(set(truth).union(predicted).difference(order))
    pairs = Counter(zip(truth, predicted, strict=True))
    support = Counter(truth)
    predicted_count = Counter(predicted)
    occurring = [label for label in order if support[label]]
    per_class: dict[str, dict[str, float | None]] = {}
    for label in order:
        if support[label]:
            precision = _ratio(pairs[(label, label)], predicted_count[label])
            recall = _ratio(pairs[(label, label)], support[label])
            scores = (precision, recall, _ratio(2 * precision * recall, precision + recall))
        else:  # no record: no recall, no F1; its answers, if any, all wrong
            scores = (0.0 if predicted_count[label] else None, None, None)
        per_class[label] = {**dict(zip(("precision", "recall", "f1"), scores, strict=True)), "support": support[label]}
    total = len(truth)

    def average(weighted: bool) -> dict[str, float]:
        weights = {label: (support[label] if weighted else 1) for label in occurring}
        norm = sum(weights.values())
        result: dict[str, float] = {
            key: _ratio(sum(per_class[label][key] * weights[label] for label in occurring), norm)
            for key in ("precision", "recall", "f1")
        }
        result["support"] = total
        return result

    macro, weighted = average(weighted=False), average(weighted=True)
    known = set(labels)  # a true label the model cannot predict (a typo, a new one): every one is an error
    unknown = {label: support[label] for label in order if labels and label not in known and support[label]}
    return {
        **({"unknown_labels": unknown} if unknown else {}),
        "accuracy": _ratio(sum(pairs[(label, label)] for label in order), total),
        "macro_f1": macro["f1"],
        "weighted_f1": weighted["f1"],
        "support": total,
        "per_class": per_class,
        "macro_avg": macro,
        "weighted_avg": weighted,
        "confusion_matrix": {
            "labels": order,
            "matrix": [[pairs[(true, guess)] for guess in order] for true in order],
        },
    }


def classification_text(metrics: dict[str, Any], digits: int = 3) -> str:
    """A scikit-learn-style report table of ``classification_metrics`` output, followed by
    the confusion matrix (or, for many labels, the most frequent confusions)."""
    names = list(metrics["per_class"])
    width = max(len("weighted avg"), *(cell_len(name) for name in names))
    head = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"

    def row(name: str, values: dict[str, float | None]) -> str:
        scores = (values[key] for key in ("precision", "recall", "f1"))
        cells = " ".join(f"{'-':>9}" if score is None else f"{score:>9.{digits}f}" for score in scores)
        return f"{_right(name, width)} {cells} {values['support']:>9}"

    absent = absent_labels(metrics["per_class"], metrics["confusion_matrix"])
    lines = [head, ""]
    lines += [row(name, values) for name, values in metrics["per_class"].items()]
    lines += [
        "",
        f"{'accuracy':>{width}} {'':>9} {'':>9} {metrics['accuracy']:>9.{digits}f} {metrics['support']:>9}",
        row("macro avg", metrics["macro_avg"]),
        row("weighted avg", metrics["weighted_avg"]),
        "",
    ]
    if absent:  # their zeros would not average to the macro figure above, which leaves them out
        said = f"-: no records in this split and never predicted, so left out of the averages: {', '.join(absent)}"
        lines += [said, ""]
    answered = [name for name, values in metrics["per_class"].items() if not values["support"] and name not in absent]
    if answered:  # answered, never right: its errors count in the true labels' recall, not twice
        said = f"-: no records in this split, so left out of the averages (each answer an error): {', '.join(answered)}"
        lines += [said, ""]
    if unknown := metrics.get("unknown_labels"):
        listed = ", ".join(f"{label} ({count})" for label, count in unknown.items())
        lines += [f"warning: labels the model does not predict, each record an error: {listed}", ""]
    lines += _confusion_text(metrics["confusion_matrix"])
    return "\n".join(lines) + "\n"


def majority_baseline(metrics: dict[str, Any], truth: list[str], label_counts: dict[str, int] | None) -> list[str]:
    """Adds ``majority`` to ``metrics`` (the most frequent training label of ``label_counts`` and its
    accuracy on ``truth``: a model on data without signal scored below it, unsaid) and returns the
    report's line on it, with a warning when the model is no better; nothing without ``label_counts``
    (a version trained before its model recorded them)."""
    if not label_counts:
        return []
    majority = max(sorted(label_counts), key=label_counts.get)  # the most frequent training label; ties: by name
    metrics["majority"] = {"label": majority, "accuracy": truth.count(majority) / len(truth) if truth else 0.0}
    if (tied := list(label_counts.values()).count(label_counts[majority])) > 1:  # one of them, not "the" most
        metrics["majority"]["tied"] = tied
    which = "the most frequent training label"
    if tied > 1:
        which = f"one of {tied} labels tied as most frequent in training"
    lines = [f"always answering {majority!r} ({which}): accuracy {metrics['majority']['accuracy']:.3f}"]
    unknown = sum(metrics.get("unknown_labels", {}).values())
    if metrics["support"] and unknown * 2 > metrics["support"]:  # a test file in Title Case: no text is to blame
        lines.append(
            f"warning: {unknown} of the {metrics['support']} records have labels the model does not predict (above), "
            "each an error whatever the texts: compare the held-out file's labels with the training file's (another "
            "case or spelling?)"
        )
    elif metrics["support"] and metrics["accuracy"] <= metrics["majority"]["accuracy"]:
        lines.append("warning: no better than always answering it: the texts may not tell these labels apart")
    return [*lines, ""]


def _confusion_text(confusion: dict[str, Any]) -> list[str]:
    labels, matrix = confusion["labels"], confusion["matrix"]
    if len(labels) > MATRIX_TEXT_LIMIT:
        mistakes = sorted(
            ((count, labels[t], labels[p]) for t, row in enumerate(matrix) for p, count in enumerate(row) if t != p),
            key=lambda item: (-item[0], item[1], item[2]),
        )[:TOP_CONFUSIONS]
        found = [f"  {count:>5}  {true} -> {guess}" for count, true, guess in mistakes if count]
        heading = f"most frequent confusions (true -> predicted; full matrix in the metrics, {len(labels)} labels):"
        return [heading, *found] if found else [f"no confusions ({len(labels)} labels: every record right)"]
    numbered = max(cell_len(label) for label in labels) > MATRIX_LABEL_WIDTH  # one long label widened each column
    heads = [f"#{number}" for number in range(1, len(labels) + 1)] if numbered else labels
    rows = [f"{label} {head}" for label, head in zip(labels, heads, strict=True)] if numbered else labels
    width = max(5, *(cell_len(head) for head in heads), *(len(str(v)) for row in matrix for v in row))
    row_width = max(width, *(cell_len(row) for row in rows))
    numbers = "; columns numbered as the rows" if numbered else ""
    lines = [f"confusion matrix (rows: true, columns: predicted{numbers}):"]
    lines.append(f"{'':>{row_width}} " + " ".join(_right(head, width) for head in heads))
    lines += [
        f"{_right(label, row_width)} " + " ".join(f"{v:>{width}}" for v in row)
        for label, row in zip(rows, matrix, strict=True)
    ]
    return lines


def _right(text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` terminal columns: a Hangul or kanji character takes two."""
    return " " * max(0, width - cell_len(text)) + text
