"""What a stored hybrid recommender's values must be, checked when it loads.

The shape checks of ``Fitted.from_state`` let through tensors of the right shape holding
what ``state()`` never writes (checker h345 F3, F4): a CSR ``indptr`` ending at 10**12 (eval
asked for 3.6 TiB), an item position past the catalogue (IndexError tracebacks, a daemon
"ready" that answered INTERNAL), NaN or infinite weights and int8 ones (a known user got
``{"items": []}``, with nothing said), a user or item id stored twice. Each is refused with
the tensor or id list named, as a wrong shape is. Every check is one pass over a tensor, cheap
next to reading it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import heirloom

#: Each tensor's dtype, as ``Fitted.state()`` writes it.
DTYPES = {
    **dict.fromkeys(
        ("item_weights", "text_map", "precision_diagonal", "popularity", "idf", "text_values", "history_weights"),
        "float32",
    ),
    **dict.fromkeys(
        (
            "warm_items",
            "text_indptr",
            "text_indices",
            "history_indptr",
            "history_items",
            "validation_indptr",
            "validation_items",
        ),
        "int64",
    ),
}
#: ``(indptr, indices)`` of each CSR matrix a state keeps.
CSR = (("history_indptr", "history_items"), ("text_indptr", "text_indices"), ("validation_indptr", "validation_items"))


def check(tensors: dict[str, np.ndarray], items: int, buckets: int, ids: dict[str, Sequence[Any]], what: str) -> None:
    """Refuse ``tensors`` (of a catalogue of ``items`` items, ``buckets`` text buckets) that ``state()``
    could not have written, and ``ids`` (a metadata list's name -> its ids) that name one twice."""
    tensors = {name: t for name, t in tensors.items() if name in DTYPES}
    wrong = [
        f"{name} is {t.dtype}, expected {DTYPES[name]}" for name, t in tensors.items() if str(t.dtype) != DTYPES[name]
    ]
    if wrong:
        raise heirloom.HeirloomError(f"the {what} has tensors of another dtype: {'; '.join(wrong)}")
    problems = [
        f"{name} holds NaN or infinite values" for name, t in tensors.items() if t.dtype.kind == "f" and not _finite(t)
    ]
    if (
        "precision_diagonal" in tensors
        and len(tensors["precision_diagonal"])
        and tensors["precision_diagonal"].min() <= 0
    ):
        problems.append("precision_diagonal holds values that are not positive (it is a divisor)")
    for indptr, indices in CSR:
        if indptr in tensors:
            problems += _csr(tensors[indptr], tensors[indices], indptr, indices)
    bounds = {"history_items": items, "validation_items": items, "warm_items": items, "text_indices": buckets}
    problems += [
        f"{name} holds positions outside [0, {bound}) ({'items' if bound == items else 'buckets'})"
        for name, bound in bounds.items()
        if name in tensors and len(tensors[name]) and (tensors[name].min() < 0 or tensors[name].max() >= bound)
    ]
    if "warm_items" in tensors and bool((np.diff(tensors["warm_items"]) <= 0).any()):
        problems.append("warm_items is not strictly increasing")
    for name, values in ids.items():
        if (twice := _twice(values)) is not None:
            problems.append(f"{name} {twice}")
    if problems:
        raise heirloom.HeirloomError(f"the {what} is damaged: {'; '.join(problems)}")


def _finite(tensor: np.ndarray) -> bool:
    """Whether every value is finite: a float64 sum is NaN or infinite otherwise (float32 values
    cannot overflow it), without an array of flags as large as the tensor."""
    return bool(np.isfinite(tensor.sum(dtype=np.float64)))


def _csr(indptr: np.ndarray, indices: np.ndarray, indptr_name: str, indices_name: str) -> list[str]:
    """What is wrong with a CSR matrix: ``indptr`` starts at 0, never decreases and ends at
    ``len(indices)``; each row's indices increase (``Histories.of`` and the tower keep them sorted)."""
    if not len(indptr) or indptr[0] != 0 or indptr[-1] != len(indices) or bool((np.diff(indptr) < 0).any()):
        return [f"{indptr_name} must start at 0, never decrease and end at {len(indices)} (len({indices_name}))"]
    steps = np.diff(indices) > 0
    ends = indptr[1:-1]
    steps[ends[(ends > 0) & (ends < len(indices))] - 1] = True  # a row's last index to the next row's first
    return [] if steps.all() else [f"{indices_name} repeats or disorders a row's positions"]


def _twice(values: Iterable[Any]) -> str | None:
    """What is wrong with a list of ids: one that is no string, or one named twice; None if nothing."""
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            return f"holds {value!r:.80}, not a string id"
        if value in seen:
            return f"names {value!r:.80} more than once"
        seen.add(value)
    return None
