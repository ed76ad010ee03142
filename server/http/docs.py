"""The API documentation page, rendered on the server from the OpenAPI document.

Litestar's stock pages (Swagger UI, ReDoc, RapiDoc, Elements) load their
scripts and fonts from a CDN and are blank without a network. This page is
plain HTML and inline CSS, built from the same OpenAPI document: it works on
an air-gapped machine, and the machine-readable document stays at
``/schema/openapi.json`` (and ``.yaml``).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;margin-top:2rem}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.method{font-weight:bold;text-transform:uppercase;display:inline-block;min-width:4.5rem}
code,pre{background:#f5f5f5;padding:0 .25rem;border-radius:3px}
pre{padding:.5rem;overflow-x:auto}table{border-collapse:collapse}
td,th{text-align:left;padding:.15rem .75rem .15rem 0;vertical-align:top}
nav a{margin-right:1rem}.muted{color:#666}
"""


def _schema_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_schema_text(schema.get('items'))}"
    if "oneOf" in schema or "anyOf" in schema:
        return " | ".join(_schema_text(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    return str(kind)


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op" id="{escape(method + path)}">',
        f'<span class="method">{escape(method)}</span> <code>{escape(path)}</code>',
    ]
    if op.get("summary"):
        parts.append(f"<p><strong>{escape(str(op['summary']))}</strong></p>")
    if op.get("description"):
        parts.append(f"<pre>{escape(str(op['description']))}</pre>")
    params = op.get("parameters") or []
    if params:
        parts.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>")
        for param in params:
            required = " (required)" if param.get("required") else ""
            parts.append(
                f"<tr><td><code>{escape(str(param.get('name', '')))}</code>{required}</td>"
                f"<td>{escape(str(param.get('in', '')))}</td>"
                f"<td>{escape(_schema_text(param.get('schema')))}</td>"
                f"<td>{escape(str(param.get('description', '')))}</td></tr>"
            )
        parts.append("</table>")
    responses = op.get("responses") or {}
    if responses:
        parts.append("<table><tr><th>response</th><th></th></tr>")
        for code, response in responses.items():
            parts.append(
                f"<tr><td>{escape(str(code))}</td>"
                f"<td>{escape(str(response.get('description', '')))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div>")
    return "\n".join(parts)


def render_docs(schema: dict[str, Any], json_url: str) -> str:
    """The whole page for an OpenAPI document."""
    info = schema.get("info", {})
    title = escape(str(info.get("title", "API")))
    by_tag: dict[str, list[str]] = {}
    for path, item in sorted(schema.get("paths", {}).items()):
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["Other"])[0]
            by_tag.setdefault(tag, []).append(_operation(method, path, op))
    nav = " ".join(f'<a href="#{escape(t)}">{escape(t)}</a>' for t in by_tag)
    sections = "\n".join(
        f'<h2 id="{escape(tag)}">{escape(tag)}</h2>\n' + "\n".join(ops)
        for tag, ops in by_tag.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title><style>{_STYLE}</style></head>
<body><h1>{title} API</h1>
<p class="muted">version {escape(str(info.get("version", "")))} · OpenAPI document:
<a href="{escape(json_url)}">{escape(json_url)}</a> (and <code>openapi.yaml</code>)</p>
<p>{escape(str(info.get("description", "")))}</p>
<nav>{nav}</nav>
{sections}
</body></html>
"""


class LocalDocsRenderPlugin(OpenAPIRenderPlugin):
    """Serves ``render_docs`` (no script, no CDN) at the schema root."""

    def __init__(self, path: str | list[str] = "/") -> None:
        super().__init__(path=path, favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The documentation page as HTML."""
        return render_docs(openapi_schema, self.get_openapi_json_route(request)).encode()
