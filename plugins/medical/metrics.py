"""Multi-label metrics in pure Python, with scikit-learn's definitions.

``truth`` and ``predicted`` hold one set of labels per example; ``ranked`` one list of
labels in score order (for recall@k). A label nobody predicted has precision 0; labels
never seen in training still count (their support is missed recall).

- micro: pooled true/false positives over every (example, label) pair;
- macro: the unweighted mean over labels; weighted: weighted by each label's support;
- samples: the mean over examples of each example's precision, recall and F1;
- jaccard: the mean over examples of |predicted & true| / |predicted | true|;
- recall@k: the mean over examples of the share of its true labels in its top k
  (Doctor AI's definition), so it does not depend on the decision threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

AVERAGES = ("micro", "macro", "weighted", "samples")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def multilabel_metrics(
    truth: Sequence[set[str]],
    predicted: Sequence[set[str]],
    ranked: Sequence[Sequence[str]],
    *,
    k: int = 5,
    labels: Sequence[str] = (),
) -> dict[str, Any]:
    """Every figure of the report as JSON-able values (see the module docstring)."""
    if not len(truth) == len(predicted) == len(ranked):
        raise ValueError(f"{len(truth)} truths, {len(predicted)} predictions, {len(ranked)} rankings")
    support: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    guesses: Counter[str] = Counter()
    samples = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    jaccard = recall_at_k = 0.0
    for true, guess, order in zip(truth, predicted, ranked, strict=True):
        support.update(true)
        guesses.update(guess)
        hits.update(true & guess)
        precision, recall = _ratio(len(true & guess), len(guess)), _ratio(len(true & guess), len(true))
        samples["precision"] += precision
        samples["recall"] += recall
        samples["f1"] += _f1(precision, recall)
        jaccard += _ratio(len(true & guess), len(true | guess))
        recall_at_k += _ratio(len(true.intersection(order[:k])), len(true))
    names = [name for name in dict.fromkeys(labels) if support[name] or guesses[name]]
    names += sorted((set(support) | set(guesses)).difference(names))
    metrics = counts_metrics({n: (hits[n], guesses[n] - hits[n], support[n] - hits[n]) for n in names})
    examples = len(truth)
    metrics.update({f"samples_{key}": _ratio(value, examples) for key, value in samples.items()})
    metrics.update({f"recall_at_{k}": _ratio(recall_at_k, examples), "jaccard": _ratio(jaccard, examples)})
    metrics["visit_support"] = examples  # a count: promote --if-better refuses it ("support" counts labels)
    known = set(labels)  # a true code the model cannot predict (another code system): every one a miss
    if unknown := {name: support[name] for name in names if labels and name not in known and support[name]}:
        metrics["unknown_labels"] = unknown
    metrics["per_class"] = metrics.pop("per_class")  # last: the long part of the JSON
    return metrics


def counts_metrics(counts: Mapping[str, tuple[int, int, int]]) -> dict[str, Any]:
    """Precision, recall and F1 of named checks from their ``(tp, fp, fn)``, in the shape of
    ``multilabel_metrics`` (one per-class row per check; micro, macro, weighted averages)."""
    per_class: dict[str, dict[str, Any]] = {}
    for name, (tp, fp, fn) in counts.items():
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        scores = (precision, recall, _f1(precision, recall)) if tp + fp + fn else (None, None, None)  # idle: no 0.0
        per_class[name] = {**dict(zip(("precision", "recall", "f1"), scores, strict=True)), "support": tp + fn}
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    total = tp + fn
    micro = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}
    micro["f1"] = _f1(micro["precision"], micro["recall"])
    metrics: dict[str, Any] = {f"micro_{key}": value for key, value in micro.items()}
    # macro: the checks that had something to find or found something (as multilabel_metrics'
    # labels present in the truth or the predictions); an idle check is no failure
    active = [per_class[name] for name, (tp, fp, fn) in counts.items() if tp + fp + fn]
    for key in ("precision", "recall", "f1"):
        metrics[f"macro_{key}"] = _ratio(sum(c[key] for c in active), len(active))
        metrics[f"weighted_{key}"] = _ratio(sum(c[key] * c["support"] for c in active), total)
    metrics.update({"support": total, "summary": {**micro, "support": total, "tp": tp, "fp": fp, "fn": fn}})
    metrics["per_class"] = per_class
    return metrics


def _fitted(name: str, width: int) -> str:
    """``name`` in ``width`` characters, cut in the middle: local codes share a long system URL
    and differ at the end (four rows printed as one ``http://.../local-dx|DX-``)."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return f"{name[: width - 1 - tail]}…{name[-tail:]}"


def multilabel_text(
    metrics: Mapping[str, Any], names: Mapping[str, str] | None = None, *, k: int = 5, digits: int = 3
) -> str:
    """A scikit-learn-style report: one row per label (``code display``), then the averages."""
    names = names or {}
    rows = [(f"{label} {names.get(label, '')}".strip(), values) for label, values in metrics["per_class"].items()]
    width = max(len("weighted avg"), *(min(len(name), 60) for name, _ in rows)) if rows else len("weighted avg")
    head = f"{'':<{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"

    def row(name: str, values: Mapping[str, Any], support: int) -> str:
        scores = [values[key] for key in ("precision", "recall", "f1")]
        cells = " ".join(f"{'-':>9}" if value is None else f"{value:>9.{digits}f}" for value in scores)
        return f"{_fitted(name, width):<{width}} {cells} {support:>9}"

    lines = [head, ""]
    lines += [row(name, values, values["support"]) for name, values in rows]
    lines.append("")
    for average in AVERAGES:
        if f"{average}_f1" in metrics:
            values = {key: metrics[f"{average}_{key}"] for key in ("precision", "recall", "f1")}
            lines.append(row(f"{average} avg", values, metrics["support"]))
    if idle := [name for name, values in rows if values["f1"] is None]:
        lines += ["", f"- : nothing to find and nothing found ({', '.join(idle)}): left out of the macro avg"]
    if f"recall_at_{k}" in metrics:
        lines += [
            "",
            f"examples {metrics['visit_support']}, recall@{k} {metrics[f'recall_at_{k}']:.{digits}f}, "
            f"jaccard {metrics['jaccard']:.{digits}f}",
        ]
    if unknown := metrics.get("unknown_labels"):
        shown = ", ".join(f"{label} ({count})" for label, count in list(unknown.items())[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        lines += [
            "",
            f"warning: {len(unknown)} true label(s) the model does not predict, each one a miss: {shown}{more}",
        ]
    return "\n".join(lines) + "\n"
