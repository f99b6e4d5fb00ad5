"""Click options that more than one command defines the same way (the kernel's and plugins').

Plugins take them from :mod:`heirloom.options`, the public face of this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def listen_options(default_port: int) -> Callable[[F], F]:
    """``--host`` and ``--port`` of a command that serves HTTP (``heirloom gateway``, ``heirloom ui``)."""
    host = click.option(
        "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."
    )
    port = click.option(
        "--port", default=default_port, show_default=True, type=click.IntRange(0, 65535), help="HTTP port."
    )

    def decorate(command: F) -> F:
        return host(port(command))

    return decorate
