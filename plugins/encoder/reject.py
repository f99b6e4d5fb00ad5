"""The out-of-scope rule: reject a prediction whose score is below a threshold chosen on
validation data that holds out-of-scope examples (never on test).

Every score is "higher is more in scope": the top softmax probability, with n-gram fusion
the top fused probability (``fused``; only when the fusion weight is above 0), the top cosine
similarity to a class prototype, the energy (log-sum-exp of the logits) and minus the
squared Mahalanobis distance to the nearest class mean of the training embeddings
(distance.py). For each, the threshold is the one that rejects the most out-of-scope
validation texts while in-scope validation accuracy (a rejected text counting as wrong)
stays within ``max_drop`` of the accuracy without rejection; the score that rejects more
wins. Pure Python: a few thousand scores, sorted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

SCORES = ("probability", "fused", "similarity", "energy", "mahalanobis")


@attrs.frozen
class Rule:
    """Reject when ``score`` < ``threshold``; the validation figures it was chosen on."""

    score: str
    threshold: float
    validation: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        return cls(str(data["score"]), float(data["threshold"]), dict(data.get("validation", {})))


def threshold_for(
    in_scope: Sequence[float], correct: Sequence[bool], out_of_scope: Sequence[float], max_drop: float
) -> tuple[float, float, float]:
    """``(threshold, out-of-scope recall, in-scope accuracy)`` of the best threshold.

    Thresholds are taken midway between neighbouring scores; the lowest one rejects
    nothing. Ties in recall keep the lower threshold (the higher accuracy).
    """
    total, floor = len(in_scope), sum(correct) / max(len(in_scope), 1) - max_drop
    events = sorted(
        [(s, 0, ok) for s, ok in zip(in_scope, correct, strict=True)] + [(s, 1, False) for s in out_of_scope]
    )
    best = (events[0][0] - 1e-6 if events else 0.0, 0.0, sum(correct) / max(total, 1))
    kept_correct, rejected_oos = sum(correct), 0
    for position, (score, kind, ok) in enumerate(events):
        if kind:
            rejected_oos += 1
        else:
            kept_correct -= ok
        following = events[position + 1][0] if position + 1 < len(events) else score + 1e-6
        if following == score:
            continue  # a threshold cannot fall between equal scores
        accuracy = kept_correct / max(total, 1)
        if accuracy < floor - 1e-9:  # 0.8 - 0.2 is 0.6000000000000001 in floating point
            break
        recall = rejected_oos / max(len(out_of_scope), 1)
        if recall > best[1]:
            best = ((score + following) / 2, recall, accuracy)
    return best


def choose(
    scores: dict[str, tuple[Sequence[float], Sequence[float]]], correct: Sequence[bool], max_drop: float
) -> tuple[Rule, dict[str, Rule]]:
    """The best rule over ``{score name: (in-scope scores, out-of-scope scores)}``, and
    every score's best rule (what the choice was made between, for the version's record)."""
    candidates = []
    for name, (in_scope, out_of_scope) in scores.items():
        threshold, recall, accuracy = threshold_for(in_scope, correct, out_of_scope, max_drop)
        baseline = sum(correct) / max(len(correct), 1)
        figures = {
            "oos_recall": recall,
            "in_scope_accuracy": accuracy,
            "accuracy_without_rejection": baseline,
            "in_scope_examples": len(in_scope),
            "oos_examples": len(out_of_scope),
        }
        candidates.append((recall, accuracy, Rule(name, threshold, figures)))
    return max(candidates, key=lambda c: (c[0], c[1]))[2], {rule.score: rule for _, _, rule in candidates}
