"""A profile file's TOML, bounded before it is parsed: the TOML parser takes minutes on a single
50,000-part key, and Python cannot read an integer of over 4,300 digits (tomllib's error names no key)."""

from __future__ import annotations

import ast
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from heirloom.files import open_regular
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


def read_bounded(path: Path) -> dict[str, Any]:
    """A profile file's tree, read no further than the bound (a FIFO or a folder: ``NotRegularFile``)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return parse_bounded(handle.read(MAX_PROFILE_BYTES + 1), os.fstat(handle.fileno()).st_size)  # h325 F13


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
    """tomllib's ``message`` of a key or table given twice, as TwiceInToml; else None. Each of tomllib's that names
    a key (as a Python tuple) is one: the gateway's tokens file printed its token (checker v5 F2, F3)."""
    if not (match := _AT.match(message)) or not 0 < (line := int(match[2])) <= len(lines):
        return None
    at, said, text = f"{line}:{match[3]}", match[1], lines[line - 1]
    if named := re.fullmatch(
        r"(Cannot declare|Cannot redefine namespace|Cannot mutate immutable namespace) (\(.*\))"
        r"( twice)?",
        said,
    ):
        if named[1] == "Cannot mutate immutable namespace" and "{" in text[: int(match[3])]:
            return TwiceInToml(at, "", _TWICE["inline"])  # its key is the inline table's, not the file's
        return TwiceInToml(at, dotted(ast.literal_eval(named[2])), _TWICE[named[1]])
    if said.startswith("Duplicate inline table key "):
        return TwiceInToml(at, "", _TWICE["inline"])
    header = re.match(rf"[ \t]*\[\[?[ \t]*({_KEY})[ \t]*\]", text)
    if said != "Cannot overwrite a value" or not (header or (key := re.match(rf"[ \t]*({_KEY})[ \t]*=", text))):
        return None
    if header:  # [x] or [[x]] where x was a value, or [[x]] where [x] was a table
        return None if (parts := _parts(header[1])) is None else TwiceInToml(at, dotted(parts), _TWICE["header"])
    table = next((h for h in reversed(lines[: line - 1]) if re.match(r"[ \t]*\[", h)), "")
    table = re.match(rf"[ \t]*\[\[?[ \t]*({_KEY})[ \t]*\]", table)
    parts = _parts(f"{table[1] + '.' if table else ''}{key[1]}")
    return None if parts is None else TwiceInToml(at, dotted(parts), "set twice (a key is set once in a file)")


_TWICE = {
    "Cannot declare": "declared twice (a table is declared once)",
    "Cannot redefine namespace": "declared twice (by a [table] header and by a dotted key: declare a table once)",
    "Cannot mutate immutable namespace": (
        "set twice (an array or inline table is whole where it is set: nothing is added to it later)"
    ),
    "inline": "set twice in an inline table (a key is set once)",
    "header": "declared twice (a key is a value, a [table] or an [[array]] of tables, once in a file)",
}


def _parts(key: str) -> list[str] | None:
    """The parts of a TOML dotted ``key`` as written; None for a quoted part's escape that TOML has not (tomllib's
    words stand)."""
    try:
        node = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts = []
    while isinstance(node, dict):
        [(part, node)] = node.items()
        parts.append(part)
    return parts


def check_nesting(text: str) -> None:
    """ValueError when ``text``'s arrays or inline tables nest past MAX_DEPTH: tomllib recurses once
    per level, so 1,000 ``[`` were a RecursionError (a file's text, or a ``--set`` VALUE)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS_AND_COMMENTS.sub("s", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise ValueError(f"arrays or inline tables nested more than {MAX_DEPTH} levels deep")
