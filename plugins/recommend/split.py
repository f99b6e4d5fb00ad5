"""What the rating sources (``movielens``, ``ratings-csv``) share: the split protocol, the
records, the fingerprint and the stats. A subclass only reads its files.

Splits follow the Microsoft Recommenders protocol: per user, a seeded random
``test_fraction`` of their rated items is ``test``, the rest ``train``; every rating counts
as an interaction. ``validation_fraction`` carves a ``validation`` split out of train the
same way (train then excludes it). ``holdout = "latest"`` holds out each user's most recent
items instead (test, then validation from the older rest): a random split asks a model to
fill gaps in a history it has partly seen after, a latest split to predict what comes next.
``cold_fraction`` marks a seeded share of the catalogue's items ``cold``: the cold-start
protocol, where a model is refitted without them and ranks them from their text alone;
``drop_cold`` removes them from the catalogue and every split instead, so they can be asked
about as items nobody has seen (``recs.similar_text``). Every choice depends only on the
ids, the times, the fractions and the seed, never on file order.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.recommend.checks import share
from heirloom_plugins.recommend.records import (
    INTERACTION,
    interaction_record,
    item_record,
    latest_times,
    per_user_holdout,
    seeded_share,
)

SPLITS = ("train", "validation", "test")
#: How each user's held-out items are chosen: a seeded random share, or their most recent.
HOLDOUTS = ("random", "latest")
#: ``(user, item, value, time)``: one rating as a source reads it.
Rating = tuple[str, str, float, Any]


@attrs.define(kw_only=True)
class SplitRatingsSource(heirloom.Source):
    """Ratings split per user into train, validation and test, with a catalogue whose seeded
    share is marked cold. Subclasses say which files they read and how."""

    #: The name the source type is registered under (its messages and fingerprint say it).
    source_type: ClassVar[str]
    #: Settings that came later, left out of the fingerprint at these values (their defaults): a
    #: profile that does not set them keeps the fingerprint its trained versions recorded.
    added_later: ClassVar[dict[str, Any]] = {"holdout": "random"}

    #: Share of each user's ratings held out as ``test`` (seeded, per user).
    test_fraction: float = attrs.field(default=0.25, validator=share(zero_ok=False))
    #: Share of each user's remaining ratings carved out as ``validation`` (0: no such split).
    validation_fraction: float = attrs.field(default=0.0, validator=share(zero_ok=True))
    #: ``random``: a seeded share of each user's items is held out; ``latest``: their most
    #: recent ones (by time; the seed breaks ties), so test is what users did last.
    holdout: str = attrs.field(default="random", validator=attrs.validators.in_(HOLDOUTS))
    #: Seed of every choice: same seed, same splits, same cold items.
    seed: int = 42
    #: Share of the items marked ``cold`` for the cold-start protocol (0: none).
    cold_fraction: float = attrs.field(default=0.1, validator=share(zero_ok=True))
    #: Remove the cold items and their ratings altogether (to ask about them as new items).
    drop_cold: bool = False

    @abc.abstractmethod
    def files(self) -> tuple[Path, ...]:
        """Every file the source reads (a change to one recomputes the splits)."""

    @abc.abstractmethod
    def read_catalogue(self) -> list[dict[str, Any]]:
        """``{"item", "title", "year", "genres"}`` of every item, in file order; ``[]`` when the
        data has no catalogue (the model's catalogue is then the items the ratings name)."""

    @abc.abstractmethod
    def read_ratings(self, items: list[dict[str, Any]]) -> list[Rating]:
        """Every rating, in file order; ``items`` is :meth:`read_catalogue`'s."""

    def interaction_kind(self) -> str:
        """The ``kind`` of the interactions it yields: ratings, unless the data has no values."""
        return "rating"

    def splits(self) -> list[str]:
        return [split for split in SPLITS if split != "validation" or self.validation_fraction]

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        """The catalogue's items first (in every split), then the split's interactions."""
        if split is not None and split not in self.splits():
            raise heirloom.HeirloomError(
                f"{self.source_type} source has no split {split!r}; expected one of {', '.join(self.splits())} or None"
            )
        return self._records(split)

    def _records(self, split: str | None) -> Iterator[dict[str, Any]]:
        items, roles, cold = self._prepared()
        for item in items:
            if not (self.drop_cold and item["item"] in cold):
                yield item_record(**item, cold=item["item"] in cold)
        ratings = self.read_ratings(items)
        if len(ratings) != len(roles):  # the file changed between the split and this read
            raise heirloom.HeirloomError(
                f"{self.source_type} source: {self.files()[0]} changed while it was read; run the command again"
            )
        kind = self.interaction_kind()
        for (user, item, value, stamp), role in zip(ratings, roles, strict=True):
            if (split is None or role == split) and not (self.drop_cold and item in cold):
                yield interaction_record(user, item, kind, value, stamp)

    def _prepared(self) -> tuple[list[dict[str, Any]], list[str], set[str]]:
        """The items, each rating's split and the cold items; recomputed only when a file changes.
        The ratings themselves are read again by each pass (they are most of the memory)."""
        paths = self.present_files()
        key = tuple((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != key:
            items = self.read_catalogue()
            ratings = self.read_ratings(items)
            if not ratings:  # an export cut short trained on the recorded events alone, and was served
                raise heirloom.HeirloomError(
                    f"{self.source_type} source: {paths[0]} holds no ratings: nothing to split"
                )
            roles = self.given_splits() or self._chosen_splits(ratings)
            cold = seeded_share((item["item"] for item in items), self.cold_fraction, self.seed, "cold")
            self._cache = (key, (items, roles, cold))
        return self._cache[1]

    def given_splits(self) -> list[str] | None:
        """Each rating's split as the data states it, in file order; None: the seeded protocol chooses."""
        return None

    def _chosen_splits(self, ratings: list[Rating]) -> list[str]:
        """Each rating's split by the protocol: ``test_fraction``, then ``validation_fraction``, by ``holdout``."""
        pairs = [(user, item) for user, item, _, _ in ratings]
        times = latest_times((u, i, stamp) for u, i, _, stamp in ratings) if self.holdout == "latest" else None
        test = per_user_holdout(pairs, self.test_fraction, self.seed, "test", times)
        rest = [pair for pair in pairs if pair not in test]
        validation = per_user_holdout(rest, self.validation_fraction, self.seed, "validation", times)
        return ["test" if p in test else "validation" if p in validation else "train" for p in pairs]

    def present_files(self) -> tuple[Path, ...]:
        """:meth:`files`, or HeirloomError naming each that is not there (the fingerprint, hashed first, raised a
        bare FileNotFoundError: a traceback from ``train`` on an empty folder, v14 F3)."""
        paths = self.files()
        missing = [f"{p} {heirloom.irregular(p) or 'not found'}" for p in paths if not p.is_file()]
        if missing:
            raise heirloom.HeirloomError(f"{self.source_type} source: {'; '.join(missing)}")
        return paths

    def fingerprint(self) -> str:
        """sha256 of the files and the settings that shape the records and the splits."""
        paths = heirloom.path_fields(type(self))
        settings = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name not in paths}
        for name, default in self.added_later.items():
            if settings[name] == default:
                del settings[name]
        digest = hashlib.sha256(json.dumps({"type": self.source_type, **settings}, sort_keys=True).encode())
        for path in self.present_files():
            heirloom.hash_regular(path, digest)
        return digest.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Items, cold items, and per split: interactions and users."""
        items, _, cold = self._prepared()
        counts: dict[str, Counter[str]] = {}
        named: set[str] = set()
        for split in self.splits():
            interactions = [r for r in self.records(split) if r["type"] == INTERACTION]
            counts[split] = Counter(r["user"] for r in interactions)
            named.update(r["item"] for r in interactions)
        return {
            "items": len(items) - (len(cold) if self.drop_cold else 0) if items else len(named),
            "cold_items": 0 if self.drop_cold else len(cold),
            "interactions": {split: sum(c.values()) for split, c in counts.items()},
            "users": {split: len(c) for split, c in counts.items()},
        }
