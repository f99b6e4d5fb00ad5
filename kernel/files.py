"""Reading a file a profile names, whole or hashed as it streams: only a regular file. A FIFO named by mistake would
hang the read (a source's fingerprint read its files before anything else opened them), and
a folder raised IsADirectoryError from deep inside a plugin."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from heirloom.core.fsutil import open_regular


def read_regular(path: str | Path) -> bytes:
    """The bytes of ``path``; NotRegularFile (one line from ``train`` and ``eval``) when it is a
    folder, a FIFO or a device."""
    with os.fdopen(open_regular(Path(path)), "rb") as handle:
        return handle.read()


def hash_regular(path: str | Path, digest: Any = None) -> Any:
    """``digest`` (a new ``hashlib.sha256()`` when None) updated with the bytes of ``path``, read 1 MiB at a time,
    and returned: a ``fingerprint()`` of a multi-GB file holds no more than that (``read_regular`` holds it all).
    Refuses what ``read_regular`` refuses."""
    digest = hashlib.sha256() if digest is None else digest
    with os.fdopen(open_regular(Path(path)), "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest
