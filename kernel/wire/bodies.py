"""A request body's decoding, bounded in what it may cost the thread that reads every client's messages."""

from __future__ import annotations

import itertools
from typing import Any

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
