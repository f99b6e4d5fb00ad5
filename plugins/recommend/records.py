"""The records recommendation sources yield, and the seeded choices that split them.

Two shapes of plain dict, told apart by ``type``, so that any source can feed the
``hybrid-recommender`` and a ``union`` source can mix them:

- a catalogue item: ``{"type": "item", "item", "title", "year", "genres", "cold"}``
  (``year`` may be None; ``cold`` marks the items of the cold-start protocol);
- an interaction: ``{"type": "interaction", "user", "item", "kind", "value", "time"}``
  (a rating, a click, a purchase...: every kind counts as a positive interaction), and
  optionally ``"line"``, where it was read (``PATH:N``): the ``events`` source gives an
  untimed event's, so a model that needs times (``half_life_days``) names that line.

User and item ids are strings. Every choice below depends only on the ids, the times, the
fraction and the seed, never on record order, so a split is the same on every machine and
a model can carve exactly the split a source would (see ``per_user_holdout``).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

import heirloom

ITEM = "item"
INTERACTION = "interaction"
#: A title that ends in its year, as MovieLens writes them: ``Toy Story (1995)``.
TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


#: The longest id a source or a request may name (the api's bound: data never holds an id no request can reach).
MAX_ID_CHARS = 256
Id = str | int
#: What ``id_ok`` enforces of a text id, for ``_routes`` (a length and a pattern bound no integer id).
TEXT_ID = {"minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": r"\S"}
ID_SCHEMA = {"schema": TEXT_ID}


def id_key(value: str | int) -> str:
    """An id as sources and requests compare it: text in Unicode NFC without surrounding spaces
    (``José`` typed two ways was two users; ``" user 1 "`` unknown to the api, as ``user 1`` to the
    csv source, and a new user once its event trained)."""
    return unicodedata.normalize("NFC", str(value).strip())


def id_ok(instance: Any, attribute: attrs.Attribute, value: Id | None) -> None:
    """A user or item id of a request (or of a logged event): a whole number, or text that is not
    blank and holds no invisible or control character (a bool is neither)."""
    if value is None and attribute.default is None:
        return
    key = id_key(value) if isinstance(value, str) else None  # as it is stored and looked up: sources say the same
    if isinstance(value, bool) or (key is not None and not 0 < len(key) <= MAX_ID_CHARS):
        shown = f"{len(key)} characters" if key is not None and len(key) > MAX_ID_CHARS else repr(value)
        if key and len(key) != len(value.strip()):  # the client sent fewer: say why they count more
            shown += " in Unicode's composed form (NFC), as ids are stored"
        raise ValueError(
            f"'{attribute.name}' must be a whole number or 1 to {MAX_ID_CHARS} characters of text, got {shown}"
        )
    if key is not None and (problem := id_problem(key)):
        raise ValueError(f"'{attribute.name}' {problem}")


def id_problem(key: str, what: str = "an id") -> str | None:
    """Why text ``key`` is no id (or no ``what``), or None: one holding a character that prints as nothing or is
    no text (``a\\u0000b``, ``\\u200b``) was recorded and trained on as a user no one can name."""
    if (char := heirloom.unprintable(key)) is None:
        return None
    return f"holds U+{ord(char):04X}, an invisible or control character: {what} must print as itself"


def item_record(item: str, title: str, year: int | None, genres: list[str], cold: bool = False) -> dict[str, Any]:
    return {"type": ITEM, "item": item, "title": title, "year": year, "genres": genres, "cold": cold}


def interaction_record(user: str, item: str, kind: str, value: float, time: float) -> dict[str, Any]:
    return {"type": INTERACTION, "user": user, "item": item, "kind": kind, "value": value, "time": time}


def per_user_holdout(
    pairs: Iterable[tuple[str, str]],
    fraction: float,
    seed: int,
    purpose: str,
    times: Mapping[tuple[str, str], float] | None = None,
) -> set[tuple[str, str]]:
    """The ``(user, item)`` pairs held out: ``round(n * fraction)`` of each user's distinct
    items, shuffled by a generator seeded with ``(purpose, seed, user)``.

    Without ``times`` this is the per-user random split of the Microsoft Recommenders
    protocol. With ``times`` (a pair's latest time) the held items are each user's most
    recent ones, so a model is measured on what users did next; the seeded shuffle only
    breaks ties between equal times, so the choice never depends on file order. A user keeps
    at least one item whenever they have two or more. ``purpose`` (``"test"``,
    ``"validation"``) keeps the choices of different splits independent.
    """
    by_user: dict[str, set[str]] = defaultdict(set)
    for user, item in pairs:
        by_user[user].add(item)
    held: set[tuple[str, str]] = set()
    for user, items in by_user.items():
        ordered = sorted(items)
        random.Random(f"{purpose}:{seed}:{user}").shuffle(ordered)
        if times is not None:
            ordered.sort(key=lambda item: times[user, item], reverse=True)  # stable: ties keep the shuffle
        count = min(round(len(ordered) * fraction), len(ordered) - 1)
        held.update((user, item) for item in ordered[: max(count, 0)])
    return held


def latest_times(ratings: Iterable[tuple[str, str, float]]) -> dict[tuple[str, str], float]:
    """Each ``(user, item)`` pair's latest time, from ``(user, item, time)`` ratings (an item
    rated twice counts as recent as its last rating)."""
    latest: dict[tuple[str, str], float] = {}
    for user, item, stamp in ratings:
        if (user, item) not in latest or stamp > latest[user, item]:
            latest[user, item] = stamp
    return latest


def seeded_share(ids: Iterable[str], fraction: float, seed: int, purpose: str) -> set[str]:
    """``round(n * fraction)`` of the distinct ``ids``, chosen with a seeded generator."""
    ordered = sorted(set(ids))
    return set(random.Random(f"{purpose}:{seed}").sample(ordered, round(len(ordered) * fraction)))


def parse_year(title: str, release: str = "") -> int | None:
    """The year in a ``Title (1995)`` title, else the year of a ``01-Jan-1995`` date."""
    found = TITLE_YEAR.search(title)
    if found:
        return int(found.group(1))
    tail = release.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None
