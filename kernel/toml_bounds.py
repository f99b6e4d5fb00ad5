"""A profile file's TOML, bounded before it is parsed: the TOML parser takes minutes on a single
50,000-part key, and Python cannot read an integer of over 4,300 digits (tomllib's error names no key)."""

from __future__ import annotations

import ast
import re
import tomllib
from typing import Any

from heirloom.profile_toml import BARE_KEY, dotted

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


class TwiceInToml(tomllib.TOMLDecodeError):
    """tomllib's error for a key set twice or a table declared twice, told by the key path (``models.clf.seed``)
    and ``line:column``: tomllib's said "Cannot overwrite a value" (no key) and "Cannot declare ('models', 'clf')
    twice" (a Python tuple; checker h325 F3)."""

    def __init__(self, at: str, key: str, said: str):
        super().__init__(f"{said} (at line {at.replace(':', ', column ')})")  # no key: the gateway's tokens file
        # quotes this, and there a key is a token (never in an error: errors reach logs)
        self.at, self.key, self.said = at, key, said


_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)
_KEY = rf"(?:{BARE_KEY.pattern}|{QUOTED})(?:[ \t]*\.[ \t]*(?:{BARE_KEY.pattern}|{QUOTED}))*"


def parse_bounded(data: bytes, size: int = 0) -> dict[str, Any]:
    """Parse a profile file's bytes after checking their size (``size``: the file's, where ``data`` is its first
    MAX_PROFILE_BYTES + 1 bytes only) and shape (ValueError says what is wrong; TwiceInToml a key set twice)."""
    if (size := max(size, len(data))) > MAX_PROFILE_BYTES:
        raise ValueError(f"the file is {size} bytes; a profile may be at most {MAX_PROFILE_BYTES}")
    text = data.decode("utf-8-sig")  # a byte-order mark (an editor's) is no part of the text
    bare = _STRINGS_AND_COMMENTS.sub("s", text)
    if _LONG_DOTTED_KEY.search(bare):
        raise ValueError(f"a dotted key or table name has more than {MAX_DEPTH} parts")
    check_nesting(text)
    try:
        return tomllib.loads(_LONG_INTEGER.sub(lambda match: match[1] or f'"\\u0000{TOO_LONG_INTEGER}"', text))
    except tomllib.TOMLDecodeError as exc:
        if twice := _twice(str(exc), text.splitlines()):
            raise twice from None
        raise


def _twice(message: str, lines: list[str]) -> TwiceInToml | None:
    """tomllib's ``message`` of a key or table given twice, as TwiceInToml; else None."""
    if not (match := _AT.match(message)) or not 0 < (line := int(match[2])) <= len(lines):
        return None
    at = f"{line}:{match[3]}"
    if declared := re.fullmatch(r"Cannot declare (\(.*\)) twice", match[1]):
        return TwiceInToml(at, dotted(ast.literal_eval(declared[1])), "declared twice (a table is declared once)")
    if match[1] != "Cannot overwrite a value" or not (key := re.match(rf"[ \t]*({_KEY})[ \t]*=", lines[line - 1])):
        return None
    header = next((h for h in reversed(lines[: line - 1]) if re.match(r"[ \t]*\[", h)), "")
    table = re.match(rf"[ \t]*\[\[?[ \t]*({_KEY})[ \t]*\]", header)
    try:
        parts, node = [], tomllib.loads(f"{table[1] + '.' if table else ''}{key[1]} = 0")
    except tomllib.TOMLDecodeError:  # a quoted part's escape that TOML has not: tomllib's words stand
        return None
    while isinstance(node, dict):
        [(part, node)] = node.items()
        parts.append(part)
    return TwiceInToml(at, dotted(parts), "set twice (a key is set once in a file)")


def check_nesting(text: str) -> None:
    """ValueError when ``text``'s arrays or inline tables nest past MAX_DEPTH: tomllib recurses once
    per level, so 1,000 ``[`` were a RecursionError (a file's text, or a ``--set`` VALUE)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS_AND_COMMENTS.sub("s", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise ValueError(f"arrays or inline tables nested more than {MAX_DEPTH} levels deep")
