"""The ``echo`` api: route ``<name>.echo`` returns its input unchanged.

The smallest useful api: a liveness probe with a payload, and the transport baseline
for benchmarks (it runs inline on the daemon's I/O loop).
"""

from __future__ import annotations

from typing import Any

import attrs

import heirloom


@attrs.define
class EchoApi(heirloom.Api):
    """Echoes any msgpack value back. No configuration."""

    def routes(self) -> list[heirloom.Route]:
        return [heirloom.Route("echo", handler=_echo, inline=True, description="Returns the request body unchanged.")]


def _echo(body: Any) -> Any:
    return body


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("echo", EchoApi)
