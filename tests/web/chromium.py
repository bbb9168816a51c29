"""Headless Chromium driven through its DevTools protocol over the ``websockets`` client.

Debian's ``chromium`` is started on a temporary profile with ``--remote-debugging-port=0``
(the port is read from ``DevToolsActivePort``) and stopped by its PID. A page collects
console errors and uncaught exceptions, evaluates JavaScript and takes screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets

from tests.support.timing import scaled, wait_for_async

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: JavaScript, console errors, screenshots."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.errors: list[str] = []

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command in this tab."""
        return await self.browser.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (promises awaited); a JS exception fails the test."""
        reply = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, within: float, what: str) -> Any:
        """Poll ``expression`` until truthy (returned); fail after ``within`` s."""
        return await wait_for_async(lambda: self.evaluate(expression), within, what, every=0.1)

    async def screenshot(self, path: Path) -> None:
        """Write a PNG of the whole page."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))


class Browser:
    """A running headless Chromium and the one DevTools connection to it."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._waiting.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            page = self._pages.get(msg.get("sessionId", ""))
            if page is not None:
                _note_error(page, msg["method"], msg.get("params", {}))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One DevTools command; its result (an error reply fails the test)."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, scaled(20))
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def open(self, url: str, *, offline: bool = False, width: int = 1400) -> Page:
        """A new tab on ``url``, with no network at all when ``offline``; loaded when returned."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        if offline:
            await page.send(
                "Network.emulateNetworkConditions",
                {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            )
        await page.send("Page.navigate", {"url": url})
        await page.wait_for("document.readyState === 'complete'", 10, f"{url} loaded")
        return page


def _note_error(page: Page, method: str, params: dict[str, Any]) -> None:
    if method == "Runtime.exceptionThrown":
        page.errors.append(json.dumps(params["exceptionDetails"])[:500])
    elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
        page.errors.append(json.dumps(params.get("args"))[:500])
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        page.errors.append(params["entry"].get("text", "")[:500])


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium on a fresh profile, stopped by PID at the end."""
    assert CHROMIUM is not None, "chromium is not installed (.ci/install-system-deps)"
    profile = Path(tempfile.mkdtemp(prefix="loadsvc-chromium-"))
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"

        def port_written() -> bool:
            assert proc.poll() is None, "chromium exited before opening its DevTools port"
            return port_file.exists() and len(port_file.read_text().splitlines()) >= 2

        await wait_for_async(port_written, 20, "chromium opening its DevTools port", every=0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
            browser = Browser(ws)
            try:
                yield browser
            finally:
                browser._reader.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
