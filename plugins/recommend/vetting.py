"""What the recommend api requires of its model's answers, checked on every one it sends.

The start check asked one empty history for one item and looked at its score; a third
party's model that passed it then sent clients what the api promises they never get (a
known user's own items, the request's history or ``exclude``, the item ``similar`` asked
about), positions outside the catalogue (-1 read as its last item, ``True`` as 1), more than
``k`` items (300,000 for ``k = 1``: 25 MB), an item twice, NaN or text scores, and every key
of ``catalogue.describe``'s answer (a secret path) on every item. Each answer is now checked
as it is sent; a failing one is INTERNAL naming the model, for that request alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from operator import itemgetter
from typing import Any

import heirloom
from heirloom_plugins.model_needs import shape_problem

RECOMMEND_DOC = "docs/RECOMMEND.md, 'Another model behind recommend'"
#: What a ``(position, score)`` pair may be.
PAIRS = {tuple, list}
#: How many catalogue items' vetted descriptions a served model instance keeps: each is asked of
#: ``catalogue.describe`` once, not once per reply.
KEPT = 10_000
#: What ``catalogue.describe(position)`` must answer: the keys a reply's item shows, no others.
ITEM_NEEDS: dict[str, Any] = {
    "item": "a string",
    "title": "a string",
    "year": "a whole number or null",
    "genres": ["a string"],
}


def asked(model: Any, what: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, a member of ``model`` (``what``: how a message names it); what it raises
    names the model, which "recs.recommend failed: ValueError: ..." did not."""
    try:
        return call(*args)
    except (heirloom.RequestError, heirloom.ResourceExhaustedError):
        raise
    except Exception as exc:
        raise RuntimeError(f"{type(model).__name__}: its {what} raised {type(exc).__name__}: {exc}") from exc


def described(model: Any, position: int, kept: dict[int, dict[str, Any]]) -> dict[str, Any] | str:
    """The reply's item at catalogue ``position`` (the keys of ITEM_NEEDS alone, never to be
    changed), or what is wrong with ``catalogue.describe``'s answer. ``kept``: the items already
    vetted of this model instance (see KEPT), so a reply costs what it did before it was checked."""
    if (sent := kept.get(position)) is not None:
        return sent
    item = asked(model, "catalogue.describe()", model.catalogue.describe, position)
    if problem := shape_problem(item, ITEM_NEEDS, f"its catalogue.describe({position})", exact=False):
        return problem
    if (found := model.catalogue.index.get(item["item"])) != position:
        said = f"is item {item['item']!r:.80}, which its catalogue.index puts at {found}"
        return f"its catalogue.describe({position}) {said}"
    sent = {key: item[key] for key in ITEM_NEEDS}
    if len(kept) < KEPT:
        kept[position] = sent
    return sent


def position_problem(position: Any, size: int, what: str) -> str | None:
    """What is wrong with ``position`` as one of a catalogue of ``size`` items, or None."""
    if type(position) is not int or not 0 <= position < size:  # bool and numpy's integers are not int
        return f"{what} gave position {position!r:.40}, not a Python int from 0 to {size - 1} (its catalogue's)"
    return None


def ranked_items(
    model: Any, ranked: Any, k: int, left_out: AbstractSet[int], what: str, promise: str, *, kept: dict[int, Any]
) -> list[dict[str, Any]] | str:
    """The reply's items for the model's ``ranked`` ``(position, score)`` pairs, best first, or
    what is wrong with them (``what``: how a message names the call): at most ``k`` (counted
    first, so a huge answer costs little), each a catalogue position once, none of
    ``left_out`` (``promise`` says whose), each scored by a finite Python number; ``kept``: as
    :func:`described` keeps items."""
    if not isinstance(ranked, list):
        return f"{what} returned {type(ranked).__name__}, not a list of (position, score) pairs"
    if len(ranked) > k:
        return f"{what} returned {len(ranked)} items for k={k}"
    size = len(model.catalogue.index)
    if (
        ranked
        and not _plainly_right(ranked, size, left_out)
        and (problem := _pairs_problem(ranked, size, left_out, what, promise))
    ):
        return problem
    items = []
    for position, score in ranked:
        item = described(model, position, kept)
        if isinstance(item, str):
            return item
        items.append({**item, "score": score})
    items.sort(key=itemgetter("score"), reverse=True)  # best first; stable, so ties in the model's order
    return items


def _plainly_right(ranked: list[Any], size: int, left_out: AbstractSet[int]) -> bool:
    """Whether ``ranked`` passes every check of :func:`_pairs_problem` in Python's own types, read
    at C speed (the shipped model's answers do): what a reply costs. False sends it there, which
    says what is wrong, if anything (an int or numpy float64 score is right, say)."""
    if not set(map(type, ranked)) <= PAIRS:
        return False
    try:
        positions, scores = zip(*ranked, strict=True)  # pairs of one length, and that length 2
    except ValueError:
        return False
    return (
        set(map(type, positions)) == {int}
        and 0 <= min(positions)
        and max(positions) < size
        and len(set(positions)) == len(positions)
        and left_out.isdisjoint(positions)
        and set(map(type, scores)) == {float}
        and all(map(math.isfinite, scores))
    )


def _pairs_problem(ranked: list[Any], size: int, left_out: AbstractSet[int], what: str, promise: str) -> str | None:
    """What is wrong with the first pair of ``ranked`` that is wrong, or None."""
    seen: set[int] = set()
    for pair in ranked:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            return f"{what} ranked {pair!r:.80}, not a (position, score) pair"
        position, score = pair
        if problem := position_problem(position, size, what):
            return problem
        if not _finite(score):
            return f"{what} scored position {position} {score!r:.40}, not a finite Python float"
        if position in seen:
            return f"{what} ranked position {position} twice"
        if position in left_out:
            return f"{what} ranked position {position}, {promise}"
        seen.add(position)
    return None


def _finite(score: Any) -> bool:
    """A score msgpack and strict JSON parsers read: NaN reached clients, numpy's float32 failed
    every reply, and text, None and True were sent as scores."""
    if isinstance(score, float):  # numpy's float64 is one
        return math.isfinite(score)
    return type(score) is int and -(2**63) <= score < 2**64
