"""A label in a request body (feedback, a person's resolution of a handoff), refused as
INVALID_ARGUMENT at its field when it breaks the rules of :mod:`heirloom.store.labels`."""

from __future__ import annotations

from collections.abc import Sequence

from heirloom.store.labels import label_problem
from heirloom.wire.protocol import INVALID_ARGUMENT, RequestError


def check_label(
    label: str, known: Sequence[str], field: str, *, allow_new: bool = False, pattern: str | None = None
) -> bool:
    """Whether ``label`` is new to a model predicting ``known``; INVALID_ARGUMENT at ``field``
    when ``label_problem`` finds fault with it (blank, an unprintable character, not NFC, new
    where new labels are not allowed or do not match ``pattern``)."""
    if (problem := label_problem(label, known, field, allow_new=allow_new, pattern=pattern)) is not None:
        raise RequestError(INVALID_ARGUMENT, problem, field)
    return label not in known
