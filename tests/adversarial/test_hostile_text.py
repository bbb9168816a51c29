"""A backend's own text (a WS upgrade header) is inert in the terminal and in the HTML report.

The server answers the WS upgrade with an ``Upgrade`` header holding ``<!--<script>`` (which
used to blank the whole report: the inline JSON escaped only ``</``), an 8-bit CSI (0x9b,
a terminal escape), an ESC sequence and U+2028. loadsvc quotes it in its diagnostics.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.support.processes import loadsvc
from tests.support.rawserver import read_request, serving_in_thread
from tests.web.chromium import CHROMIUM, chromium

HOSTILE_UPGRADE = b"<!--<script>\xc2\x9b2J\x1b[2J\x1b[32mPASSED\xe2\x80\xa8x"
# What a terminal acts on: C0 but tab and newline, DEL, C1, U+2028/2029.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
CONFIG = """\
version: 1
scenarios:
  s:
    shape: {kind: constant, users: 2, duration: 2s}
    users:
      - kind: ws_stream
        path: /ws/market
"""


async def hostile_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every upgrade with a 101 whose Upgrade header is hostile text."""
    await read_request(reader)
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + HOSTILE_UPGRADE + b"\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
    )
    await writer.drain()


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """``loadsvc run`` against the hostile server: its stdout, summary and report."""
    work = tmp_path_factory.mktemp("hostile")
    (work / "c.yaml").write_text(CONFIG)
    with serving_in_thread(hostile_upgrade) as server:
        done = loadsvc(
            "run", "s", "--config", str(work / "c.yaml"), "--target", server.url,
            "--summary-json", str(work / "s.json"), "--report-html", str(work / "r.html"),
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # every connect failed: a breach
    return done.stdout, work / "s.json", work / "r.html"


def test_the_terminal_shows_the_backends_text_escaped(hostile_run: tuple[str, Path, Path]) -> None:
    """The diagnostic reaches the terminal with its CSI, ESC and U+2028 shown as escapes."""
    stdout, _, _ = hostile_run
    detail = next(ln for ln in stdout.splitlines() if "/ws/market protocol: " in ln)
    assert "<!--<script>\\x9b2J\\x1b[2J\\x1b[32mPASSED\\u2028x" in detail
    assert not ACTIVE.search(stdout)
    # The last line is ours (a loaded machine may add that the generator was busy too).
    assert stdout.rstrip().splitlines()[-1].startswith("s: FAILED")


def test_the_report_keeps_the_text_as_data_and_still_renders(
    hostile_run: tuple[str, Path, Path],
) -> None:
    """The report's inline JSON has no raw <, > or U+2028 and decodes to the summary, text intact."""
    _, summary, report = hostile_run
    html = report.read_text()
    start = html.index('<script id="report-data" type="application/json">')
    inline = html[start:].split(">", 1)[1].split("</script>", 1)[0]
    assert "<" not in inline and ">" not in inline and "\u2028" not in inline
    data = json.loads(inline)
    detail = data["summary"]["endpoints"][0]["diagnostics"][0]["detail"]
    assert "<!--<script>" in detail and "\u2028" in detail
    # The report adds only what its series tell (first breaches) to the run's summary.
    embedded = {k: v for k, v in data["summary"].items() if k != "first_breach"}
    assert embedded == json.loads(summary.read_text())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
async def test_a_browser_draws_the_report_despite_the_text(
    hostile_run: tuple[str, Path, Path],
) -> None:
    """Chromium opens the report offline and draws it with no script error (it used to be blank)."""
    _, _, report = hostile_run
    async with chromium() as browser:
        page = await browser.open(report.as_uri(), offline=True)
        await page.wait_for("window.loadsvc.state.updates > 0", 10, "report drawn")
        verdict = await page.evaluate("document.querySelector('p[class^=verdict]').textContent")
        assert page.errors == []
    assert verdict == "verdict: failed"
