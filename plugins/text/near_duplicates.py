"""Near-duplicate examples: a held-out text that a training record repeats with small edits.

A text is reduced to its letters and digits (folded: NFKC, the marks Arabic and Hebrew write
only sometimes and the tatweel gone; case folded; spacing, punctuation and invisible
characters gone, so gluing words with a zero-width space or splitting them changes nothing)
and compared by the Jaccard similarity of its character 5-grams: one word added, dropped or
changed in a long sentence leaves most of them. A text of a few words or more whose words nearly
all come from one example repeats it too (containment): a sentence cut in halves, or its
words reordered, keeps every word a bag-of-words model learns from, and so does a word dropped,
or one added or changed in a text of about 10 words or more. One changed in a shorter text makes
a new text (in a short query one word is often the intent: docs/TEXT.md). A text holding an
example of a few words word for word repeats it too (two held-out sentences sent as one). In a text mostly of a
script written without spaces (Chinese, Japanese, Thai) a word is two characters and a gram
too, as CJK search engines index them. Pairs are found by prefix filtering (Bayardo et al.,
"Scaling up all pairs similarity search", 2007): only examples sharing one of a text's
rarest grams, or words, are compared with it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import attrs

from heirloom_plugins.ngrams.folding import folded
from heirloom_plugins.spaceless import SPACELESS, letter_runs, words_of

#: Characters per gram: a word's change touches about this many grams on each side.
GRAM = 5
#: Containment: a text of at least CONTAINED_WORDS distinct words, CONTAINED of them in one example.
CONTAINED_WORDS = 4
CONTAINED = 0.9

#: Characters per gram in a text mostly of scripts written without spaces.
GRAM_SPACELESS = 2

#: Grams and words as hashes of ``(place, text)``: a tenth of the memory of the tuples (3,000
#: held-out documents of 1,700 characters took 768 MB), within one process, where they are compared.
Grams = frozenset[int]


@attrs.frozen
class Text:
    """What a text is compared by: the 5-grams of its letters, and its distinct words (each
    tagged with its value's place, text vs title), and its words in order (``letters``)."""

    grams: Grams
    words: Grams
    letters: str


def letter_words(value: str) -> list[str]:
    """The runs of letters and digits of ``value``, folded and casefolded: what texts are compared by."""
    return letter_runs().findall(folded(value).casefold())


def text_of(values: Iterable[str]) -> Text:
    """The grams and words of a record's values (its ``example_keys``, in order)."""
    grams: set[int] = set()
    words: set[int] = set()
    spaced = []
    for place, value in enumerate(values):
        found = letter_words(value)
        spaced.append(" ".join(found))
        letters = "".join(found)
        spaceless = sum(map(len, SPACELESS.findall(letters)))
        gram = GRAM_SPACELESS if 2 * spaceless > len(letters) else GRAM
        starts = range(max(1, len(letters) - gram + 1)) if letters else ()  # no letters (emoji, "!!!"): no grams
        grams.update(hash((place, letters[i : i + gram])) for i in starts)
        words.update(hash((place, word)) for run in found for word in words_of(run))
    return Text(frozenset(grams), frozenset(words), "\x1f".join(spaced))


class NearDuplicates:
    """Held-out examples, indexed to tell whether another text is one of them."""

    def __init__(self, examples: Iterable[Text], threshold: float):
        self.threshold = threshold
        self.examples = list(examples)
        self._counts = Counter(gram for example in self.examples for gram in example.grams)
        self._index: defaultdict[int, list[int]] = defaultdict(list)
        self._word_counts = Counter(word for example in self.examples for word in example.words)
        self._word_index: defaultdict[int, list[int]] = defaultdict(list)
        self._inside_index: defaultdict[int, list[int]] = defaultdict(list)  # by each example's rarest word
        for number, example in enumerate(self.examples):
            for gram in _prefix(example.grams, self._counts, threshold):
                self._index[gram].append(number)
            for word in example.words:
                self._word_index[word].append(number)
            if len(example.words) >= CONTAINED_WORDS:  # all its words are in a text that holds it
                self._inside_index[_prefix(example.words, self._word_counts, 1.0)[0]].append(number)

    def __contains__(self, text: Text) -> bool:
        """Whether some example is at least ``threshold`` similar (Jaccard of grams) to ``text``,
        or holds nearly all of its words (``text`` having a few at least)."""
        rarest = _prefix(text.grams, self._counts, self.threshold)
        candidates = {number for gram in rarest for number in self._index.get(gram, ())}
        low, high = self.threshold * len(text.grams), len(text.grams) / self.threshold  # Jaccard's size bounds
        for number in candidates:
            example = self.examples[number].grams
            if not low - 1e-9 <= len(example) <= high + 1e-9:
                continue
            shared = len(text.grams & example)
            if shared >= self.threshold * (len(text.grams) + len(example) - shared) - 1e-9:
                return True
        if self._holds_an_example(text):
            return True
        if len(text.words) < CONTAINED_WORDS:
            return False
        rarest = _prefix(text.words, self._word_counts, CONTAINED)
        needed = CONTAINED * len(text.words) - 1e-9
        candidates = {number for word in rarest for number in self._word_index.get(word, ())}
        examples = (self.examples[number].words for number in candidates)
        return any(len(words) >= needed and len(text.words & words) >= needed for words in examples)

    def _holds_an_example(self, text: Text) -> bool:
        """Whether ``text`` holds an example of a few words or more, word for word: two held-out
        sentences sent as one feedback text each trained (test accuracy 0.79 -> 0.92), and so did
        a held-out Chinese sentence with two English words after it."""
        candidates = {number for word in text.words for number in self._inside_index.get(word, ())}
        return any(self.examples[number].letters in text.letters for number in candidates)


def _prefix(items: Grams, counts: Counter[int], share: float) -> list[int]:
    """The rarest of ``items``, as many as a set sharing ``share`` of them must hold one of
    (two sets ``share`` similar share at least that much of the larger)."""
    ordered = sorted(items, key=lambda item: (counts.get(item, 0), item))
    return ordered[: len(ordered) - math.ceil(share * len(ordered) - 1e-9) + 1]
