"""L-BFGS as the convex linear models here use it (the n-gram regression, the medical
heads): full batch, step length from a strong Wolfe line search, a short history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Curvature pairs kept: more costs memory (two tensors the size of the weights each) for little.
HISTORY = 10


def lbfgs(
    parameters: Sequence[torch.Tensor], iterations: int, tolerance_grad: float, tolerance_change: float
) -> torch.optim.LBFGS:
    """An optimiser whose ``step(objective)`` runs up to ``iterations`` iterations."""
    import torch

    return torch.optim.LBFGS(
        list(parameters),
        lr=1,
        max_iter=iterations,
        history_size=HISTORY,
        line_search_fn="strong_wolfe",
        tolerance_grad=tolerance_grad,
        tolerance_change=tolerance_change,
    )
