"""Fusing the encoder's probabilities with a hashed n-gram regression's (ngrams/head.py):
``(1 - weight) * encoder + weight * n-grams``, the weight chosen on validation.

The two read texts differently (meaning against exact words and spellings) and make
different mistakes, so their average beats either alone where the intents differ by a word
(Banking77: docs/SUPPORT.md). A weight of 0 is one of the choices: where the n-grams add
nothing on validation, the encoder answers alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: The weights validation chooses among (the n-grams' share of the fused probabilities).
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def fuse(encoder: torch.Tensor, lexical: torch.Tensor, weight: float) -> torch.Tensor:
    return (1 - weight) * encoder + weight * lexical.to(encoder.device)


def choose_weight(
    encoder: torch.Tensor, lexical: torch.Tensor, targets: torch.Tensor
) -> tuple[float, dict[str, dict[str, float]]]:
    """The weight with the best validation accuracy (then the lower log-loss, then the
    smaller weight), and every weight's figures for the version's record."""
    import torch

    figures, ranked = {}, []
    for weight in WEIGHTS:
        fused = fuse(encoder, lexical, weight)
        accuracy = float((fused.argmax(1) == targets).float().mean())
        loss = float(-fused[torch.arange(len(targets)), targets].clamp_min(1e-12).log().mean())
        figures[f"{weight:g}"] = {"validation_accuracy": accuracy, "validation_loss": loss}
        ranked.append((accuracy, -round(loss, 6), -weight))  # rounding: equal losses tie, to the smaller weight
    return -max(ranked)[2], figures
