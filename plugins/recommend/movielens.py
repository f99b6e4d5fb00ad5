"""The ``movielens`` source: MovieLens 100K as GroupLens ships it (``u.data``, ``u.item``,
``u.genre``), ratings as interactions and movies as the catalogue.

The splits, the cold movies, the records and the fingerprint are ``SplitRatingsSource``'s
(``split.py``, shared with ``ratings-csv``): per user, a seeded random ``test_fraction`` of
their ratings is ``test``, the Microsoft Recommenders protocol, or with ``holdout =
"latest"`` their most recent ``test_fraction`` by ``u.data``'s Unix times.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.recommend.records import parse_year
from heirloom_plugins.recommend.split import Rating, SplitRatingsSource
from heirloom_plugins.textfiles import read_text

#: id, title, release date, video date, IMDb URL; then one 0/1 flag per genre of u.genre
LEADING_FIELDS = 5


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-empty lines: UTF-8, else latin-1 (GroupLens' own u.item is latin-1)."""
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            yield number, line


FILES = ("u.data", "u.item", "u.genre")


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
class MovieLensSource(SplitRatingsSource):
    """MovieLens 100K (GroupLens): ``u.data`` ratings, ``u.item`` movies with title, year and genres."""

    source_type = "movielens"

    #: The folder holding ``u.data``, ``u.item`` and ``u.genre``.
    path: str = heirloom.path_field()

    def check_profile(self, profile: Any) -> list[tuple[str, str]]:
        """A folder without GroupLens' three files (a missing folder is the path check's to report), said by
        ``profile check``; refused at construction, it refused ``heirloom feedback``'s stand-in folder for data on
        another host (docs/PLUGINS.md), and the kernel could not name the data set to fetch (h366 F2)."""
        folder = Path(self.path)
        missing = [name for name in FILES if folder.is_dir() and not (folder / name).is_file()]
        said = f"'path' {self.path} lacks {', '.join(missing)} (a GroupLens folder has {', '.join(FILES)})"
        return [("path", said)] if missing else []

    def files(self) -> tuple[Path, Path, Path]:
        folder = Path(self.path)
        return folder / FILES[0], folder / FILES[1], folder / FILES[2]

    def read_catalogue(self) -> list[dict[str, Any]]:
        _, items, genres = self.files()
        return read_items(items, read_genres(genres))

    def read_ratings(self, items: list[dict[str, Any]]) -> list[Rating]:
        return read_ratings(self.files()[0], {item["item"] for item in items})
