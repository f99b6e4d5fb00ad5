"""Where heirloom keeps state on disk: one place, overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "heirloom"


def home() -> Path:
    """heirloom's home (its store is ``home() / "store"``): ``HEIRLOOM_HOME``, else the platform's user data dir."""
    configured = os.environ.get("HEIRLOOM_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Disposable caches: under ``HEIRLOOM_HOME`` when set (keeps tests isolated)."""
    return home() / "cache" if os.environ.get("HEIRLOOM_HOME") else Path(platformdirs.user_cache_dir(APP))


def data_root() -> Path:
    """The data folder profiles call ``${data}``: ``HEIRLOOM_DATA`` (a relative one from the current folder,
    once: not from each profile file's), else ``data`` in the home (where ``heirloom data fetch`` puts them)."""
    return Path(configured).absolute() if (configured := os.environ.get("HEIRLOOM_DATA")) else home() / "data"
