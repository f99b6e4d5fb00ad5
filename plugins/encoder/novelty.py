"""Lexical novelty: how much of a text's wording its predicted label never used in training.

An out-of-scope intent next to a known one (``top_up_reverted`` beside ``top_up_failed``)
lands inside the known intent's region of the embedding space, so the encoder's scores see
a confident answer. Its wording often gives it away: "reverted" is a word no training text
of ``top_up_failed`` used. The score of a text is minus the share of its word weight that
falls on words its predicted label's training texts never used; a word weighs
``log((labels + 1) / (labels using it + 1))`` (rare across labels: telling; unseen
anywhere: the most). On its own it rejects little (many in-scope texts use a new word);
mixed with the encoder's probability (reject.py) it added about 8 points of out-of-scope
recall at the same accuracy cost on Banking77's validation and test (docs/SUPPORT.md).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

#: Runs of letters and digits in any script, with apostrophes (``[a-z0-9']`` cut "préstamo"
#: into "pr" and "stamo" for a Spanish team), read in NFC (a copy-paste in NFD is the same text).
WORD = re.compile(r"(?:[^\W_]|')+")
# fmt: off
#: Lucene's English stop words, those BM25 (bm25s ``"en"``) drops: a text of only these says
#: nothing of an intent, though the label it is given may well have used them all.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
})
# fmt: on


def words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFC", text).lower())


class LabelWords:
    """The words each label's training texts use, and every word's weight."""

    def __init__(self, vocabularies: Sequence[frozenset[str]]):
        self.vocabularies = list(vocabularies)
        labels_using = Counter(word for vocabulary in self.vocabularies for word in vocabulary)
        self.unseen = math.log(len(self.vocabularies) + 1)
        self.weights = {word: self.unseen - math.log(count + 1) for word, count in labels_using.items()}

    @classmethod
    def fit(cls, texts: Sequence[str], targets: Sequence[int], labels: int) -> LabelWords:
        vocabularies: list[set[str]] = [set() for _ in range(labels)]
        for text, target in zip(texts, targets, strict=True):
            vocabularies[target].update(words(text))
        return cls([frozenset(vocabulary) for vocabulary in vocabularies])

    def scores(self, texts: Sequence[str], predicted: Sequence[int]) -> list[float]:
        """Minus the share of each text's word weight on words ``predicted[i]`` never used
        (0: every word known to that label; -1: none). A text without words of any weight (an
        emoji, "???", only words every label uses) or of only stop words ("the and of") scores
        -1: nothing in it says it belongs, and at 0 a mixture rule could never reject it,
        whatever its probability."""
        result = []
        for text, label in zip(texts, predicted, strict=True):
            found = words(text)
            weighted = [(self.weights.get(word, self.unseen), word) for word in found]
            total = sum(weight for weight, _ in weighted)
            vocabulary = self.vocabularies[label]
            foreign = sum(weight for weight, word in weighted if word not in vocabulary)
            meaningless = not total or STOP_WORDS.issuperset(found)
            result.append(-1.0 if meaningless else -foreign / total)
        return result

    def to_json(self) -> list[list[str]]:
        """Per label (in the model's label order), its words, sorted."""
        return [sorted(vocabulary) for vocabulary in self.vocabularies]

    @classmethod
    def from_json(cls, data: list[list[str]]) -> LabelWords:
        return cls([frozenset(map(str, vocabulary)) for vocabulary in data])
