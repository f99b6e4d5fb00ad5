"""The out-of-scope rule: reject a prediction whose score is below a threshold chosen on
validation data that holds out-of-scope examples (never on test).

Every score is "higher is more in scope": the top softmax probability, with n-gram fusion
the top fused probability (``fused``; only when the fusion weight is above 0), the top cosine
similarity to a class prototype, the energy (log-sum-exp of the logits), minus the
squared Mahalanobis distance to the nearest class mean of the training embeddings
(distance.py) and the lexical novelty of the text for its predicted label (novelty.py).
Mixtures of the novelty with each other score compete too: ``(1 - w) z(score) + w
z(novelty)``, each z-scored by its mean and spread over the in-scope validation texts,
for ``w`` in MIX_WEIGHTS (named ``probability+novelty`` and so on). For each candidate, the
threshold is the one that rejects the most out-of-scope validation texts while in-scope
validation accuracy (a rejected text counting as wrong) stays within ``max_drop`` of the
accuracy without rejection; the candidate that rejects more wins. Pure Python: a few
thousand scores, sorted once per candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

SCORES = ("probability", "fused", "similarity", "energy", "mahalanobis", "novelty")
NOVELTY = "novelty"
#: Weights of the novelty in a mixture with another score.
MIX_WEIGHTS = (0.3, 0.4, 0.5, 0.6)
#: Labels a reject option needs: one held out to stand in for out-of-scope texts, two to learn.
MIN_LABELS_TO_REJECT = 3
#: Fewer in-scope validation texts than this make a threshold a guess (a warning).
FEW_VALIDATION_TEXTS = 30


def calibration_count(wanted: int, labels: int) -> int:
    """How many of ``labels`` to hold out as stand-ins for out-of-scope texts: ``wanted``, but
    at most a quarter of them (at least one), so a small label set keeps most to learn from."""
    return max(1, min(wanted, labels // 4))


@attrs.frozen
class Rule:
    """Reject when ``score`` < ``threshold``; the validation figures it was chosen on. A
    mixture's ``mix`` holds ``{score: [weight, mean, spread]}`` of its two parts."""

    score: str
    threshold: float
    validation: dict[str, float]
    mix: dict[str, list[float]] | None = None

    def scores_needed(self) -> tuple[str, ...]:
        return tuple(self.mix) if self.mix else (self.score,)

    def values(self, outputs: dict[str, Any]) -> list[float]:
        """The rule's score of every text, from ``outputs`` (each score's values by name)."""
        if not self.mix:
            return outputs[self.score]
        parts = [
            [weight * (value - mean) / spread for value in outputs[name]]
            for name, (weight, mean, spread) in self.mix.items()
        ]
        return [sum(column) for column in zip(*parts, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        mix = data.get("mix")
        return cls(
            str(data["score"]),
            float(data["threshold"]),
            dict(data.get("validation", {})),
            {str(name): [float(v) for v in part] for name, part in mix.items()} if mix else None,
        )


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


def mixtures(
    scores: dict[str, tuple[Sequence[float], Sequence[float]]],
) -> dict[str, tuple[dict[str, list[float]], tuple[list[float], list[float]]]]:
    """``{"score+novelty@w": (mix, (in-scope, out-of-scope mixed scores))}`` for every
    other score and weight, z-scored on the in-scope texts; nothing without a novelty."""
    if NOVELTY not in scores:
        return {}
    moments = {}
    for name, (in_scope, _) in scores.items():
        mean = sum(in_scope) / max(len(in_scope), 1)
        spread = math.sqrt(sum((v - mean) ** 2 for v in in_scope) / max(len(in_scope), 1)) or 1.0
        moments[name] = (mean, spread)
    result = {}
    for name in scores:
        if name == NOVELTY:
            continue
        for weight in MIX_WEIGHTS:
            mix = {name: [1 - weight, *moments[name]], NOVELTY: [weight, *moments[NOVELTY]]}
            rule = Rule(f"{name}+{NOVELTY}", 0.0, {}, mix)
            halves = tuple(rule.values({n: scores[n][side] for n in mix}) for side in (0, 1))
            result[f"{name}+{NOVELTY}@{weight:g}"] = (mix, halves)
    return result


def choose(
    scores: dict[str, tuple[Sequence[float], Sequence[float]]], correct: Sequence[bool], max_drop: float
) -> tuple[Rule, dict[str, Rule]]:
    """The best rule over ``{score name: (in-scope scores, out-of-scope scores)}`` and their
    mixtures with the novelty, and the best rule of each (what the choice was made
    between, for the version's record; a mixture's best weight only)."""
    candidates, best_of = [], {}
    mixed = mixtures(scores)
    everything = {name: (None, halves) for name, halves in scores.items()} | mixed
    for key, (mix, (in_scope, out_of_scope)) in everything.items():
        name = key.split("@")[0]
        threshold, recall, accuracy = threshold_for(in_scope, correct, out_of_scope, max_drop)
        baseline = sum(correct) / max(len(correct), 1)
        figures = {
            "oos_recall": recall,
            "in_scope_accuracy": accuracy,
            "accuracy_without_rejection": baseline,
            "in_scope_support": len(in_scope),
            "oos_support": len(out_of_scope),
        }
        candidate = (recall, accuracy, Rule(name, threshold, figures, mix))
        candidates.append(candidate)
        if name not in best_of or candidate[:2] > best_of[name][:2]:
            best_of[name] = candidate
    return max(candidates, key=lambda c: (c[0], c[1]))[2], {name: c[2] for name, c in best_of.items()}
