"""Why a symbolic link leads to no file: said in the link's own terms (what the user wrote), where
"no such file" named the link's target or nothing at all."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def broken_link(path: Path) -> str:
    """``is a symbolic link loop`` or ``links to X, which does not exist`` when ``path`` is a
    symbolic link that leads to no file; "" when it is no link or leads to one."""
    if not path.is_symlink() or path.exists():
        return ""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
    return f"links to {os.readlink(path)}, which does not exist"
