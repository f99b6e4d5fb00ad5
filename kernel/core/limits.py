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
    """A value whose lists and maps nest past the limit."""


def leaves(value: Any, max_depth: int) -> Iterator[Any]:
    """Every value inside ``value`` that is not a dict, list or tuple (``value`` itself if it
    is none); TooDeep once a container sits ``max_depth`` levels down. An explicit stack, not
    recursion: a hostile depth must not exhaust the interpreter's stack on the way."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth == max_depth:
                raise TooDeep(f"the value nests arrays and maps deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
        else:
            yield node


def nests_deeper(value: Any, max_depth: int) -> bool:
    """Whether ``value``'s dicts, lists and tuples nest past ``max_depth`` (``[[1]]``: two levels)."""
    try:
        deque(leaves(value, max_depth), maxlen=0)
    except TooDeep:
        return True
    return False
