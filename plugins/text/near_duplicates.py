"""Near-duplicate examples: a held-out text that a training record repeats with small edits.

A text is reduced to its letters and digits (NFKC, case folded; spacing, punctuation and
invisible characters gone, so gluing words with a zero-width space or splitting them changes
nothing) and compared by the Jaccard similarity of its character 5-grams: one word added,
dropped or changed in a sentence leaves most of them. A text of a few words or more whose
words nearly all come from one example repeats it too (containment): a sentence cut in
halves, or its words reordered, keeps every word a bag-of-words model learns from. Pairs
are found by prefix filtering (Bayardo et al., "Scaling up all pairs similarity search",
2007): only examples sharing one of a text's rarest grams, or words, are compared with it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

import attrs

#: Characters per gram: a word's change touches about this many grams on each side.
GRAM = 5
#: Containment: a text of at least CONTAINED_WORDS distinct words, CONTAINED of them in one example.
CONTAINED_WORDS = 4
CONTAINED = 0.9
_LETTERS = re.compile(r"\w+")

Grams = frozenset[tuple[int, str]]


@attrs.frozen
class Text:
    """What a text is compared by: the 5-grams of its letters, and its distinct words (each
    tagged with its value's place, text vs title)."""

    grams: Grams
    words: Grams


def text_of(values: Iterable[str]) -> Text:
    """The grams and words of a record's values (its ``example_keys``, in order)."""
    grams: set[tuple[int, str]] = set()
    words: set[tuple[int, str]] = set()
    for place, value in enumerate(values):
        found = _LETTERS.findall(unicodedata.normalize("NFKC", value).casefold())
        letters = "".join(found)
        grams.update((place, letters[i : i + GRAM]) for i in range(max(1, len(letters) - GRAM + 1)))
        words.update((place, word) for word in found)
    return Text(frozenset(grams), frozenset(words))


class NearDuplicates:
    """Held-out examples, indexed to tell whether another text is one of them."""

    def __init__(self, examples: Iterable[Text], threshold: float):
        self.threshold = threshold
        self.examples = list(examples)
        self._counts = Counter(gram for example in self.examples for gram in example.grams)
        self._index: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
        self._word_counts = Counter(word for example in self.examples for word in example.words)
        self._word_index: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
        for number, example in enumerate(self.examples):
            for gram in _prefix(example.grams, self._counts, threshold):
                self._index[gram].append(number)
            for word in example.words:
                self._word_index[word].append(number)

    def __contains__(self, text: Text) -> bool:
        """Whether some example is at least ``threshold`` similar (Jaccard of grams) to ``text``,
        or holds nearly all of its words (``text`` having a few at least)."""
        rarest = _prefix(text.grams, self._counts, self.threshold)
        candidates = {number for gram in rarest for number in self._index.get(gram, ())}
        for number in candidates:
            example = self.examples[number].grams
            shared = len(text.grams & example)
            if shared >= self.threshold * (len(text.grams) + len(example) - shared) - 1e-9:
                return True
        if len(text.words) < CONTAINED_WORDS:
            return False
        rarest = _prefix(text.words, self._word_counts, CONTAINED)
        needed = CONTAINED * len(text.words) - 1e-9
        candidates = {number for word in rarest for number in self._word_index.get(word, ())}
        return any(len(text.words & self.examples[number].words) >= needed for number in candidates)


def _prefix(items: Grams, counts: Counter[tuple[int, str]], share: float) -> list[tuple[int, str]]:
    """The rarest of ``items``, as many as a set sharing ``share`` of them must hold one of
    (two sets ``share`` similar share at least that much of the larger)."""
    ordered = sorted(items, key=lambda item: (counts.get(item, 0), item))
    return ordered[: len(ordered) - math.ceil(share * len(ordered) - 1e-9) + 1]
