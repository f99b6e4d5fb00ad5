"""Mahalanobis distance to class means with one shared covariance (Lee et al. 2018;
Podolskiy et al. 2021 for fine-tuned encoders on intent data): a text can sit between two
known intents (low probability, yet in scope) or far from all of them (out of scope), and
only a distance tells the two apart. It is one candidate of the reject rule, chosen on
validation: on Banking77's held-out intents, which sit next to known ones, the softmax
probability wins (docs/SUPPORT.md has every candidate's figures).

Fitted on the training texts' embeddings by the model that will use it; the covariance is
shrunk towards a multiple of the identity so it stays invertible with few texts per label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Weight of the identity (scaled by the mean variance) added to the covariance.
SHRINKAGE = 0.01


def fit_gaussian(embedded: torch.Tensor, targets: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(means [classes, hidden], precision [hidden, hidden])`` of ``embedded`` texts with
    class indices ``targets`` (every class has texts: the labels come from them)."""
    import torch

    data = embedded.double()
    counts = torch.bincount(targets, minlength=classes).clamp(min=1).to(data.dtype)
    means = torch.zeros(classes, data.shape[1], dtype=data.dtype, device=data.device)
    means.index_add_(0, targets, data)
    means /= counts[:, None]
    centred = data - means[targets]
    covariance = centred.T @ centred / max(len(data), 1)
    covariance += (
        SHRINKAGE
        * covariance.diagonal().mean().clamp(min=1e-12)
        * torch.eye(len(covariance), dtype=data.dtype, device=data.device)
    )
    return means.float(), torch.linalg.inv(covariance).float()


def nearest_distance(embedded: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance from each text to its nearest class mean, ``[texts]``."""
    projected = embedded @ precision
    squared = (projected * embedded).sum(1)[:, None] - 2 * projected @ means.T + ((means @ precision) * means).sum(1)
    return squared.min(1).values.clamp(min=0)
