"""Bounds on what arrives from outside: how deep a value nests and how long a message that
quotes it may be. The wire and the HTTP gateway both use them, so both refuse and cut alike."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

#: Longest error message (or field) sent back: quoting a huge bad value must not make the reply as large.
MESSAGE_LIMIT = 1000


def shortened(message: str) -> str:
    """``message`` cut to at most MESSAGE_LIMIT characters, ending with how many were left out."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    keep = MESSAGE_LIMIT - len(f"... ({len(message)} more characters)")  # a count never longer than this
    return f"{message[:keep]}... ({len(message) - keep} more characters)"


class TooDeep(ValueError):
    """A value whose lists and maps nest past the limit, or hold more values than allowed."""


def leaves(value: Any, max_depth: int, max_values: int | None = None) -> Iterator[Any]:
    """Every value inside ``value`` that is not a dict, list or tuple (``value`` itself if it is none); TooDeep once a
    container sits ``max_depth`` levels down, or past ``max_values`` values and containers. An explicit stack, not
    recursion: a hostile depth must not exhaust the interpreter's stack on the way."""
    stack, seen = [(value, 0)], 1
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth == max_depth:
                raise TooDeep(f"the value nests arrays and maps deeper than {max_depth} levels")
            if max_values is not None and (seen := seen + len(node)) > max_values:  # before any is stacked
                raise TooDeep(f"the value holds more than {max_values} arrays, maps and values")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
        else:
            yield node


def nests_deeper(value: Any, max_depth: int, max_values: int | None = None) -> str | None:
    """Why ``value``'s dicts, lists and tuples nest past ``max_depth`` (``[[1]]``: two levels) or
    hold more than ``max_values`` in all; None when they do not."""
    try:
        deque(leaves(value, max_depth, max_values), maxlen=0)
    except TooDeep as exc:
        return str(exc)
    return None
