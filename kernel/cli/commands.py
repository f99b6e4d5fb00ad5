"""The kernel's commands plugin: every built-in command, registered like a plugin's.

The kernel always lists this plugin (``heirloom.commands``) and the environment cannot
disable it, so ``HEIRLOOM_LOAD_PLUGINS`` never takes ``serve`` away.
"""

from __future__ import annotations

import click

from heirloom.cli import call, data, inspect, keys, models, new, serve, train
from heirloom.core.hookspecs import hookimpl


@hookimpl
def heirloom_register_commands(cli: click.Group) -> None:
    for module in (inspect, serve, call, keys, train, models, data, new):
        for command in module.COMMANDS:
            cli.add_command(command)
