"""Choosing ``l2`` and the decision threshold on validation folds of the training patients.

The training patients are split into ``folds`` groups by a salted hash of the patient id
(independent of the source's test/validation hash, so every fold holds patients). For
each ``l2`` of the grid, each fold's patients are predicted by a model fitted on the
other folds: out-of-fold probabilities for every training example, from patients the
model did not see. The ``(l2, threshold)`` pair with the best micro-F1 on them wins
(ties: the better recall@5, then the smaller ``l2``); the final model is the one fitted
on every training patient with that ``l2``. The test split is never read.

The decision rule: a label is predicted when its probability reaches the threshold, and
the most probable label always is (every example has at least one label).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

import heirloom
from heirloom_plugins.medical.linear import Rows, Weights, fit, probabilities

if TYPE_CHECKING:
    import torch

THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))
DEFAULT = (1.0, 0.5)


def fold_of(patient: str, folds: int) -> int:
    digest = hashlib.sha256(f"heirloom.medical.fold:{patient}".encode()).digest()
    return int.from_bytes(digest[:8]) % folds


def decide(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """A boolean ``(examples, labels)`` mask: at or above the threshold, plus each row's best."""
    import torch

    chosen = scores >= threshold
    if len(scores):
        chosen[torch.arange(len(scores)), scores.argmax(1)] = True
    return chosen


@attrs.frozen
class Selection:
    l2: float
    threshold: float
    #: JSON-able account of the search (stored in the model's training summary).
    summary: dict[str, Any]
    #: The model fitted on every training patient with ``l2`` (None: fit it).
    weights: Weights | None = None


def _scores(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> tuple[float, float]:
    """(micro-F1, recall@5) of the decision rule on out-of-fold probabilities."""
    import torch

    chosen = decide(probs, threshold).float()
    tp = float((chosen * targets).sum())
    f1 = 2 * tp / float(chosen.sum() + targets.sum()) if tp else 0.0
    top = probs.topk(min(5, probs.shape[1]), 1).indices
    found = torch.gather(targets, 1, top).sum(1) / targets.sum(1).clamp(min=1)
    return f1, float(found.mean())


def select(
    coo: torch.Tensor,
    targets: torch.Tensor,
    patients: Sequence[str],
    prior: Weights,
    grid: Sequence[float],
    folds: int,
    progress: heirloom.Progress,
    fallback: tuple[float, float] = DEFAULT,
) -> Selection:
    """The best ``(l2, threshold)`` by cross-validation over patients (module docstring).

    Fewer than two training patients cannot be split: ``fallback`` is used (a parent's
    choice when warm-starting, else ``DEFAULT``), and the summary says so.
    """
    import torch

    distinct = sorted(set(patients))
    folds = min(folds, len(distinct))
    if folds < 2 or len(grid) < 1:
        return Selection(*fallback, {"method": "fallback: fewer than two training patients", "l2": fallback[0]})
    assignment = {patient: fold_of(patient, folds) for patient in distinct}
    groups = [[i for i, p in enumerate(patients) if assignment[p] == fold] for fold in range(folds)]
    groups = [group for group in groups if group]
    everyone = range(len(patients))
    progress.start(f"choosing l2 and threshold on {len(groups)} validation folds", total=len(grid) * (len(groups) + 1))
    table = []
    full: dict[float, Weights] = {}
    for l2 in sorted(grid):
        # the fit on every patient first (from the last l2's), then each fold from it: the
        # optima are close, so few iterations are needed, and the winner's is kept
        full[l2] = fit(Rows.of(coo), targets, prior, l2=l2, start=full[max(full)] if full else None)
        progress.advance()
        out_of_fold = torch.zeros_like(targets)
        for held in groups:
            kept = sorted(set(everyone).difference(held))
            weights = fit(Rows.pick(coo, kept), targets[kept], prior, l2=l2, start=full[l2])
            out_of_fold[held] = probabilities(Rows.pick(coo, held), weights)
            progress.advance()
        f1, recall, threshold = max((*_scores(out_of_fold, targets, t), t) for t in THRESHOLDS)
        table.append({"l2": l2, "threshold": threshold, "micro_f1": f1, "recall_at_5": recall})
        progress.log(f"l2 {l2:g}: threshold {threshold:.2f}, validation micro-F1 {f1:.3f}, recall@5 {recall:.3f}")
    best = max(table, key=lambda row: (row["micro_f1"], row["recall_at_5"], -row["l2"]))
    summary = {
        "method": "cross-validation over training patients",
        "folds": len(groups),
        "patients": len(distinct),
        "examples": len(patients),
        "grid": table,
        "micro_f1": best["micro_f1"],
        "recall_at_5": best["recall_at_5"],
    }
    return Selection(best["l2"], best["threshold"], summary, full[best["l2"]])
