"""A request body's decoding, bounded in what it may cost the thread that reads every client's messages."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from heirloom.suggest import did_you_mean
from heirloom.wire.protocol import unpackb

#: Arrays and maps a request body may hold in all: each costs the decoder an allocation and the garbage collector
#: visits, on the thread that reads every client's messages (a MiB of ``[[[[1]]]]``, a million of them, held it 300 ms).
MAX_CONTAINERS = 100_000
#: Every byte but those that start a msgpack array or map: a frame with no more of the others holds no more of them.
_NOT_CONTAINER = bytes(sorted(set(range(256)) - {*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF}))


def unpack_body(frame: bytes) -> Any:
    """``unpackb(frame)``; ValueError past MAX_CONTAINERS arrays and maps, counted as they are built, so a refusal
    costs at most that many (a frame with fewer bytes that could start one, nearly every frame, is not counted)."""
    if len(frame) <= MAX_CONTAINERS or len(bytes(frame).translate(None, _NOT_CONTAINER)) <= MAX_CONTAINERS:
        return unpackb(frame)
    built = itertools.count(1)

    def counted(container: Any) -> Any:
        if next(built) > MAX_CONTAINERS:
            raise ValueError(f"it holds more than {MAX_CONTAINERS:,} arrays and maps, the most a body may")
        return container

    return unpackb(frame, list_hook=counted, object_hook=counted)


def binary_key(body: Any, path: list[str], message: str) -> tuple[list[str], str] | None:
    """``(path, message)`` for an ``unknown key`` refusal (as ``flatten_errors`` gives it: ``path`` ends with the key
    as Python prints it, ``b'text'``) whose key the client packed as bin, said in the protocol's words as the header's
    near-miss is, with the key's text in the path; None for any other refusal. A Rust or C client read
    ``body.b'text': unknown key; did you mean 'text'?`` (checker h344 F4)."""
    valid = re.search(r"\(valid keys: (.*)\)$", message) if message.startswith("unknown key") and path else None
    held = body
    for step in path[:-1]:  # the map that holds the key: a field's name, a list's [i] or a mapping's key
        index = re.fullmatch(r"\[(\d+)\]", step)
        if index and isinstance(held, list) and int(index[1]) < len(held):
            held = held[int(index[1])]
        else:
            held = held.get(step) if isinstance(held, dict) and not index else None
    keys = held if isinstance(held, dict) and valid else ()
    key = next((key for key in keys if type(key) is bytes and str(key) == path[-1]), None)
    if key is None or valid is None:
        return None
    text, utf8 = _key_text(key)
    names = valid[1].split(", ")
    shown = f'"{text}"'  # a NUL shows as \x00 in the message and the field alike
    if utf8 and text in names:
        where = field_of(path[:-1])
        return [
            *path[:-1],
            text,
        ], f"{'the body' if where == 'body' else where} has {shown} as binary: keys are msgpack strings"
    hint = did_you_mean(text, names) if utf8 else ""
    packed = "packed as binary" if utf8 else "packed as binary that is not UTF-8 text"
    return [
        *path[:-1],
        text,
    ], f"unknown key {shown}, {packed} (keys are msgpack strings){hint} ({valid[0][1:-1]})"


def field_of(path: list[str]) -> str:
    """The error's ``field`` for a refusal at ``path`` (``body.items[0].time``), each character of a key that does
    not print escaped as JSON escapes it (``\\u001b``, ``\\u200b``), as a bin key's are: a str key's ESC reached the
    terminal of a client printing the error, and a zero-width space read as the key it hid in (checker h436 F1)."""
    return "body" + "".join(step if step.startswith("[") else f".{step}" for step in map(printable, path))


def printable(text: str) -> str:
    """``text`` with each character that does not print escaped as JSON escapes it: safe to show on a terminal."""
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _key_text(key: bytes) -> tuple[str, bool]:
    """A bin key as a message and a field show it, and whether it is UTF-8: its text as JSON escapes it (``\\"``,
    ``\\u001b``, as the header's near-miss shows a NUL), every other character that does not print escaped too
    (``\\u200b``), and bytes that are not UTF-8 as ``\\xe9``: they read as U+FFFD, so latin-1 ``été`` and ``\\xff``
    read alike and the field held the replacement characters (checker v9 F5)."""
    try:
        text, utf8 = key.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = key.decode("utf-8", "surrogateescape"), False  # each byte that is not UTF-8: one surrogate
    return "".join(_escaped(c) for c in text), utf8


def _escaped(c: str) -> str:
    if 0xDC80 <= ord(c) <= 0xDCFF:  # a byte surrogateescape kept
        return f"\\x{ord(c) - 0xDC00:02x}"
    return json.dumps(c, ensure_ascii=not c.isprintable())[1:-1]
