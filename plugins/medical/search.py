"""Finding patients by condition, medication or free text: BM25 over one document per patient.

A patient's document is the distinct (kind, code, display) of its events plus its notes;
a term's frequency is the number of distinct events that mention it, so a condition
recorded once counts as much as a vital sign measured fifty times. Codes are terms too,
with and without their system (``snomed:44054006`` and ``44054006``). Words are read in any script,
without case or accents (``hipertension`` finds ``Hipertensión``: the ASCII-only words split it and
found nothing). A query that is
exactly an event's name or code (``Sinusitis (disorder)``) ranks the patients with that
very event first, before those whose events only share its words (``Viral sinusitis``).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import attrs

from heirloom_plugins.medical.safety import normal_text

_TOKEN = re.compile(r"[^\W_]+(?::[\w.\-]+)?")
#: A code typed without its system (``J02.9``, ``8302-2``), which the index keeps whole as each code's bare form:
#: the words alone split it into ``j02`` and ``9``, and an ICD-10 or LOINC code found nobody.
_BARE_CODE = re.compile(r"(?<![\w:.\-])[^\W_]+(?:[.\-][^\W_]+)+")
#: BM25 parameters (the usual defaults).
K1, B = 1.2, 0.75
SEARCHED = ("condition", "medication", "allergy", "procedure", "immunization", "observation", "encounter", "note")


def terms(text: str) -> list[str]:
    """Words (as :func:`normal_text` reads them) and ``system:code`` tokens (a code also as its bare number)."""
    found = []
    for token in _TOKEN.findall(normal_text(text)):
        found.append(token)
        if ":" in token:
            found.append(token.split(":", 1)[1])
    return found


@attrs.frozen
class Hit:
    patient: str
    score: float
    matches: list[dict[str, Any]]


class SearchIndex:
    """BM25 over patients; ``search`` returns the best ``k`` with the events that matched."""

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, int]] = defaultdict(dict)
        self.lengths: dict[str, int] = {}
        self.events: dict[str, dict[str, list[tuple[str, str | None, str | None]]]] = {}
        self.exact: dict[str, set[str]] = defaultdict(set)

    def add(self, patient: str, timeline: Iterable[Any]) -> None:
        """Index one patient's distinct events (and note texts)."""
        seen: set[tuple[str, str | None, str | None]] = set()
        counts: Counter[str] = Counter()
        by_term: dict[str, list[tuple[str, str | None, str | None]]] = defaultdict(list)
        for event in timeline:
            if event.kind not in SEARCHED:
                continue
            key = (event.kind, event.code, event.display)
            words = set()
            if key not in seen:
                seen.add(key)
                words.update(terms(f"{event.code or ''} {event.display or ''}"))
                for name in (event.code, event.display):
                    if name:
                        self.exact[normal_text(name.strip())].add(patient)
            if event.kind == "note" and event.text:
                words.update(terms(event.text))
            for word in words:
                counts[word] += 1
                if len(by_term[word]) < 5 and key not in by_term[word]:
                    by_term[word].append(key)
        for word, count in counts.items():
            self.postings[word][patient] = count
        self.lengths[patient] = sum(counts.values())
        self.events[patient] = dict(by_term)

    def search(self, text: str, k: int) -> list[Hit]:
        query = self._terms(text)
        if not self.lengths or not query:
            return []
        n, average = len(self.lengths), sum(self.lengths.values()) / len(self.lengths) or 1.0
        scores: Counter[str] = Counter()
        for word in query:
            posting = self.postings.get(word, {})
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for patient, tf in posting.items():
                norm = tf + K1 * (1 - B + B * self.lengths[patient] / average)
                scores[patient] += idf * tf * (K1 + 1) / norm
        exact = self.exact.get(normal_text(text.strip()), set())
        best = sorted(scores.items(), key=lambda item: (item[0] not in exact, -item[1], item[0]))[:k]
        return [Hit(patient, round(score, 4), self._matches(patient, query)) for patient, score in best]

    def _terms(self, text: str) -> list[str]:
        """The query's terms: a dotted or dashed run the index holds as a code (``J02.9``) is that code, not
        its pieces (``j02``, ``9``: they ranked a patient with ``J02`` and a 9 in a name above it)."""
        normal = normal_text(text)
        codes = [run for run in _BARE_CODE.findall(normal) if run in self.postings]
        rest = _BARE_CODE.sub(lambda run: " " if run[0] in self.postings else run[0], normal)
        return list(dict.fromkeys([*codes, *terms(rest)]))

    def _matches(self, patient: str, query: list[str]) -> list[dict[str, Any]]:
        found: dict[tuple[str, str | None, str | None], int] = {}
        for word in query:
            for key in self.events[patient].get(word, ()):
                found[key] = found.get(key, 0) + 1
        ranked = sorted(found.items(), key=lambda item: -item[1])[:5]
        return [{"kind": kind, "code": code, "display": display} for (kind, code, display), _ in ranked]
