"""Choosing ``l2``, the net's weight and the decision threshold on validation folds of the training patients.

The training patients are split into ``folds`` groups by a salted hash of the patient id
(independent of the source's test/validation hash, so every fold holds patients). For
each ``l2`` of the grid, each fold's patients are predicted by a model fitted on the
other folds: out-of-fold probabilities for every training example, from patients the
model did not see. A small net (``net.py``) is fitted once per fold too, stopped early on
the next fold's patients, and its out-of-fold probabilities are averaged with the linear
model's at each weight of the ``blends`` grid (0: the linear model alone). The
``(l2, weight, threshold)`` triple with the best micro-F1 wins (ties: the better
recall@5, then the smaller ``l2``, then the smaller weight); the final linear model is the
one fitted on every training patient with that ``l2``, and the final net (when the weight
is above 0) is fitted on every training patient but the first fold's, on which it stops.
The test split is never read.

The decision rule: a label is predicted when its probability reaches the threshold, and
the most probable label when its probability reaches the *floor* (at most the threshold).
The models learn from visits with a label only (each has at least one), so the floor is
what tells a visit where something is diagnosed or prescribed from one where nothing is:
after the triple above is chosen, it is chosen on the training patients' visits with and
without labels together, out of fold (a visit without labels counts each label it is given
as a false positive), by the same micro-F1. Without such visits it is 0: the most probable
label always is, the rule before the floor (a check-up was always given a diagnosis).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

import heirloom
from heirloom_plugins.medical.linear import Rows, Weights, fit, probabilities
from heirloom_plugins.medical.net import Net, Settings, fit_net

if TYPE_CHECKING:
    import torch

THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))
#: ``(l2, threshold, floor)`` where nothing can be validated.
DEFAULT = (1.0, 0.5, 0.0)


def fold_of(patient: str, folds: int) -> int:
    digest = hashlib.sha256(f"heirloom.medical.fold:{patient}".encode()).digest()
    return int.from_bytes(digest[:8]) % folds


def decide(scores: torch.Tensor, threshold: float, floor: float = 0.0) -> torch.Tensor:
    """A boolean ``(examples, labels)`` mask: at or above the threshold, plus each row's best
    where it reaches ``floor`` (0: always)."""
    import torch

    chosen = scores >= threshold
    if len(scores):
        best = scores.max(1)
        chosen[torch.arange(len(scores)), best.indices] |= best.values >= floor
    return chosen


@attrs.frozen
class Selection:
    l2: float
    threshold: float
    #: JSON-able account of the search (stored in the model's training summary).
    summary: dict[str, Any]
    #: The model fitted on every training patient with ``l2`` (None: fit it).
    weights: Weights | None = None
    #: The net's weight in the average with the linear model, and the net (None when 0).
    blend: float = 0.0
    net: Net | None = None
    #: The probability at which the most probable label is selected (``decide``).
    floor: float = 0.0


def average(linear: torch.Tensor, net: Net | None, rows: Rows, blend: float) -> torch.Tensor:
    """The linear model's probabilities averaged with the net's at weight ``blend``."""
    if net is None or not blend:
        return linear
    return mix(linear, net.probabilities(rows), blend)


def mix(linear: torch.Tensor, net: torch.Tensor, blend: float) -> torch.Tensor:
    """Two models' probabilities averaged, the net's at weight ``blend``: the rule that
    selection scores on the folds and ``average`` serves."""
    return (1 - blend) * linear + blend * net


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
    fallback: tuple[float, float, float] = DEFAULT,
    blends: Sequence[float] = (0.0,),
    settings: Settings | None = None,
    blank: tuple[torch.Tensor, Sequence[str]] | None = None,
) -> Selection:
    """The best ``(l2, weight, threshold)`` by cross-validation over patients, then the floor
    on those and ``blank``, the features and patients of the visits without labels (module docstring).

    Fewer than two training patients cannot be split: ``fallback`` is used (a parent's
    choice when warm-starting, else ``DEFAULT``) without the net, and the summary says so.
    The net needs three folds (one to fit on, one to stop on, one to score); with fewer,
    the linear model is used alone.
    """
    import torch

    distinct = sorted(set(patients))
    folds = min(folds, len(distinct))
    if folds < 2 or len(grid) < 1:
        l2, threshold, floor = fallback
        summary = {"method": "fallback: fewer than two training patients", "l2": l2, "floor": floor}
        return Selection(l2, threshold, summary, floor=floor)
    blank_coo, blank_patients = blank if blank is not None else (None, ())
    assignment = {patient: fold_of(patient, folds) for patient in (*distinct, *blank_patients)}
    groups = [[i for i, p in enumerate(patients) if assignment[p] == fold] for fold in range(folds)]
    # the visits without labels each group's models predict: its patients'; a patient with none
    # labelled is in no model's training data, and the first group's models predict it
    slot = {fold: index for index, fold in enumerate(fold for fold, group in enumerate(groups) if group)}
    groups = [group for group in groups if group]
    blanks = [[i for i, p in enumerate(blank_patients) if slot.get(assignment[p], 0) == g] for g in range(len(groups))]
    everyone = range(len(patients))
    blends = sorted(set(blends)) if len(groups) >= 3 else [0.0]
    nets = max(blends) > 0
    progress.start(
        f"choosing l2{', the net weight' if nets else ''} and threshold on {len(groups)} validation folds",
        total=len(grid) * (len(groups) + 1) + (len(groups) + 1 if nets else 0),
    )
    settings = settings or Settings()
    dense = coo.to_dense() if nets else None
    net_out_of_fold = torch.zeros_like(targets)
    net_blank = torch.zeros(len(blank_patients), targets.shape[1])
    epochs = []
    for fold, held in enumerate(groups if nets else []):
        stop = groups[(fold + 1) % len(groups)]
        kept = sorted(set(everyone).difference(held, stop))
        net, epoch = fit_net(dense[kept], targets[kept], dense[stop], targets[stop], settings)
        net_out_of_fold[held] = net.probabilities(Rows.pick(coo, held))
        if blanks[fold]:
            net_blank[blanks[fold]] = net.probabilities(Rows.pick(blank_coo, blanks[fold]))
        epochs.append(epoch + 1)
        progress.advance()
    table = []
    full: dict[float, Weights] = {}
    scored: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    for l2 in sorted(grid):
        # the fit on every patient first (from the last l2's), then each fold from it: the
        # optima are close, so few iterations are needed, and the winner's is kept
        full[l2] = fit(Rows.of(coo), targets, prior, l2=l2, start=full[max(full)] if full else None)
        progress.advance()
        out_of_fold, blank_out = torch.zeros_like(targets), torch.zeros_like(net_blank)
        for held, unlabelled in zip(groups, blanks, strict=True):
            kept = sorted(set(everyone).difference(held))
            weights = fit(Rows.pick(coo, kept), targets[kept], prior, l2=l2, start=full[l2])
            out_of_fold[held] = probabilities(Rows.pick(coo, held), weights)
            if unlabelled:
                blank_out[unlabelled] = probabilities(Rows.pick(blank_coo, unlabelled), weights)
            progress.advance()
        scored[l2] = out_of_fold, blank_out
        for blend in blends:
            mixed = mix(out_of_fold, net_out_of_fold, blend)
            f1, recall, threshold = max((*_scores(mixed, targets, t), t) for t in THRESHOLDS)
            table.append({"l2": l2, "blend": blend, "threshold": threshold, "micro_f1": f1, "recall_at_5": recall})
            progress.log(
                f"l2 {l2:g}, net weight {blend:g}: threshold {threshold:.2f}, "
                f"validation micro-F1 {f1:.3f}, recall@5 {recall:.3f}"
            )
    best = max(table, key=lambda row: (row["micro_f1"], row["recall_at_5"], -row["l2"], -row["blend"]))
    out_of_fold, blank_out = scored[best["l2"]]
    floors = _floors(
        mix(out_of_fold, net_out_of_fold, best["blend"]),
        targets,
        mix(blank_out, net_blank, best["blend"]),
        best["threshold"],
    )
    floor = max(floors, key=lambda row: (row["micro_f1"], -row["floor"]))
    progress.log(
        f"floor {floor['floor']:.2f} for the most probable label: validation micro-F1 {floor['micro_f1']:.3f} over "
        f"the {len(patients)} visits with labels and {len(blank_patients)} without "
        f"(floor 0: {floors[0]['micro_f1']:.3f}); {floor['blank_given']} visit(s) without labels given one"
    )
    final = None
    if best["blend"] > 0:
        stop = groups[0]
        kept = sorted(set(everyone).difference(stop))
        final, epoch = fit_net(dense[kept], targets[kept], dense[stop], targets[stop], settings)
        epochs.append(epoch + 1)
    if nets:
        progress.advance()
    summary = {
        "method": "cross-validation over training patients",
        "folds": len(groups),
        "patients": len(distinct),
        "examples": len(patients),
        "grid": table,
        "micro_f1": best["micro_f1"],
        "recall_at_5": best["recall_at_5"],
        "blend": best["blend"],
        "floor": {**floor, "visits_without_labels": len(blank_patients), "grid": floors},
    }
    if nets:
        summary["net"] = {**attrs.asdict(settings), "epochs": epochs}
    return Selection(best["l2"], best["threshold"], summary, full[best["l2"]], best["blend"], final, floor["floor"])


def _floors(probs: torch.Tensor, targets: torch.Tensor, blank: torch.Tensor, threshold: float) -> list[dict[str, Any]]:
    """Each floor from 0 to ``threshold`` with its micro-F1 over the visits with labels (``probs``,
    ``targets``) and without (``blank``: every label given one is a false positive), and how
    many of those were given one. Without such visits, floor 0 alone: nothing to tell it by."""
    rows = []
    for floor in (0.0, *(t for t in THRESHOLDS if t <= threshold and len(blank))):
        chosen, given = decide(probs, threshold, floor).float(), decide(blank, threshold, floor)
        tp = float((chosen * targets).sum())
        f1 = 2 * tp / float(chosen.sum() + given.sum() + targets.sum()) if tp else 0.0
        rows.append({"floor": floor, "micro_f1": f1, "blank_given": int(given.any(1).sum())})
    return rows
