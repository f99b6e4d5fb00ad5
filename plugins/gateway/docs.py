"""``/docs``: the OpenAPI document as a page where each operation can be tried.

Self-contained (no script or style from elsewhere): a form per operation sends its JSON
body with ``fetch`` and shows the status and reply; a field per ``{placeholder}`` of its path
(pre-filled with the parameter's example: the served version) says what the path holds.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

SCRIPT = """
async function send(form) {
  const out = form.querySelector('pre.reply');
  const init = {method: form.dataset.method, headers: {'Content-Type': 'application/json'}};
  if (form.dataset.method === 'POST') init.body = form.querySelector('textarea').value;
  const token = document.getElementById('token').value;
  if (token) init.headers['Authorization'] = 'Bearer ' + token;
  const path = form.dataset.path.replace(/[{]([^}]+)[}]/g, (_, name) =>
    encodeURIComponent(form.querySelector(`input[data-param="${name}"]`).value));
  const response = await fetch(path, init);
  out.textContent = response.status + ' ' + response.statusText + '\\n' + await response.text();
  return false;
}
"""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; }
section { border: 1px solid #ccd; border-radius: 6px; margin: 1rem 0; padding: .5rem 1rem; }
code.method { font-weight: bold; } pre { background: #f4f4f8; padding: .5rem; overflow: auto; }
textarea { width: 100%; font-family: monospace; }
"""


def _example(schema: dict[str, Any], depth: int = 0) -> Any:
    """A value ``schema`` admits, as a form's default (``{"text": null, "texts": null}`` was refused by the route it
    filled): a oneOf's or anyOf's first choice that is not null, an object's required keys (all when none is), the
    first of ``examples``, a text ``"example"``, a number its minimum; null where the schema says nothing."""
    if "example" in schema or depth > 16:
        return schema.get("example")
    if schema.get("examples"):  # a value the route takes that a schema cannot make (a model's label)
        return schema["examples"][0]
    if schema.get("enum") or "const" in schema:
        return schema["enum"][0] if schema.get("enum") else schema["const"]
    for key in ("oneOf", "anyOf"):
        if choices := [choice for choice in schema.get(key, []) if choice.get("type") != "null"]:
            rest = {name: value for name, value in schema.items() if name != key}
            properties = {**rest.get("properties", {}), **choices[0].get("properties", {})}
            return _example({**rest, **choices[0], "properties": properties}, depth + 1)
    kinds = schema.get("type", "object" if "properties" in schema else "null")
    kind = next((k for k in kinds if k != "null"), "null") if isinstance(kinds, list) else kinds
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(properties.get(name, {}), depth + 1) for name in schema.get("required") or properties}
    if kind == "array":
        return [_example(schema.get("items") or {}, depth + 1)] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        least = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return least if kind == "number" else int(least)
    if kind == "string":
        return "example" if schema.get("minLength", 0) <= 7 else "x" * schema["minLength"]
    return False if kind == "boolean" else None


def _default(body: dict[str, Any]) -> str:
    """A form's default body: the operation's example (an infer request's), else one built from its schema."""
    example = body["example"] if "example" in body else _example(body.get("schema", {}))
    return "" if example is None else json.dumps(example, indent=1)


def docs_page(document: dict[str, Any]) -> str:
    sections = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json", {})
            schema = body.get("schema", {})
            ident = escape(operation["operationId"])
            textarea = (
                f'<label for="{ident}-body">request body (JSON)</label>'
                f'<textarea id="{ident}-body" rows="4" name="body">{escape(_default(body))}</textarea>'
                f"<details><summary>body schema</summary><pre>{escape(json.dumps(schema, indent=1))}</pre></details>"
                if method == "post"
                else ""
            )
            fields = "".join(
                f'<label>{escape(p["name"])} <input data-param="{escape(p["name"])}" required '
                f'value="{escape(str((p["schema"].get("examples") or [""])[0]))}"></label> '
                for p in operation.get("parameters", [])
                if p["in"] == "path"
            )
            named = f"{method.upper()} {escape(path)}"  # the button's name says which operation it sends (h416 F1)
            sections.append(
                f'<section id="{ident}"><h2><code class="method">{method.upper()}</code> '
                f"<code>{escape(path)}</code></h2><p>{escape(operation.get('summary', ''))}</p>"
                f"<p>{escape(operation.get('description', ''))}</p>"
                f'<form data-method="{method.upper()}" data-path="{escape(path)}" '
                f'onsubmit="send(this); return false;">{fields}{textarea}'
                f'<button aria-label="Send {named}">Send</button><pre class="reply" role="status" aria-live="polite" '
                f'aria-label="reply to {named}"></pre></form></section>'
            )
    info = document["info"]
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(info['title'])}</title>"
        "<link rel='icon' href='data:,'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body><main>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1><p>{escape(info['description'])} "
        f'The machine-readable document: <a href="/openapi.json">/openapi.json</a>. A path\'s '
        f"<code>{{...}}</code> is sent as its field says.</p>"
        f'<label>Bearer token <input id="token" type="password"></label>{"".join(sections)}</main></body></html>'
    )
