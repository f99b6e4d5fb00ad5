"""``heirloom.Console``: a web page a plugin supplies for the apis it serves.

Framework-free on purpose: a console is a function from a request (the api's name, the
page's query string, a way to call the daemon) to an HTML fragment. ``heirloom gateway``
(Starlette) wraps it in its layout; another front end could serve the same consoles."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs


@attrs.frozen
class ConsoleRequest:
    """What a console's ``render`` gets for one page view."""

    #: The api the page is for (``recs``): call its routes as ``call("recommend", body)``.
    api: str
    #: The page's query string (a server-rendered form submits with GET).
    query: Mapping[str, str]
    #: ``call(method, body)``: ``<api>.<method>``'s reply body; a refusal raises ``heirloom.RemoteError``.
    call: Callable[[str, Any], Any]
    #: ``call_route(route, body)``: any route of the daemon by its full name (``diagnosis.predict``).
    call_route: Callable[[str, Any], Any]
    #: The daemon's routes as ``_routes`` describes them, by name: a console may offer the
    #: routes of other apis whose input fits (every route that takes a ``patient``...).
    routes: Mapping[str, Mapping[str, Any]]


@attrs.frozen
class Console:
    """A server-rendered page for every api that has all of ``routes`` (method names).

    ``render(request) -> str`` returns an HTML fragment; escape what you interpolate (``html.escape``): replies carry
    user data. It runs on a thread, so it may call the daemon synchronously through ``request.call``."""

    title: str
    routes: tuple[str, ...]
    render: Callable[[ConsoleRequest], str]
    description: str = ""

    def serves(self, methods: set[str]) -> bool:
        """Whether an api with these route methods has what this console calls."""
        return set(self.routes) <= methods
