"""A third-party console for the gateway tests: a page over any api with an ``echo`` route."""

from __future__ import annotations

from html import escape

import heirloom


def render(request: heirloom.ConsoleRequest) -> str:
    said = request.query.get("say", "")
    reply = request.call("echo", {"said": said}) if said else None
    return f"<p class='echoed'>{escape(repr(reply))}</p>"


@heirloom.hookimpl
def heirloom_register_consoles(register):
    register("echo-console", heirloom.Console(title="Echo", routes=("echo",), render=render))
