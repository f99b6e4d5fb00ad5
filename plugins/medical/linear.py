"""One-vs-rest logistic regression over sparse feature rows, fitted full-batch with L-BFGS.

Each label has its own sigmoid over ``x @ W + b``, so a probability means "this code is
among the encounter's codes" and several labels can pass a threshold together. The
penalty ``l2 / (2n) * |W - prior|^2`` pulls toward a prior: zeros, or a parent's weights
on the columns and labels it knew, and then the biases of those labels too (from scratch
the biases are free: a bias pulled to 0 would start every label at a probability of 0.5).
That is what makes a warm start keep what the parent learnt where the new data says
nothing, and ``l2`` (chosen on validation folds) how far the new data may move it. The
objective is convex, so L-BFGS from the prior finds the same optimum every time: no
learning rate, no seeds.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import attrs

from heirloom_plugins.optim import lbfgs

if TYPE_CHECKING:
    import torch

ITERATIONS = 300


@attrs.frozen
class Weights:
    weight: torch.Tensor  # (features, labels)
    bias: torch.Tensor  # (labels,)
    #: As a prior: 1.0 for each label whose bias it holds (a parent's), which the penalty pulls too; else None
    anchored: torch.Tensor | None = None


@attrs.frozen
class Rows:
    """A sparse ``(examples, features)`` matrix with its transpose, for fast gradients."""

    matrix: torch.Tensor
    transpose: torch.Tensor

    @classmethod
    def of(cls, coo: torch.Tensor) -> Rows:
        """From a sparse COO matrix (``Vocabulary.matrix``)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
            return cls(coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr())

    @classmethod
    def pick(cls, coo: torch.Tensor, indices: list[int]) -> Rows:
        """The rows ``indices`` of a sparse COO matrix."""
        import torch

        return cls.of(coo.index_select(0, torch.tensor(indices, dtype=torch.long)).coalesce())

    def __len__(self) -> int:
        return self.matrix.shape[0]


def probabilities(rows: Rows, weights: Weights) -> torch.Tensor:
    import torch

    return torch.sigmoid(rows.matrix @ weights.weight + weights.bias)


def fit(
    rows: Rows,
    targets: torch.Tensor,
    prior: Weights,
    *,
    l2: float,
    start: Weights | None = None,
    iterations: int = ITERATIONS,
) -> Weights:
    """Minimise the mean (over examples) summed binary cross-entropy plus the pull toward
    ``prior``, from ``start`` (default: the prior; the optimum is the same, a close start
    only saves iterations). Deterministic for given inputs."""
    import torch
    import torch.nn.functional as F

    n = max(len(rows), 1)
    strength = l2 / n
    weight = (start or prior).weight.clone()
    bias = (start or prior).bias.clone()
    anchored = prior.anchored if prior.anchored is not None else torch.zeros_like(bias)
    optimizer = lbfgs([weight, bias], iterations, tolerance_grad=1e-6, tolerance_change=1e-9)

    def objective() -> torch.Tensor:
        logits = rows.matrix @ weight + bias
        residual = (torch.sigmoid(logits) - targets) / n
        shift = weight - prior.weight
        weight.grad = rows.transpose @ residual + strength * shift
        pulled = (bias - prior.bias) * anchored
        bias.grad = residual.sum(0) + strength * pulled
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / n
        return loss + strength / 2 * ((shift * shift).sum() + (pulled * pulled).sum())

    if n and len(targets):
        optimizer.step(objective)
    return Weights(weight, bias)
