"""Near-duplicate examples: a held-out text that a training record repeats with small edits.

A text is reduced to its letters and digits (NFKC, case folded; spacing, punctuation and
invisible characters gone, so gluing words with a zero-width space or splitting them changes
nothing) and compared by the Jaccard similarity of its character 5-grams: one word added,
dropped or changed in a sentence leaves most of them. Pairs at or above the threshold are
found by prefix filtering (Bayardo et al., "Scaling up all pairs similarity search", 2007):
only examples sharing one of a text's rarest grams are compared with it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

#: Characters per gram: a word's change touches about this many grams on each side.
GRAM = 5
_LETTERS = re.compile(r"\w+")

Grams = frozenset[tuple[int, str]]


def grams(values: Iterable[str]) -> Grams:
    """The 5-grams of each value's letters, tagged with the value's place (text vs title)."""
    found: set[tuple[int, str]] = set()
    for place, value in enumerate(values):
        letters = "".join(_LETTERS.findall(unicodedata.normalize("NFKC", value).casefold()))
        found.update((place, letters[i : i + GRAM]) for i in range(max(1, len(letters) - GRAM + 1)))
    return frozenset(found)


class NearDuplicates:
    """Held-out examples' grams, indexed to tell whether another text is one of them."""

    def __init__(self, examples: Iterable[Grams], threshold: float):
        self.threshold = threshold
        self.examples = list(examples)
        self._counts = Counter(gram for example in self.examples for gram in example)
        self._index: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
        for number, example in enumerate(self.examples):
            for gram in self._prefix(example):
                self._index[gram].append(number)

    def __contains__(self, text: Grams) -> bool:
        """Whether some example's grams are at least ``threshold`` similar (Jaccard) to ``text``'s."""
        candidates = {number for gram in self._prefix(text) for number in self._index.get(gram, ())}
        for number in candidates:
            example = self.examples[number]
            shared = len(text & example)
            if shared >= self.threshold * (len(text) + len(example) - shared) - 1e-9:
                return True
        return False

    def _prefix(self, text: Grams) -> list[tuple[int, str]]:
        """The rarest grams of ``text``, as many as a match at the threshold must share one of:
        two sets this similar share at least ``threshold`` of the larger's grams."""
        ordered = sorted(text, key=lambda gram: (self._counts.get(gram, 0), gram))
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered) - 1e-9) + 1]
