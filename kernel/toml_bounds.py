"""A profile file's TOML, bounded before it is parsed: the TOML parser takes minutes on a single
50,000-part key, and Python cannot read an integer of over 4,300 digits (tomllib's error names no key)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

MAX_PROFILE_BYTES = 1 << 20
MAX_DEPTH = 32
QUOTED = r""""(?:[^"\\\n]|\\.)*"|'[^'\n]*'"""  # a TOML "basic" or 'literal' string on one line
_STRINGS_AND_COMMENTS = re.compile(rf"""\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''.*?'''|{QUOTED}|#[^\n]*""", re.DOTALL)
#: Tried only where a word starts, each part taken whole: searched from every offset of one long word, the
#: search backtracked through the rest of it each time (50,000 digits: 22 s; 1,000,000: hours; checker 305).
_LONG_DOTTED_KEY = re.compile(rf"(?<![\w-])(?:[\w-]++[ \t]*+\.[ \t]*+){{{MAX_DEPTH},}}")
_BRACKETS = re.compile(r"[\[\]{}]")
#: An integer longer than Python reads: a marker stands in (the profile's ``_interpolate`` names its key).
_LONG_INTEGER = re.compile(
    rf"({_STRINGS_AND_COMMENTS.pattern})|(?<![\w.+-])[+-]?[0-9][0-9_]{{4300,}}(?![\w.])", re.DOTALL
)
TOO_LONG_INTEGER = "an integer of over 4,300 digits (TOML's integers are 64-bit)"


def parse_bounded(data: bytes) -> dict[str, Any]:
    """Parse a profile file's bytes after checking their size and shape (ValueError says what is wrong)."""
    if len(data) > MAX_PROFILE_BYTES:
        raise ValueError(f"the file is {len(data)} bytes; a profile may be at most {MAX_PROFILE_BYTES}")
    text = data.decode("utf-8-sig")  # a byte-order mark (an editor's) is no part of the text
    bare = _STRINGS_AND_COMMENTS.sub("s", text)
    if _LONG_DOTTED_KEY.search(bare):
        raise ValueError(f"a dotted key or table name has more than {MAX_DEPTH} parts")
    check_nesting(text)
    return tomllib.loads(_LONG_INTEGER.sub(lambda match: match[1] or f'"\\u0000{TOO_LONG_INTEGER}"', text))


def check_nesting(text: str) -> None:
    """ValueError when ``text``'s arrays or inline tables nest past MAX_DEPTH: tomllib recurses once
    per level, so 1,000 ``[`` were a RecursionError (a file's text, or a ``--set`` VALUE)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS_AND_COMMENTS.sub("s", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise ValueError(f"arrays or inline tables nested more than {MAX_DEPTH} levels deep")
