"""The ``union`` source: the records of several sources, split by split (original data + corrections)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs

import heirloom
from heirloom_plugins.text.near_duplicates import NearDuplicates, letter_words, text_of
from heirloom_plugins.text.sources import (
    SHOWN_IDS,
    TextSource,
    labelled_stats,
    reading_held_out,
    spelling_twin,
    spelling_twins,
)

log = logging.getLogger("heirloom.text")


@attrs.define(kw_only=True)
class UnionSource(heirloom.Source):
    """The records of several sources, split by split (e.g. original data + feedback).

    A split comes from every part that has it: feedback (train only) adds training
    records and leaves validation and test to the original data. A training record of a
    part with no held-out split of its own (feedback, resolutions, events; a nested union's
    parts count as this one's) that repeats an example of the validation or test split (the same
    ``example_keys`` values: a corrected test sentence, a posted test pair) is left out,
    with a warning: trained on, it would inflate the very scores that report and compare
    versions. Such a record replaces the training records of its example read from the other
    parts, and a later one an earlier one (``latest_wins``): a correction wins.
    """

    sources: list[str] = heirloom.ref("source", many=True)
    #: The record fields that make an example the same one (``text``; ``user`` and ``item``
    #: for interactions). Empty: no check.
    example_keys: list[str] = attrs.field(factory=lambda: ["text"])
    #: How values are compared: ``words`` (text: near duplicates, see ``example_similarity``,
    #: whatever the case, accents' encoding, punctuation, spacing and invisible characters) or
    #: ``exact`` (ids: ``5`` is ``"5"``).
    example_match: str = attrs.field(default="words", validator=attrs.validators.in_(("words", "exact")))
    #: ``words``: how similar (Jaccard of character 5-grams) a text must be to an example to
    #: repeat it; 0.8 catches a word added, dropped or changed in a long sentence (in one of 10 words or
    #: so, the words' rule does; not a word changed in a short query: docs/TEXT.md). 1: the same letters.
    example_similarity: float = attrs.field(
        default=0.8, validator=attrs.validators.and_(attrs.validators.gt(0), attrs.validators.le(1))
    )

    #: A training record of a part with no held-out split of its own (a correction, a resolution)
    #: replaces the training records of the same example (the same ``example_keys`` values; texts:
    #: the same letters and digits) of the other parts, and the last of its part's records of that
    #: example the others: both labels trained, 25 corrections of training texts changed 1 answer.
    #: ``false`` trains every record (events: a view and a rating of one pair are two interactions).
    latest_wins: bool = True

    def __attrs_post_init__(self) -> None:
        if twice := next((name for name, count in Counter(self.sources).items() if count > 1), None):
            raise ValueError(f"'sources' lists {twice!r} twice (its records, test ones too, would count twice)")

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.name = ctx.name
        self.parts = [ctx.get(name, "source") for name in self.sources]
        leaves = Counter(name for _, name, _ in self._leaves(()))
        if twice := next((name for name, count in leaves.items() if count > 1), None):  # also through a nested union
            raise heirloom.HeirloomError(
                f"union {ctx.name!r} reads source {twice!r} {leaves[twice]} times (directly or through the unions it "
                "lists): its records, test ones too, would count more than once"
            )
        self._held_out: set[tuple[str, ...]] | NearDuplicates | None = None
        self._warned: set[str] = set()
        self._label_parts: dict[str, str] = {}  # each training label -> the part that gave it first
        self._spellings: dict[str, str] = {}  # case, spaces, '_' and '-' aside -> the label read first

    def splits(self) -> list[str]:
        return list(dict.fromkeys(split for part in self.parts for split in part.splits()))

    @property
    def out_of_scope_label(self) -> str | None:
        """The first of its parts' ``out_of_scope_label`` (an out-of-scope source's), if any."""
        return next((label for part in self.parts if (label := getattr(part, "out_of_scope_label", None))), None)

    def stats(self) -> dict[str, Any]:
        return labelled_stats(self)

    def records(self, split: str | None = None) -> Iterator[Any]:
        """``split``'s records; all (None): what the splits hold, in the parts' order, the training ones
        as training reads them (``data show`` without ``--split`` listed the resolutions training leaves
        out and the records they replace, unmarked). A held-out record is never replaced: a record
        repeating its example is left out before it could replace one."""
        replacing = any(unions[0].latest_wins and unions[0].example_keys for *_, unions in self._leaves(()))
        if split not in (None, "train") or not replacing:  # no second read of an events log that replaces nothing
            yield from (record for *_, record in self._read(split))
            return
        last = {}  # each example of the added parts (with the union that lists them): the place of its last record
        for place, (_, _, union, record) in enumerate(self._read(split, added_only=True)):
            if (example := union._same(record)) is not None:
                last[id(union), example] = place
        replaced: Counter[str] = Counter()
        added_place = -1
        for name, added, union, record in self._read(split):
            added_place += added
            example = (id(union), union._same(record)) if last else None
            if example not in last or (added and last[example] == added_place):
                yield record
            else:
                replaced[name] += 1
        self._say_replaced(replaced)

    def _read(self, split: str | None, added_only: bool = False) -> Iterator[tuple[str, bool, UnionSource, Any]]:
        """``(part, added, union, record)`` of every part having ``split``, in order; ``added``: a part
        with no held-out split of its own, whose records repeating a held-out example are left out;
        ``union``: the innermost union listing the part, whose ``latest_wins`` replaces among its own
        parts (an outer union's replaced them all: the recommend union's ``false`` was lost in another)."""
        for part, name, unions in self._leaves(()):
            added = set(part.splits()) == {"train"}
            if (split is not None and split not in part.splits()) or (added_only and not added):
                continue
            records = part.records(split)
            if split in (None, "train") and added:  # added data, with no test of its own
                for union in unions:  # the innermost union's check, then each enclosing one's
                    records = union._unseen(records, name) if union.example_keys else records
            if split == "train" and not added_only:
                records = self._say_spelling_twins(records, name, part)
            yield from ((name, added, unions[0], record) for record in records)

    def _say_spelling_twins(self, records: Iterator[Any], name: str, part: heirloom.Source) -> Iterator[Any]:
        """``records``, saying once per run each training label that differs from one read before only
        by case, spaces, '_' or '-' (an accepted correction ``Claims`` beside the data's ``claims``): two
        classes, as a text file source says of its own labels (a pair within one such part is its to say)."""
        for record in records:
            label = record.get("label") if isinstance(record, dict) else None
            if isinstance(label, str) and label not in self._label_parts:
                self._label_parts[label] = name
                twin = spelling_twin(self._spellings, label)
                if twin is not None and not (self._label_parts[twin] == name and isinstance(part, TextSource)):
                    log.warning("%s", spelling_twins(f"source {self.name!r}", twin, label))
            yield record

    def _same(self, record: Any) -> Any:
        """What ``latest_wins`` compares: a text's letters and digits, without the spaces between them
        (``don't`` is ``dont``, ``e-mail`` ``email``), or the values; None for a text of no letters or
        digits, which repeats nothing (one correction of a "💩" replaced every emoji-only text), and
        for every record of a union that replaces nothing (``latest_wins`` false, no ``example_keys``)."""
        if not (self.latest_wins and self.example_keys) or (values := self._values(record)) is None:
            return None
        texts = [value if isinstance(value, str) else _exact(value) for value in values]
        if self.example_match != "words":
            return tuple(texts)
        letters = "\x1f".join("".join(letter_words(text)) for text in texts)  # no grams: only the letters count
        return letters if letters.strip("\x1f") else None

    def _say_replaced(self, replaced: Counter[str]) -> None:
        if replaced and "latest_wins" not in self._warned:  # once per run
            self._warned.add("latest_wins")
            log.warning(
                "source %r: training records replaced by a later record of the same example (%s; latest_wins): %s",
                self.name,
                " and ".join(self.example_keys),
                ", ".join(f"{count} of {name!r}" for name, count in replaced.items()),
            )

    def _leaves(self, enclosing: tuple[UnionSource, ...]) -> Iterator[tuple[heirloom.Source, str, tuple]]:
        """Each part with the unions that check it, a nested union's own parts in its place: each
        checked by what it is (a nested union's original data, checked whole, lost 950 of
        Banking77's 9,000 rows) and by every union around it (an outer union's settings replaced
        the inner one's check)."""
        unions = (self, *enclosing)
        for part, name in zip(self.parts, self.sources, strict=True):
            if isinstance(part, UnionSource):
                yield from part._leaves(unions)
            else:
                yield part, name, unions

    def fingerprint(self) -> str:
        """The parts' fingerprints and the check's settings (they decide which records train)."""
        check = json.dumps([self.example_keys, self.example_match, self.example_similarity, self.latest_wins])
        return hashlib.sha256("\n".join([*(part.fingerprint() for part in self.parts), check]).encode()).hexdigest()

    def _unseen(self, records: Iterator[Any], part: str) -> Iterator[Any]:
        """``records`` less those repeating a held-out example, counted in a warning (and a part
        none of whose records has the ``example_keys``, a typo that would turn the check off)."""
        repeated = read = keyed = 0
        named: list[str] = []  # a few ids, so a team can find the corrections that will not train
        for record in records:  # the held-out examples are read only when there is a record to check
            read += 1
            key = self._example(record)
            keyed += key is not None
            if key is not None and key in self._examples_held_out():
                repeated += 1
                record_id = record.get("id") if isinstance(record, dict) else getattr(record, "id", None)
                if record_id is not None and len(named) < SHOWN_IDS:
                    named.append(str(record_id))
            else:
                yield record
        if part in self._warned:  # once per run: a train reads the split more than once
            return
        self._warned.add(part)
        keys = " and ".join(self.example_keys)
        words = self.example_match == "words"
        similar = f"{keys} at least {self.example_similarity:g} similar, or of its words" if words else ""
        if read and not keyed:
            log.warning("source %r: no record of %r has %s (example_keys): none was checked", self.name, part, keys)
        if repeated:
            log.warning(
                "source %r: %d training record(s) of %r repeat a validation or test example (%s) and are left "
                "out of training, which would inflate the scores that report and compare versions%s",
                self.name,
                repeated,
                part,
                similar or f"same {keys}",
                f" (ids: {', '.join(named)}{', ...' if repeated > len(named) else ''})" if named else "",
            )

    def _examples_held_out(self) -> set[tuple[str, ...]] | NearDuplicates:
        """The examples of every part's validation and test splits (read once per run)."""
        if self._held_out is None:
            examples = []
            for name, part in zip(self.sources, self.parts, strict=True):
                for split in ("validation", "test"):
                    if split in part.splits():
                        with reading_held_out(f"source {name!r}", split):
                            examples += [
                                key for record in part.records(split) if (key := self._example(record)) is not None
                            ]
            words = self.example_match == "words"
            self._held_out = NearDuplicates(examples, self.example_similarity) if words else set(examples)
        return self._held_out

    def _values(self, record: Any) -> list[Any] | None:
        """``record``'s ``example_keys`` values; None when it lacks one (e.g. a catalogue item)."""
        if not isinstance(record, dict) or any(record.get(key) is None for key in self.example_keys):
            return None
        return [record[key] for key in self.example_keys]

    def _example(self, record: Any) -> Any:
        """What makes ``record`` an example (None: it lacks one of the keys): its values' 5-grams
        (``words``) or the values (``exact``)."""
        if (values := self._values(record)) is None:
            return None
        if self.example_match == "words":
            return text_of(value if isinstance(value, str) else _exact(value) for value in values)
        return tuple(map(_exact, values))


def _exact(value: Any) -> str:
    """An id as the apis read it (``5`` and ``"5"`` are one); any other value as its JSON."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True, default=repr)
