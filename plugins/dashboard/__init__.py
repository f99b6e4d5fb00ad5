"""``heirloom ui``: a read-only web dashboard over the artifact store and a running daemon.

Stored models, each model's lineage as a graph, each version's evaluation (tables and a
confusion-matrix picture), aliases, and with ``--connect`` a daemon's live route stats.
Starlette + uvicorn, server-rendered, no build step. The web stack is the ``ui`` extra
and is imported only when the command runs, so this plugin costs nothing elsewhere.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.dashboard.command import ui_command


@heirloom.hookimpl
def heirloom_register_commands(cli):
    cli.add_command(ui_command)
