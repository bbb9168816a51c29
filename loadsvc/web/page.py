"""The status page of ``loadsvc serve`` and the self-contained HTML report of ``loadsvc run``.

Both are one HTML shell around the same script (``assets/app.js``) and the
vendored uPlot: the page links them from ``/assets/`` and polls the API; the
report inlines them with its data, so it opens from disk with no network.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from typing import Any

import orjson

from loadsvc.headline import STATES

# The files the page may be asked for under /assets/ (nothing else is served from there).
ASSETS = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "app.js": "text/javascript",
    "page.css": "text/css",
}

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
{head}
</head>
<body>
<h1>{title} <span id="chosen"></span></h1>
<div id="overall" class="overall state-grey">loading…</div>
<div id="environment"></div>
<div id="problem"></div>
<div id="headlines"></div>
<h2 id="scenarios-title">{scenarios_title}</h2>
<div id="scenarios"></div>
<h2>Over time <span id="zone"></span></h2>
<div id="charts"></div>
<h2 id="runs-title">Recent runs</h2>
<div id="runs"></div>
<p id="updated"></p>
<script id="state-words" type="application/json">{words}</script>
{body}
</body>
</html>
"""


@cache
def asset(name: str) -> bytes:
    """One packaged asset's bytes (KeyError for a name not in :data:`ASSETS`)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files("loadsvc.web").joinpath("assets", name).read_bytes()


def live_page() -> bytes:
    """The HTML of ``/``: the shell that loads the assets and polls ``/api/...``."""
    head = (
        '<link rel="stylesheet" href="assets/uPlot.min.css">\n'
        '<link rel="stylesheet" href="assets/page.css">\n'
        '<script src="assets/uPlot.iife.min.js"></script>'
    )
    return _SHELL.format(
        title="loadsvc",
        head=head,
        scenarios_title="Scenarios",
        body='<script src="assets/app.js"></script>',
        words=_inline_json(STATES),
    ).encode()


# Inside <script>, "</script", "<!--" and "<script" change how the HTML parser reads the
# rest of the page (a backend's text could blank the report); the JSON escapes are the same
# strings to JSON.parse. U+2028/2029 end a line in older JavaScript.
_INLINE_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _inline_json(data: Any) -> str:
    return orjson.dumps(data).decode().translate(_INLINE_ESCAPES)


def report_page(data: dict[str, Any]) -> str:
    """The one-file report of a run: ``data`` has ``summary``, ``series``, ``config``, ``environment``."""
    css = asset("uPlot.min.css").decode() + asset("page.css").decode()
    head = f"<style>\n{css}\n</style>\n<script>\n{asset('uPlot.iife.min.js').decode()}\n</script>"
    body = (
        f'<script id="report-data" type="application/json">{_inline_json(data)}</script>\n'
        f"<script>\n{asset('app.js').decode()}\n</script>"
    )
    title = html.escape(f"loadsvc report: {data['summary']['scenario']}")
    return _SHELL.format(
        title=title, head=head, scenarios_title="Verdict", body=body, words=_inline_json(STATES)
    )
