"""The recommend console: a user's history and their recommendations, for ``heirloom gateway``."""

from __future__ import annotations

import re
from html import escape
from typing import Any

import heirloom

HISTORY_SHOWN = 20


def _items(items: list[dict[str, Any]], css: str, score: bool) -> str:
    head = "<th>item</th><th>title</th><th>year</th><th>genres</th>" + ("<th>score</th>" if score else "")
    rows = "".join(
        f"<tr data-item='{escape(str(item['item']))}'><td>{escape(str(item['item']))}</td>"
        f"<td>{escape(str(item['title']))}</td><td>{escape(str(item.get('year') or ''))}</td>"
        f"<td>{escape(', '.join(item.get('genres') or []))}</td>"
        + (f"<td class='number'>{item['score']:.4f}</td>" if score else "")
        + "</tr>"
        for item in items
    )
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render(request: heirloom.ConsoleRequest) -> str:
    user = request.query.get("user", "").strip()
    k = request.query.get("k", "10")
    route = request.routes.get(f"{request.api}.recommend") or {}
    limit = ((route.get("input") or {}).get("properties") or {}).get("user", {}).get("maxLength")
    form = (  # maxlength: the route's, so the browser stops a longer id where it is typed (checker 283)
        "<form method='get'><label>User <input name='user' value='"
        + escape(user)
        + "'"
        + (f" maxlength='{int(limit)}'" if limit else "")
        + " autofocus></label> "
        "<label>How many <input name='k' type='number' min='1' max='100' value='" + escape(k) + "'></label> "
        "<button>Recommend</button></form>"
    )
    if not user:  # no catalogue's range: every shop was told "MovieLens: 1 to 943"
        return form + "<p>Enter the id of a user the served version knows.</p>"
    # "²" is a digit; -1 and 101 are the route's to refuse, saying how large (it was "no whole number")
    if not re.fullmatch(r"-?[0-9]+", k):
        return form + "<p class='error'>'How many' must be a whole number in digits, such as 10.</p>"
    if len(k.lstrip("-").lstrip("0")) > 9:  # 10^23 cannot be sent: said as the number it is (checker h460 F3)
        return form + "<p class='error'>'How many' must be between 1 and 100.</p>"
    try:
        history = request.call("history", {"user": user, "limit": HISTORY_SHOWN})
        recommended = request.call("recommend", {"user": user, "k": int(k)})
    except heirloom.RemoteError as error:
        return form + f"<p class='error'>{escape(error.code)}: {escape(error.message)}</p>"
    return (
        form
        + f"<p>Served by <code class='version'>{escape(str(recommended.get('version')))}</code>.</p>"
        + f"<h2>Recommended for {escape(user)}</h2>"
        + _items(recommended["items"], "recommendations", score=True)
        + f"<h2>History <small>({len(history['items'])} of {history['count']} items)</small></h2>"
        + _items(history["items"], "history", score=False)
    )


CONSOLE = heirloom.Console(
    title="Recommendations",
    routes=("recommend", "history"),
    render=render,
    description="A user's history and the items recommended to them.",
)
