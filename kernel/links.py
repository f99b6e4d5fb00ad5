"""Why a symbolic link leads to no file: said in the link's own terms (what the user wrote), where
"no such file" named the link's target or nothing at all."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
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


def broken_profile(ref: str, folders: Iterable[Path], shown: Callable[[Path], str]) -> str:
    """Why ``ref`` leads to no profile when it is a broken link (``it is a symbolic link loop``) or, a name,
    when the first ``NAME.toml`` of ``folders`` (the search path) is one (``profiles/x.toml links to ...``,
    where "no such profile" hid the file it found); "" when neither is."""
    if why := broken_link(Path(ref)):
        return f"it {why}"
    by_name = [] if "/" in ref or os.sep in ref or ref.endswith(".toml") else [f / f"{ref}.toml" for f in folders]
    return next((f"{shown(link)} {why}" for link in by_name if (why := broken_link(link))), "")
