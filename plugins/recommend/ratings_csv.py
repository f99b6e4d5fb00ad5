"""The ``ratings-csv`` source: your own ratings, from a CSV file with a header, and
optionally your catalogue, from a second one; split as ``movielens`` is (``split.py``).

Every malformed row is an error naming the file, the line and the column: a user or item
that is blank, a rating that is not a finite number, a time that is neither a Unix time nor
an ISO 8601 date (or blank, with ``holdout = "latest"``), a rated item the items file does
not list, an item listed twice, a short row and bytes that are not the file's encoding (``encoding``,
or ``items_encoding`` for the items file: a catalogue exported by another system than the
ratings may be in another, and have another delimiter, ``items_delimiter``).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.recommend.checks import non_empty
from heirloom_plugins.recommend.records import MAX_ID_CHARS, id_key, id_problem, parse_year
from heirloom_plugins.recommend.split import SPLITS, Rating, SplitRatingsSource
from heirloom_plugins.textfiles import (
    SOURCE_FILE,
    CsvFormat,
    FileSettings,
    known_encoding,
    one_character,
    repeats_header,
)
from heirloom_plugins.timelines import ISO_EXAMPLES, iso_moment, ordinal_day

log = logging.getLogger("heirloom.recommend")

#: The settings of the items file's encoding and delimiter.
ITEMS_FILE = FileSettings(encoding="items_encoding", delimiter="items_delimiter")
#: The settings by which the seeded protocol chooses each rating's split, which ``split_column`` states instead.
CHOOSING = ("test_fraction", "validation_fraction", "holdout")
#: A Unix time this large (the year 5138 in seconds) is a time in milliseconds (1.7e12 today); 1,000 times
#: larger, none at all.
MILLISECONDS = 1e11
#: The bytes of a file ``_blank`` reads: a longer one is no export cut off before its header.
BLANK_PROBE = 1 << 16


@attrs.define(kw_only=True)
class RatingsCsvSource(SplitRatingsSource, CsvFormat):
    """Ratings (user, item, rating, time) from a CSV file; titles, years and genres from an
    optional items CSV. Without one, the catalogue is the items the ratings name (no text, so
    nothing is cold)."""

    source_type = "ratings-csv"
    added_later: ClassVar[dict[str, Any]] = {
        **SplitRatingsSource.added_later,
        "items_encoding": None,
        "items_delimiter": None,
        "split_column": "",
    }

    #: The ratings CSV (a header, then one rating per row).
    ratings: str = heirloom.path_field()
    #: The items CSV (a header, then one item per row), or none.
    items: str | None = heirloom.path_field(default=None)
    #: The column of the user id (ratings).
    user_column: str = attrs.field(default="user", validator=non_empty)
    #: The column of the item id (ratings, and items unless ``items_item_column`` names another).
    item_column: str = attrs.field(default="item", validator=non_empty)
    #: The column of the item id in the items file, when it differs (default: ``item_column``).
    items_item_column: str = ""
    #: The column of the rating, a finite number (ratings); ``""``: none, every row is a 1 (a
    #: purchase or click log).
    value_column: str = "rating"
    #: The column of the time: a Unix time or an ISO 8601 date (ratings; without it, or blank: null).
    time_column: str = attrs.field(default="time", validator=non_empty)
    #: The column of the title (items); a trailing ``(1995)`` is the year when there is no year column.
    title_column: str = attrs.field(default="title", validator=non_empty)
    #: The column of the genres, separated by ``genre_separator`` (items; without it: none).
    genres_column: str = attrs.field(default="genres", validator=non_empty)
    genre_separator: str = attrs.field(default="|", validator=non_empty)
    #: The column of the year, a whole number (items; without it, or blank: from the title).
    year_column: str = attrs.field(default="year", validator=non_empty)
    #: The column that states each rating's split (``train``, ``validation`` or ``test``): a split
    #: made elsewhere (a benchmark's own, a cut-off date), in place of ``test_fraction``,
    #: ``validation_fraction`` and ``holdout``. ``""``: the seeded protocol chooses.
    split_column: str = ""
    #: The items file's text encoding, when it differs from the ratings file's (None: ``encoding``).
    items_encoding: str | None = attrs.field(default=None, validator=attrs.validators.optional(known_encoding))
    #: The items file's delimiter, when it differs from the ratings file's (None: ``delimiter``): a German
    #: spreadsheet's ';' ratings beside a ',' catalogue from another system.
    items_delimiter: str | None = attrs.field(default=None, validator=attrs.validators.optional(one_character))

    def __attrs_post_init__(self) -> None:
        paths = {setting: getattr(self, setting) for setting in ("ratings", "items")}
        irregular = [
            f"'{key}' {path} {kind}" for key, path in paths.items() if path and (kind := heirloom.irregular(Path(path)))
        ]
        if irregular:  # profile check said ok to a folder or a FIFO, then the read refused it (checker 270)
            raise ValueError("; ".join(irregular))
        files = (("ratings", SOURCE_FILE, "ratings"), ("items", ITEMS_FILE, "items"))
        empty = [
            f"'{key}' {path} is empty (no header, no {what})"
            for key, named, what in files
            if (path := getattr(self, key)) and _blank(path, self.encoding_named(named.encoding))
        ]
        if empty:  # each of its columns was said missing, under user_column's default (checker 283)
            raise ValueError("; ".join(empty))
        self._check_headers()
        if self.split_column:  # a fraction set beside it was ignored without a word (checker 261)
            defaults = attrs.fields_dict(SplitRatingsSource)
            chosen = [repr(name) for name in CHOOSING if getattr(self, name) != defaults[name].default]
            if chosen:
                said = " and ".join(chosen)
                raise ValueError(f"'split_column' states each rating's split, which {said} would choose: set one")
            self.check_columns(self.ratings, {"split_column": self.split_column})
        if self.holdout == "latest":
            try:
                self.check_columns(self.ratings, {"time_column": self.time_column})
            except ValueError as error:
                raise ValueError(f"'holdout' 'latest' orders each user's ratings by time, but {error}") from None

    def _check_headers(self) -> None:
        """ValueError naming the columns the ratings file's header and the items file's lack, both files' at
        once: the items file's problem was said only once the ratings file's was fixed (checker 303)."""
        rated = {"user_column": self.user_column, "item_column": self.item_column, "value_column": self.value_column}
        listed = "items_item_column" if self.items_item_column else "item_column"
        described = {listed: self.catalogue_id, "title_column": self.title_column}
        problems = []
        for path, columns, named, optional in (
            (self.ratings, {name: column for name, column in rated.items() if column}, SOURCE_FILE, ("time_column",)),
            (self.items, described, ITEMS_FILE, ("genres_column", "year_column")),
        ):
            chosen, defaulted = self._optional(*optional)
            try:
                self.check_columns(path, {**columns, **chosen}, named, optional=defaulted)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError(". Also, ".join(problems))

    def _optional(self, *settings: str) -> tuple[dict[str, str], dict[str, str]]:
        """The optional columns among ``settings``: those the profile named, which a file must have (``Cats``
        for ``cats`` dropped every item's genres without a word, checker 270), and those at their defaults,
        which a file without them has none of (unless its header has them in another case)."""
        defaults = attrs.fields_dict(type(self))
        chosen = {name: getattr(self, name) for name in settings if getattr(self, name) != defaults[name].default}
        return chosen, {name: getattr(self, name) for name in settings if name not in chosen}

    @property
    def catalogue_id(self) -> str:
        """The items file's column of item ids."""
        return self.items_item_column or self.item_column

    def files(self) -> tuple[Path, ...]:
        return (Path(self.ratings),) if self.items is None else (Path(self.ratings), Path(self.items))

    def splits(self) -> list[str]:
        if not self.split_column:
            return super().splits()
        stated = set(self._prepared()[1])
        return [split for split in SPLITS if split != "validation" or split in stated]

    def given_splits(self) -> list[str] | None:
        """The ``split_column``'s value of each rating (any case, surrounding spaces ignored); a
        (user, item) stated in two splits (a re-rating after a cut-off date) is warned of once."""
        if not self.split_column:
            return None
        stated: list[str] = []
        first: dict[tuple[str, str], tuple[str, int]] = {}
        twice: dict[tuple[str, str], str] = {}  # each pair stated in another split: where first
        for line, row in self.csv_rows(self.ratings, (self.split_column, self.user_column, self.item_column)):
            value = row[self.split_column].strip()
            if value.lower() not in SPLITS:
                raise heirloom.HeirloomError(
                    f"{self.ratings}:{line}: the {self.split_column!r} column is {value[:40]!r}; "
                    f"expected {', '.join(SPLITS[:-1])} or {SPLITS[-1]}"
                )
            stated.append(value.lower())
            pair = (id_key(row[self.user_column]), id_key(row[self.item_column]))
            split, at = first.setdefault(pair, (stated[-1], line))
            if split != stated[-1] and pair not in twice:
                said = f"user {pair[0]!r} and item {pair[1]!r} are {stated[-1]} here and {split} at line {at}"
                twice[pair] = f"{self.ratings}:{line}: {said}"
        if twice:  # counted as found at test while no reply showed it (checker 261: 0.4978, the replies 0.4628)
            _say_once(
                f"{next(iter(twice.values()))}; {len(twice)} (user, item) pair(s) are stated in two splits: a "
                "version has such a pair from train (or validation), so the test (or validation) scores leave it "
                "out, counted in left_out"
            )
        return stated

    def csv_rows(
        self, path: str | Path, required: Sequence[str], named: FileSettings = SOURCE_FILE
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """CsvFormat's, less the rows that repeat the header, said once: two exports joined with ``cat`` were "the
        'user' column holds U+FEFF" (the second's byte-order mark), naming no cause (checker h388 F11)."""
        repeated = []
        for line, row in super().csv_rows(path, required, named):
            if repeats_header(row):
                repeated.append(line)
            else:
                yield line, row
        if repeated:
            lines = ", ".join(map(str, repeated[:10])) + (", ..." if len(repeated) > 10 else "")
            _say_once(
                f"{path}: {len(repeated)} row(s) repeat the header, line(s) {lines}: files joined, each with "
                "its header? Left out"
            )

    def interaction_kind(self) -> str:
        return "rating" if self.value_column else "interaction"  # a click log's rows are no ratings

    def read_catalogue(self) -> list[dict[str, Any]]:
        if self.items is None:
            return []
        items: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        columns = (self.catalogue_id, self.title_column)
        for line, row in self.csv_rows(self.items, columns, ITEMS_FILE):
            where = f"{self.items}:{line}"
            item = _id(row, self.catalogue_id, where)
            first = seen.setdefault(item, line)
            if first != line:
                raise heirloom.HeirloomError(
                    f"{where}: the {self.catalogue_id!r} column repeats item {item!r} (listed at line {first})"
                )
            title = row[self.title_column].strip()
            if not title:  # the text tower reads its words and every reply shows it: an untitled item has neither
                raise heirloom.HeirloomError(
                    f"{where}: the {self.title_column!r} column is empty; every item needs a title"
                )
            genres = (row.get(self.genres_column) or "").split(self.genre_separator)
            year = _year(row.get(self.year_column), self.year_column, where)
            items.append(
                {
                    "item": item,
                    "title": title,
                    "year": parse_year(title) if year is None else year,
                    "genres": [genre.strip() for genre in genres if genre.strip()],
                }
            )
        return items

    def read_ratings(self, items: list[dict[str, Any]]) -> list[Rating]:
        listed = {item["item"] for item in items}
        rows, later = [], []
        required = (self.user_column, self.item_column, *([self.value_column] if self.value_column else []))
        for line, row in self.csv_rows(self.ratings, required):
            where = f"{self.ratings}:{line}"
            user, item = _id(row, self.user_column, where), _id(row, self.item_column, where)
            if self.items is not None and item not in listed:
                raise heirloom.HeirloomError(
                    f"{where}: the {self.item_column!r} column names item {item!r}, which {self.items} does not list"
                )
            value = _rating(row[self.value_column], self.value_column, where) if self.value_column else 1.0
            stamp = _time(row.get(self.time_column), self.time_column, where)
            if stamp is None and self.holdout == "latest":
                raise heirloom.HeirloomError(
                    f"{where}: the {self.time_column!r} column is blank; holdout = 'latest' needs every rating's time"
                )
            if (to_come := heirloom.future_time(stamp)) is not None:
                later.append(
                    f"{where}: the {self.time_column!r} column is {row[self.time_column].strip()!r}, {to_come}"
                )
            rows.append((user, item, value, stamp))
        if later:  # read as given (a latest split holds them out first), but the year 2100 went unsaid
            _say_once(f"{later[0]}; {len(later)} rating(s) of {self.ratings} are dated so, and read as they are")
        return rows


def _blank(path: str, encoding: str) -> bool:
    """Whether ``path`` holds nothing but a byte-order mark and blank lines (an export cut off before its
    header), judged from its first BLANK_PROBE bytes; a file that cannot be read is the reading's to report."""
    try:
        with open(heirloom.open_regular(Path(path)), "rb") as handle:
            head, more = handle.read(BLANK_PROBE), handle.read(1)
    except OSError:
        return False
    return not more and not head.decode(encoding, errors="replace").lstrip("\ufeff").strip()


@functools.cache  # a train reads the source more than once (its fingerprint, each split)
def _say_once(warning: str) -> None:
    log.warning("%s", warning)


def _id(row: dict[str, str], column: str, where: str) -> str:
    value = id_key(row[column])
    if not value:
        raise heirloom.HeirloomError(f"{where}: the {column!r} column is empty")
    if problem := id_problem(value):
        raise heirloom.HeirloomError(f"{where}: the {column!r} column {problem}")
    if len(value) > MAX_ID_CHARS:  # trained, it was an id no request could name
        raise heirloom.HeirloomError(
            f"{where}: the {column!r} column holds an id of {len(value)} characters; at most {MAX_ID_CHARS} "
            "(the recommend api's bound): map long ids (URLs) to short ones"
        )
    return value


def _rating(text: str, column: str, where: str) -> float:
    try:
        value = float(_plain_number(text))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise heirloom.HeirloomError(f"{where}: the {column!r} column is {text!r}, not a finite number")
    return value


def _year(text: str | None, column: str, where: str) -> int | None:
    if text is None or not text.strip():
        return None
    if not re.fullmatch(r"[0-9]{1,4}", text.strip()):  # a reply carries it: msgpack's ints end at 64 bits
        raise heirloom.HeirloomError(f"{where}: the {column!r} column is {text[:40]!r}, not a year (0 to 9999)")
    return int(text)


def _plain_number(text: str) -> str:
    """``text`` if it is a number as a CSV file writes one; else ValueError: Python's float()
    and int() also read ``1_0`` and digits of other scripts (fullwidth, Arabic-Indic)."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return text


def _time(cell: str | None, column: str, where: str) -> float | int | None:
    """A Unix time as written (seconds), or an ISO 8601 date or date-time as one (UTC unless
    it says otherwise); None without a time column or in a blank cell. Eight digits starting with a
    year of 1900-2100 (``20240305``, ISO 8601's basic form) are that date, and an error when they are
    none: as seconds they were 1970-1973, before any rating data, and reordered a latest split; four
    such digits are the year (``_basic_date``)."""
    text = (cell or "").strip()
    if not text:
        return None
    moment = _basic_date(text, column, where)
    if moment is None:
        for parse in (int, float):
            try:
                stamp = parse(_plain_number(text))
            except ValueError:
                continue
            if not math.isfinite(stamp):
                continue
            if stamp < 0:  # a -1 for "unknown" sorted as the oldest rating
                raise heirloom.HeirloomError(f"{where}: the {column!r} column is {text!r}, a Unix time before 1970")
            if stamp >= MILLISECONDS:
                guess = "milliseconds? give seconds" if stamp < 1000 * MILLISECONDS else "not a Unix time"
                raise heirloom.HeirloomError(f"{where}: the {column!r} column is {text[:40]!r}: {guess}")
            return stamp
        try:
            moment = iso_moment(text)
        except ValueError:
            raise heirloom.HeirloomError(
                f"{where}: the {column!r} column is {text!r}, not a Unix time or an ISO 8601 date or date-time "
                f"({ISO_EXAMPLES})"
            ) from None
    stamp = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return int(stamp) if stamp.is_integer() else stamp


def _basic_date(text: str, column: str, where: str) -> datetime | None:
    """``YYYYMMDD`` of the years 1900 to 2100, or None for other text. Eight such digits that are no
    date (``20240230``, month 13) are an error, as ``2024-02-30`` is: read as seconds, a typo in a file
    of basic dates was 1970 and made that rating its user's oldest (checker 283). Four such digits are that
    year's first day (ISO 8601's year): as seconds, a shop's purchase years were all 1970 (checker h439 F1)."""
    if re.fullmatch(r"[0-9]{4}", text) and 1900 <= int(text) <= 2100:
        return datetime(int(text), 1, 1)
    if re.fullmatch(r"[0-9]{7}", text) and 1900 <= int(text[:4]) <= 2100:  # YYYYDDD, the basic ordinal (v36 F9)
        if day := ordinal_day(int(text[:4]), int(text[4:])):
            return day
        raise heirloom.HeirloomError(
            f"{where}: the {column!r} column is {text!r}, not a Unix time or an ISO 8601 date (seven digits of the "
            "years 1900 to 2100 are an ordinal date, YYYYDDD, and this one is none)"
        )
    if not (re.fullmatch(r"[0-9]{8}", text) and 1900 <= int(text[:4]) <= 2100):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise heirloom.HeirloomError(
            f"{where}: the {column!r} column is {text!r}, not a Unix time or an ISO 8601 date (eight digits of "
            "the years 1900 to 2100 are a date, YYYYMMDD, and this one is none)"
        ) from None
