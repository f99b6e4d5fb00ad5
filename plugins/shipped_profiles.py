"""Registers the profiles heirloom ships (the repository's ``profiles/`` folder), so any
project can ``extends = ["minimal"]`` without copying files."""

from __future__ import annotations

from importlib.resources import files

import heirloom


@heirloom.hookimpl
def heirloom_register_profiles(register):
    for entry in files("heirloom_plugins.profiles").iterdir():
        if entry.name.endswith(".toml"):
            register(entry.name.removesuffix(".toml"), entry)
