"""Hashed text features that need no vocabulary download: word n-grams and character
n-grams of each word (fastText's subwords, scikit-learn's ``char_wb``), hashed into a
fixed number of buckets so an unseen word still lands on its subwords' weights.

Word n-grams land on even buckets and character n-grams on odd ones, so the two views
never collide and each can be normalised on its own (as scikit-learn's FeatureUnion of a
word and a ``char_wb`` vectoriser does). One shared norm lets the many character n-grams
drown the few words; normalising each view lowered the validation loss on PhraseBank
AllAgree (0.282 -> 0.273) and Banking77 (0.415 -> 0.369), at a slightly higher one on
PhraseBank 50Agree (0.517 -> 0.526).

Pure Python (no torch): a word's features are computed once and cached, which makes
featurising a sentence a handful of dict look-ups plus one hash per word n-gram.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib
from array import array
from collections.abc import MutableSequence
from typing import Any

import attrs

from heirloom import HeirloomError
from heirloom_plugins.ngrams.folding import folded, translation_table

_TOKEN = re.compile(r"\w+|[^\w\s]")
#: Most ``buckets`` a model type takes: prediction keeps a 4-byte row per bucket (64 MiB here), past
#: 2^63 the hashing overflowed torch (checker 277), and a stored state's settings above it are damaged
#: (3e8 took 1.4 GB at eval, 1e12 a MemoryError traceback: h340).
MAX_BUCKETS = 1 << 24
#: Bytes the word cache may hold (about 32 per character of a word, with the default n-grams):
#: counted in bytes, as clients choose the words, and a 10,000-character one costs 320 KB.
_WORD_CACHE_BYTES = 64 << 20
#: What a cached word costs beyond its features: the dict entry, the tuple, the array, the str.
_ENTRY_BYTES = 250
#: Odd 64-bit multiplier (golden ratio) mixing word hashes into an n-gram hash.
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _hash(kind: str, text: str) -> int:
    return zlib.crc32(f"{kind}\x1f{text}".encode())


@attrs.frozen
class HashingSettings:
    """Everything that decides which bucket a text's features land in.

    Two models can share weights only if these are equal: a parent trained with other
    settings puts the same text in other rows.
    """

    buckets: int
    word_ngrams: int
    char_ngrams: tuple[int, int]
    lowercase: bool
    #: Text folded first (``folding.folded``); states from before it was a setting read False.
    fold: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {**attrs.asdict(self), "char_ngrams": list(self.char_ngrams)}
        if not self.fold:  # as states stored before it: an identical retrain stays identical
            del data["fold"]
        return data

    @classmethod
    def from_json(cls, data: Any, what: str = "the state") -> HashingSettings:
        """Settings stored in a state, checked: they decide every bucket, and a damaged value
        would otherwise fail deep in the feature code."""
        try:
            settings = cls(**{**data, "char_ngrams": tuple(data["char_ngrams"])})
            low, high = settings.char_ngrams
            valid = (
                type(settings.buckets) is int
                and 2 <= settings.buckets <= MAX_BUCKETS
                and type(settings.word_ngrams) is int
                and 1 <= settings.word_ngrams <= 8
                and all(type(n) is int and 0 <= n <= 16 for n in (low, high))
                and type(settings.lowercase) is bool
                and type(settings.fold) is bool
            )
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise HeirloomError(f"{what}'s hashing settings are damaged: {str(data)[:200]}")
        return settings


class Featurizer:
    """Maps a text to the hashed buckets of its features (one entry per occurrence)."""

    def __init__(self, settings: HashingSettings):
        self.settings = settings
        if settings.fold:
            translation_table()  # built once (0.15 s), at load rather than in a first request
        self._half = settings.buckets // 2
        self._words: dict[str, tuple[int, array]] = {}
        self._cached_bytes = 0

    def tokens(self, text: str) -> list[str]:
        """Words and punctuation, read in NFC: the same text copied from a system that writes
        accents as combining marks (NFD) split its words at every accent, and got other answers;
        with ``fold``, folded (full-width letters, Arabic harakat, bidi marks: ``folding.py``)."""
        if self.settings.fold:
            text = folded(text)
        elif not text.isascii():
            text = unicodedata.normalize("NFC", text)
        return _TOKEN.findall(text.lower() if self.settings.lowercase else text)

    def buckets(self, text: str, found: MutableSequence[int]) -> None:
        """Append the bucket of every feature occurrence in ``text`` to ``found``.

        The hot loop of prediction: a word's own bucket and character n-grams come from
        the cache as one typed array, and bigrams (the default) skip the general loop.
        """
        words = self._words
        hashes = []
        for token in self.tokens(text):
            word_hash, features = words.get(token) or self._word(token)
            hashes.append(word_hash)
            found.extend(features)
        half = self._half
        if self.settings.word_ngrams >= 2:
            first = (2 * _MIX) & _MASK  # the mixing state after the n = 2 seed
            found.extend([2 * (((((first ^ a) * _MIX) ^ b) & _MASK) % half) for a, b in itertools.pairwise(hashes)])
        for n in range(3, self.settings.word_ngrams + 1):
            for start in range(len(hashes) - n + 1):
                mixed = n
                for word_hash in hashes[start : start + n]:
                    mixed = ((mixed * _MIX) ^ word_hash) & _MASK
                found.append(2 * (mixed % half))

    def _word(self, token: str) -> tuple[int, array]:
        """The word's own hash, and its bucket followed by its character n-gram buckets."""
        cached = self._words.get(token)
        if cached is None:
            low, high = self.settings.char_ngrams
            padded = f" {token} "
            word_hash = _hash("w", token)
            features = array("q", [2 * (word_hash % self._half)])
            features.extend(
                2 * (_hash("c", padded[i : i + n]) % self._half) + 1
                for n in range(max(low, 1), high + 1)
                for i in range(len(padded) - n + 1)
            )
            cached = (word_hash, features)
            size = _ENTRY_BYTES + len(token) + features.itemsize * len(features)
            if self._cached_bytes + size > _WORD_CACHE_BYTES:
                self._words.clear()
                self._cached_bytes = 0
            self._words[token] = cached
            self._cached_bytes += size
        return cached
