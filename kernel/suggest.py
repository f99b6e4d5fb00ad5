"""``; did you mean 'x'?``: the closest of the valid names to a mistyped one, for the error naming it.

It imports nothing of heirloom, so the converter (which the kernel's layers import) offers it too."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    folded = {choice.casefold(): choice for choice in reversed(list(choices))}  # PREDICT: predict, not labels
    return "".join(f"; did you mean {folded[c]!r}?" for c in difflib.get_close_matches(name.casefold(), folded, 1))
