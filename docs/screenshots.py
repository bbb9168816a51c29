"""Make docs/status-page-healthy.png and docs/status-page-breached.png from the repository alone.

    python docs/screenshots.py        # from the repository root; about two minutes

Runs ``loadsvc demo`` (the demo profile, examples/demo.yaml) on free ports, opens the
status page in headless Chromium (the tests' DevTools driver, tests/web/chromium.py),
takes the healthy page once both continuous scenarios have been judged, then injects the
README's fault (300 ms and 5 % errors on /api/market/foreign-detail) and takes the page
once it names the breach. Every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadsvc.localstack import free_port  # noqa: E402
from tests.support.processes import Proc  # noqa: E402
from tests.support.timing import wait_for  # noqa: E402
from tests.web.chromium import chromium  # noqa: E402

FAULT = {
    "latency_ms": {"/api/market/foreign-detail": 300},
    "error_ratio": {"/api/market/foreign-detail": 0.05},
}
OVERALL = "document.querySelector('#overall').textContent"
HEADLINES = "document.querySelector('#headlines').textContent"
FULL_MINUTE = (
    "fetch('api/status').then(r => r.json()).then(d => d.scenarios.filter(s => s.live)"
    ".every(s => s.live.covered_s >= 55))"
)


def _post(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


async def _shoot(page_url: str, target_url: str) -> None:
    async with chromium() as browser:
        page = await browser.open(page_url + "/#foreign_flow")
        await page.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        # Healthy: both continuous scenarios judged over a full live minute.
        await page.wait_for(
            "document.querySelectorAll('#headlines p').length >= 2"
            f" && {OVERALL}.startsWith('PASSED') && !{HEADLINES}.includes('STARTING')",
            120,
            "the healthy page",
        )
        await page.wait_for(FULL_MINUTE, 120, "a full live minute of both")
        await page.screenshot(ROOT / "docs" / "status-page-healthy.png")
        _post(target_url + "/admin/faults", FAULT)
        await page.wait_for(
            f"{HEADLINES}.includes('vs limit 200 ms') && {HEADLINES}.includes('vs limit 1 %')",
            90,
            "the breach named",
        )
        await asyncio.sleep(30)  # half a minute of the breach in the charts (a picture, not a wait)
        await page.screenshot(ROOT / "docs" / "status-page-breached.png")
        if page.errors:
            raise SystemExit(f"console errors: {page.errors}")


def main() -> int:
    """Run the demo, take both pictures, stop it."""
    ports = [free_port() for _ in range(4)]
    demo = Proc(
        [
            "demo", "--target-port", str(ports[0]), "--port", str(ports[1]),
            "--prometheus-port", str(ports[2]), "--alertmanager-port", str(ports[3]),
        ],
        env={"LOADSVC_API_TOKEN": ""},
    )  # fmt: skip
    try:
        wait_for(lambda: "loadsvc demo is running" in demo.output(), 60, "demo running")
        asyncio.run(_shoot(f"http://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[0]}"))
    finally:
        demo.stop()
    print("wrote docs/status-page-healthy.png and docs/status-page-breached.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
