"""The kernel's commands plugin: every built-in command, registered like a plugin's.

The kernel always lists this plugin (``heirloom.commands``) and the environment cannot
disable it, so ``HEIRLOOM_LOAD_PLUGINS`` never takes ``serve`` away. ``BUILTIN`` names the
module of each command, so ``heirloom call`` imports the client alone, not every command.
"""

from __future__ import annotations

import importlib

import click

from heirloom.core.hookspecs import hookimpl

#: Each built-in command and the module that defines it (in its ``COMMANDS``).
BUILTIN = {
    "plugins": "heirloom.cli.inspect",
    "profiles": "heirloom.cli.inspect",
    "profile": "heirloom.cli.inspect",
    "serve": "heirloom.cli.serve",
    "worker": "heirloom.cli.serve",
    "call": "heirloom.cli.call",
    "keys": "heirloom.cli.keys",
    "train": "heirloom.cli.train",
    "eval": "heirloom.cli.train",
    "models": "heirloom.cli.models",
    "feedback": "heirloom.cli.feedback",
    "data": "heirloom.cli.data",
    "new": "heirloom.cli.new",
}


def builtin_commands(module: str) -> list[click.Command]:
    return list(importlib.import_module(module).COMMANDS)


@hookimpl
def heirloom_register_commands(cli: click.Group) -> None:
    for module in dict.fromkeys(BUILTIN.values()):
        for command in builtin_commands(module):
            cli.add_command(command)
