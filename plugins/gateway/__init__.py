"""``heirloom gateway``: HTTP in front of a daemon: the Open Inference Protocol v2 for
model routes, every route as plain JSON, an OpenAPI document, and web consoles that
plugins supply (``heirloom_register_consoles``). Starlette + uvicorn (the ``ui`` extra),
imported only when the command runs.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.gateway.command import gateway_command


@heirloom.hookimpl
def heirloom_register_commands(cli):
    cli.add_command(gateway_command)
