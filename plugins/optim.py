"""L-BFGS as the convex linear models here use it (the n-gram regression, the medical
heads): full batch, step length from a strong Wolfe line search, a short history."""

from __future__ import annotations

import sys
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

    _untraced_without_dynamo()
    return torch.optim.LBFGS(
        list(parameters),
        lr=1,
        max_iter=iterations,
        history_size=HISTORY,
        line_search_fn="strong_wolfe",
        tolerance_grad=tolerance_grad,
        tolerance_change=tolerance_change,
    )


def _untraced_without_dynamo() -> None:
    """Spare the import of ``torch._dynamo`` (2 s of CPU: sympy, its trace rules) that an optimiser's first
    ``add_param_group`` and ``zero_grad`` cost, half of a small ``heirloom train``. torch wraps them in
    ``torch._disable_dynamo``, which imports dynamo at the first call only to mark them "never trace", and keeps
    that marked function on the function; where dynamo was never imported nothing traces, so the mark is the
    function itself (heirloom compiles nothing). L-BFGS's ``step`` asks dynamo nothing; AdamW's imports it."""
    if "torch._dynamo" in sys.modules:
        return
    import torch._compile

    wrapper = torch._compile._disable_dynamo(lambda: None).__code__
    for method in vars(torch.optim.Optimizer).values():
        if getattr(method, "__code__", None) is wrapper and hasattr(method, "__wrapped__"):
            vars(method.__wrapped__).setdefault("__dynamo_disable", method.__wrapped__)
