"""``/docs``: the OpenAPI document as a page where each operation can be tried.

Self-contained (no script or style from elsewhere): a form per operation sends its JSON
body with ``fetch`` and shows the status and reply.
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
  const response = await fetch(form.dataset.path, init);
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


def _example(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    return json.dumps({name: None for name in schema.get("required", properties)}, indent=1) if properties else ""


def docs_page(document: dict[str, Any]) -> str:
    sections = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json", {})
            schema = body.get("schema", {})
            textarea = (
                f'<textarea rows="4" name="body">{escape(_example(schema))}</textarea>'
                f"<details><summary>body schema</summary><pre>{escape(json.dumps(schema, indent=1))}</pre></details>"
                if method == "post"
                else ""
            )
            sections.append(
                f'<section id="{escape(operation["operationId"])}"><h3><code class="method">{method.upper()}</code> '
                f"<code>{escape(path)}</code></h3><p>{escape(operation.get('summary', ''))}</p>"
                f"<p>{escape(operation.get('description', ''))}</p>"
                f'<form data-method="{method.upper()}" data-path="{escape(path)}" '
                f'onsubmit="send(this); return false;">{textarea}<button>Send</button>'
                f'<pre class="reply"></pre></form></section>'
            )
    info = document["info"]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info['title'])}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1><p>{escape(info['description'])} "
        f'The machine-readable document: <a href="/openapi.json">/openapi.json</a>. Paths with '
        f"<code>{{...}}</code> need the placeholder replaced before sending.</p>"
        f'<label>Bearer token <input id="token" type="password"></label>{"".join(sections)}</body></html>'
    )
