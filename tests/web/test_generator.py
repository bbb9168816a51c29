"""The status page's generator health is /api/status's one `generator` judgement, in a browser."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import get_json
from tests.support.processes import start_serve, start_target
from tests.support.timing import wait_for
from tests.web.chromium import CHROMIUM, chromium

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")

# Latency limits of 1 s: the trust limit is 100 ms, far above what a loaded shared machine
# adds to a quiet loop (a few ms), and below the ~250 ms the GIL hog below makes it wait.
CONFIG = """\
version: 1
defaults:
  thresholds:
    http_latency: {quantile: 0.95, max: 1s}
    ws_delivery_latency: {quantile: 0.99, max: 1s}
scenarios:
  poller:
    schedule: {kind: continuous, verdict_every: 10m}
    shape: {kind: constant, users: 2, duration: 1h}
    users:
      - kind: rest
        pacing: 200ms
        tasks: [{path: /api/market/snapshot}]
"""
# ``loadsvc serve`` with a thread that, while the flag file exists, spins in Python holding the
# GIL for 150 ms at a time (the switch interval, kept: loadsvc would shorten it to 0.5 ms), then
# lets go for 150 ms: every wake-up of the event loop in a spin waits, so the generator is busy
# for real (lag p99 ~150 ms over the 100 ms trust limit) yet still answers, and healthy again
# once the file is gone. It starts once loadsvc is imported: every file an import reads would
# wait for the GIL too.
GIL_HOG = """
import os, runpy, sys, threading, time
import loadsvc.cli, loadsvc.service.app

FLAG = os.environ.pop("LOADSVC_TEST_GIL_HOG")

def hog():
    while True:
        if not os.path.exists(FLAG):
            time.sleep(0.05)
            continue
        until = time.monotonic() + 0.15
        while time.monotonic() < until:
            pass
        time.sleep(0.15)

sys.setswitchinterval(0.15)
loadsvc.cli.share_quickly = lambda: None  # keep the hog's interval (loadsvc.gil would set 0.5 ms)
threading.Thread(target=hog, daemon=True).start()
runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)
"""
GENERATOR = "document.querySelector('#generator')"


def _generator(url: str) -> dict[str, Any]:
    doc: dict[str, Any] = get_json(url + "/api/status")["generator"]
    return doc


async def test_the_page_says_busy_exactly_when_api_status_does(tmp_path: Path) -> None:
    """The page's generator text follows /api/status's `generator` section: healthy while its lag
    p99 is under the trust limit, BUSY (amber, with the same limit) while a GIL hog holds the
    loop, and healthy again within a few refreshes of the status, although the scenario's
    60 s live window still holds the busy seconds."""
    config, flag = tmp_path / "c.yaml", tmp_path / "hog"
    config.write_text(CONFIG)
    target, port = start_target()
    serve = None
    try:
        serve, url = start_serve(
            ["--config", str(config), "--target", f"http://127.0.0.1:{port}"],
            env={"LOADSVC_TEST_GIL_HOG": str(flag), "LOADSVC_HISTORY_FILE": str(tmp_path / "h")},
            python=("-c", GIL_HOG),
        )
        async with chromium() as browser:
            page = await browser.open(url + "/")
            quiet = wait_for(
                lambda: (g := _generator(url))["loop_lag_p99_ms"] is not None and g,
                30,
                "the generator watched",
            )
            assert quiet["busy"] is False and quiet["loop_lag_limit_ms"] == 100, quiet
            healthy = await page.wait_for(
                f"{GENERATOR} && {GENERATOR}.textContent.startsWith('generator healthy') "
                f"&& [{GENERATOR}.textContent, {GENERATOR}.className]",
                30,
                "the page says healthy",
            )

            flag.touch()  # the generator busy on purpose
            busy = wait_for(lambda: (g := _generator(url))["busy"] and g, 60, "status busy")
            shown = await page.wait_for(
                f"{GENERATOR}.textContent.startsWith('generator BUSY') "
                f"&& [{GENERATOR}.textContent, {GENERATOR}.className]",
                60,
                "the page says busy",
            )

            flag.unlink()
            wait_for(lambda: not _generator(url)["busy"], 90, "status healthy again")
            calm = time.monotonic()
            again = await page.wait_for(
                f"{GENERATOR}.textContent.startsWith('generator healthy') "
                f"&& {GENERATOR}.textContent",
                20,
                "the page healthy again, with the status",
            )
            followed_s = time.monotonic() - calm
            live = get_json(url + "/api/status")["scenarios"][0]["live"]
            assert page.errors == []
    finally:
        if serve is not None:
            serve.stop()
        target.stop()
    assert "in the last 10 s (trust limit 100 ms)" in healthy[0] and "green" in healthy[1]
    assert busy["loop_lag_p99_ms"] > busy["loop_lag_limit_ms"]
    assert "in the last 10 s over its trust limit 100 ms" in shown[0] and "amber" in shown[1]
    # The page's number is a lag p99 over the trust limit, as the status said.
    assert float(shown[0].split("lag p99 ")[1].split(" ms")[0]) > 100
    # Not the scenario's live window, which still counts the busy seconds (60 s of them).
    assert live["busy"] is True and again.startswith("generator healthy"), (live, followed_s)
