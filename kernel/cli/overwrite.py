"""Output files (``eval --html``, ``feedback export -o``) that would replace what heirloom reads or keeps:
refused before any work, exit 2. Each replaced a file whole, exit 0: the store's index (every version lost),
a feedback log and another api's, a source's test file (checkers h426 F2, v32 F1, F2, F5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heirloom.cli.common import fail
from heirloom.core.paths import home
from heirloom.files import replaces_read_file
from heirloom.limits import leaves
from heirloom.toml_bounds import MAX_DEPTH

if TYPE_CHECKING:
    from heirloom.core.schema import ResolvedProfile


def refuse_overwrite(option: str, path: Path | None, profile: ResolvedProfile, store: Any = None) -> None:
    """Exit 2 where writing ``option``'s ``path`` would replace a profile file, a file or a file in a folder that a
    component names (its data, its log: a relative ``feedback_path`` too, v33 F2), a log in HEIRLOOM_HOME, or
    anything in the store (not the whole data root: ``HEIRLOOM_DATA=.`` would refuse every report in the working
    folder)."""
    if path is None or str(path) == "-":
        return
    texts = [
        value for spec in profile.components for value in leaves(spec.config, MAX_DEPTH + 1) if isinstance(value, str)
    ]
    named = [Path(value) for value in texts if os.path.isabs(value) and len(Path(value).parts) > 1]  # not "/"
    named += [Path(value).absolute() for value in texts if not os.path.isabs(value) and os.path.isfile(value)]
    logs = home().glob("*/*/*.jsonl")  # every project's (v33 F1): a log is heirloom's, whichever profile reads it
    files = [*(Path(file) for file in profile.raw.files), *named, *logs]
    stores = [getattr(store, "root", None), os.environ.get("HEIRLOOM_STORE"), profile.settings["store"].path]
    folders = [Path(folder) for folder in [*stores, home() / "store"] if folder]
    folders += [folder for folder in named if folder.is_dir()]
    if why := replaces_read_file(path, [file for file in files if file.is_file()], folders):
        fail(f"error: {option} {path}: {why}; name another file", 2)
