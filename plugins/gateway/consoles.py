"""Console pages: which registered consoles apply to the daemon's apis, and their layout."""

from __future__ import annotations

from html import escape

import heirloom
from heirloom_plugins.gateway.routes import RouteTable

#: The pages' style. A cell wraps a long unbroken string (a 3,000-character condition name, a URL) within
#: 40rem, so the columns after it (probabilities, scores) stay on screen; short cells keep their width.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1d1d28; }
header { background: #23324a; color: white; padding: .6rem 1.5rem; }
header a { color: #cfe0ff; margin-right: 1rem; } main { padding: 1rem 1.5rem; max-width: 72rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
td, th { border-bottom: 1px solid #dde; padding: .25rem .6rem; text-align: left; }
td { overflow-wrap: break-word; max-width: 40rem; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
form { margin: .5rem 0 1rem; } input, button { font-size: 1rem; padding: .25rem .5rem; }
p.error { color: #a00; font-weight: bold; } .bar { background: #5a7fd0; height: .7rem; display: inline-block; }
"""


#: The pages have no icon: said so, a browser asks for no /favicon.ico (a 404 in its console on every load); and
#: they are laid out at the device's width (a phone drew them 980 px wide, shrunk to a third: checker h416 F5).
NO_ICON = "<link rel='icon' href='data:,'><meta name='viewport' content='width=device-width, initial-scale=1'>"


def mounted(consoles: dict[str, heirloom.Console], table: RouteTable) -> dict[str, heirloom.Console]:
    """``api name -> console`` for every api whose methods a console needs (the most specific wins)."""
    found: dict[str, heirloom.Console] = {}
    for api, methods in sorted(table.apis.items()):
        fitting = [console for _, console in sorted(consoles.items()) if console.serves(methods)]
        if fitting:
            found[api] = max(fitting, key=lambda console: len(console.routes))
    return found


def _page(title: str, content: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>{NO_ICON}"
        f"<style>{STYLE}</style></head><body><header><a href='/console'>consoles</a>"
        f"<a href='/docs'>API docs</a><a href='/openapi.json'>openapi.json</a></header>"
        f"<main>{content}</main></body></html>"
    )


def layout(console: heirloom.Console, api: str, html: str) -> str:
    return _page(f"{console.title}: {api}", f"<h1>{escape(console.title)} <small>({escape(api)})</small></h1>{html}")


def index(found: dict[str, heirloom.Console]) -> str:
    rows = "".join(
        f"<tr><td><a href='/console/{escape(api)}'>{escape(api)}</a></td><td>{escape(console.title)}</td>"
        f"<td>{escape(console.description)}</td></tr>"
        for api, console in found.items()
    )
    body = (
        f"<table class='consoles'><thead><tr><th>api</th><th>console</th><th>what it does</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else "<p>No console fits this daemon's apis.</p>"
    )
    return _page("heirloom consoles", f"<h1>Consoles</h1>{body}")


def missing(api: str) -> str:
    """The 404 page: the name as the JSON errors quote one (cut at 80 characters), its control and bidi
    characters shown escaped (a raw U+202E turned the rest of the line around)."""
    shown = f"{api[:80]}..." if len(api) > 80 else api  # as the daemon's "no route" cuts a name
    said = f"<h1>No console</h1><p class='error'>No console for {escape(repr(shown))} on this daemon.</p>"
    return _page("no console", said)


def failed(console: heirloom.Console, api: str, error: heirloom.RemoteError) -> str:
    return layout(console, api, f"<p class='error'>{escape(error.code)}: {escape(error.message)}</p>")
