"""The ``movielens`` source: MovieLens 100K as GroupLens ships it (``u.data``, ``u.item``,
``u.genre``), ratings as interactions and movies as the catalogue.

Splits follow the Microsoft Recommenders protocol: per user, a seeded random
``test_fraction`` of their ratings is ``test``, the rest ``train``; every rating counts
as an interaction. ``validation_fraction`` carves a ``validation`` split out of train the
same way (train then excludes it). ``cold_fraction`` marks a seeded share of the movies
``cold``: the cold-start protocol, where a model is refitted without them and ranks them
from their text alone; ``drop_cold`` removes them from the catalogue and every split
instead, so they can be asked about as movies nobody has seen (``recs.similar_text``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.recommend.checks import share
from heirloom_plugins.recommend.records import (
    INTERACTION,
    interaction_record,
    item_record,
    parse_year,
    per_user_holdout,
    seeded_share,
)
from heirloom_plugins.textfiles import read_text

SPLITS = ("train", "validation", "test")
#: id, title, release date, video date, IMDb URL; then one 0/1 flag per genre of u.genre
LEADING_FIELDS = 5


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-empty lines: UTF-8, else latin-1 (GroupLens' own u.item is latin-1)."""
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            yield number, line


FILES = ("u.data", "u.item", "u.genre")


def _grouplens_folder(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """The folder holds the three files (a missing folder is the path check's to report)."""
    folder = Path(value)
    missing = [name for name in FILES if folder.is_dir() and not (folder / name).is_file()]
    if missing:
        wanted = ", ".join(FILES)
        raise ValueError(f"'{attribute.name}' {value} lacks {', '.join(missing)} (a GroupLens folder has {wanted})")


def read_ratings(path: Path, items: set[str]) -> list[tuple[str, str, float, int]]:
    """``(user, item, rating, unix time)`` of every line of ``u.data``; each item must be one
    of ``items`` (u.item's), or the catalogue would grow an untitled movie."""
    rows = []
    for number, line in _lines(path):
        fields = line.split("\t")
        try:
            user, item, rating, stamp = fields
            rows.append((user.strip(), item, float(rating), int(stamp)))
        except ValueError:
            raise heirloom.HeirloomError(
                f"{path}:{number}: expected 'user<TAB>item<TAB>rating<TAB>unix time', got {line[:80]!r}"
            ) from None
        if not rows[-1][0]:
            raise heirloom.HeirloomError(f"{path}:{number}: the user id is blank")
        if not math.isfinite(rows[-1][2]):
            raise heirloom.HeirloomError(f"{path}:{number}: the rating is {rating!r}, not a finite number")
        if item not in items:
            raise heirloom.HeirloomError(f"{path}:{number}: item {item!r} is not in u.item")
    return rows


def read_genres(path: Path) -> list[str]:
    """Genre names by flag position (``u.genre``: ``name|index``)."""
    names: dict[int, str] = {}
    for number, line in _lines(path):
        name, _, index = line.partition("|")
        if not index.isdigit():
            raise heirloom.HeirloomError(f"{path}:{number}: expected 'name|index', got {line[:80]!r}")
        names[int(index)] = name
    return [names[i] for i in sorted(names)]


def read_items(path: Path, genre_names: list[str]) -> list[dict[str, Any]]:
    """``{"item", "title", "year", "genres"}`` of every line of ``u.item``."""
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, line in _lines(path):
        fields = line.split("|")
        first = seen.setdefault(fields[0], number)
        if first != number:
            raise heirloom.HeirloomError(f"{path}:{number}: item {fields[0]!r} is listed already (line {first})")
        flags = fields[LEADING_FIELDS:]
        if len(flags) != len(genre_names) or not set(flags) <= {"0", "1"}:
            raise heirloom.HeirloomError(
                f"{path}:{number}: expected {LEADING_FIELDS + len(genre_names)} '|'-separated fields ending in "
                f"{len(genre_names)} genre flags (u.genre), got {line[:80]!r}"
            )
        genres = [name for name, flag in zip(genre_names, flags, strict=True) if flag == "1" and name != "unknown"]
        year = parse_year(fields[1], fields[2])
        items.append({"item": fields[0], "title": fields[1], "year": year, "genres": genres})
    return items


@attrs.define(kw_only=True)
class MovieLensSource(heirloom.Source):
    """MovieLens 100K (GroupLens): ``u.data`` ratings, ``u.item`` movies with title, year and genres."""

    #: The folder holding ``u.data``, ``u.item`` and ``u.genre``.
    path: str = heirloom.path_field(validator=_grouplens_folder)
    #: Share of each user's ratings held out as ``test`` (seeded, per user).
    test_fraction: float = attrs.field(default=0.25, validator=share(zero_ok=False))
    #: Share of each user's remaining ratings carved out as ``validation`` (0: no such split).
    validation_fraction: float = attrs.field(default=0.0, validator=share(zero_ok=True))
    #: Seed of every choice: same seed, same splits, same cold items.
    seed: int = 42
    #: Share of the movies marked ``cold`` for the cold-start protocol (0: none).
    cold_fraction: float = attrs.field(default=0.1, validator=share(zero_ok=True))
    #: Remove the cold movies and their ratings altogether (to ask about them as new movies).
    drop_cold: bool = False

    def files(self) -> tuple[Path, Path, Path]:
        folder = Path(self.path)
        return folder / FILES[0], folder / FILES[1], folder / FILES[2]

    def splits(self) -> list[str]:
        return [split for split in SPLITS if split != "validation" or self.validation_fraction]

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        """The catalogue's items first (in every split), then the split's interactions."""
        if split is not None and split not in self.splits():
            raise heirloom.HeirloomError(
                f"movielens source has no split {split!r}; expected one of {', '.join(self.splits())} or None"
            )
        return self._records(split)

    def _records(self, split: str | None) -> Iterator[dict[str, Any]]:
        items, roles, cold = self._prepared()
        for item in items:
            if not (self.drop_cold and item["item"] in cold):
                yield item_record(**item, cold=item["item"] in cold)
        ratings = read_ratings(self.files()[0], {item["item"] for item in items})
        for (user, item, rating, stamp), role in zip(ratings, roles, strict=True):
            if (split is None or role == split) and not (self.drop_cold and item in cold):
                yield interaction_record(user, item, "rating", rating, stamp)

    def _prepared(self) -> tuple[list[dict[str, Any]], list[str], set[str]]:
        """The items, each rating's split and the cold items; recomputed only when a file changes."""
        paths = self.files()
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise heirloom.HeirloomError(f"movielens source: {', '.join(missing)} not found")
        key = tuple((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != key:
            ratings_path, items_path, genres_path = paths
            items = read_items(items_path, read_genres(genres_path))
            pairs = [(user, item) for user, item, _, _ in read_ratings(ratings_path, {i["item"] for i in items})]
            test = per_user_holdout(pairs, self.test_fraction, self.seed, "test")
            rest = [pair for pair in pairs if pair not in test]
            validation = per_user_holdout(rest, self.validation_fraction, self.seed, "validation")
            roles = ["test" if p in test else "validation" if p in validation else "train" for p in pairs]
            cold = seeded_share((item["item"] for item in items), self.cold_fraction, self.seed, "cold")
            self._cache = (key, (items, roles, cold))
        return self._cache[1]

    def fingerprint(self) -> str:
        """sha256 of the three files and the settings that shape the splits."""
        settings = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name != "path"}
        digest = hashlib.sha256(json.dumps({"type": "movielens", **settings}, sort_keys=True).encode())
        for path in self.files():
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Items, cold items, and per split: interactions and users."""
        items, _, cold = self._prepared()
        counts: dict[str, Counter[str]] = {}
        for split in self.splits():
            counts[split] = Counter(r["user"] for r in self.records(split) if r["type"] == INTERACTION)
        return {
            "items": len(items) - (len(cold) if self.drop_cold else 0),
            "cold_items": 0 if self.drop_cold else len(cold),
            "interactions": {split: sum(c.values()) for split, c in counts.items()},
            "users": {split: len(c) for split, c in counts.items()},
        }
