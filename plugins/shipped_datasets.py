"""Registers the public data sets the shipped profiles read, so ``heirloom data fetch NAME``
puts byte-identical originals where those profiles look (``${data}/NAME``).

Each manifest (``datasets/NAME.json``) pins its files to an upstream commit or release
archive and their sha256, checked against the copies heirloom's figures were measured on.
"""

from __future__ import annotations

from importlib.resources import files

import heirloom


@heirloom.hookimpl
def heirloom_register_datasets(register):
    for entry in files("heirloom_plugins").joinpath("datasets").iterdir():
        if entry.name.endswith(".json"):
            register(entry.name.removesuffix(".json"), heirloom.Dataset.from_manifest(entry.read_text("utf-8")))
