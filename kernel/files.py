"""Reading a file a profile names, whole: only a regular file. A FIFO named by mistake would
hang the read (a source's fingerprint read its files before anything else opened them), and
a folder raised IsADirectoryError from deep inside a plugin."""

from __future__ import annotations

import os
from pathlib import Path

from heirloom.core.fsutil import open_regular


def read_regular(path: str | Path) -> bytes:
    """The bytes of ``path``; NotRegularFile (one line from ``train`` and ``eval``) when it is a
    folder, a FIFO or a device."""
    with os.fdopen(open_regular(Path(path)), "rb") as handle:
        return handle.read()
