"""How the harness steps a trial's processes: marker files in one directory per trial.

The harness creates ``go`` (start the load), ``mark`` (start the measured window:
forget what came before) and ``stop`` (end it, report, exit). Each process writes
``ready-NAME`` once it is set up and ``result-NAME.json`` when it has stopped.
Files rather than pipes or signals: Locust, asyncio clients and the harness all
read them the same way, and a trial directory is a record of what happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

STEPS = ("go", "mark", "stop")
POLL_S = 0.05


class Control:
    """One trial's control directory, seen by one process called ``name``."""

    def __init__(self, directory: Path | str, name: str) -> None:
        self.dir = Path(directory)
        self.name = name

    # -- the generator's side -------------------------------------------------

    def ready(self) -> None:
        """Tell the harness this process is set up and waits for ``go``."""
        (self.dir / f"ready-{self.name}").touch()

    def is_set(self, step: str) -> bool:
        """Whether the harness has given ``step``."""
        return (self.dir / step).exists()

    async def wait(self, step: str) -> None:
        """Wait (polling) until the harness gives ``step``."""
        while not self.is_set(step):
            await asyncio.sleep(POLL_S)

    def write_result(self, doc: dict[str, Any]) -> None:
        """Publish this process's result atomically."""
        tmp = self.dir / f".result-{self.name}.json"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.dir / f"result-{self.name}.json")

    # -- the harness's side ---------------------------------------------------

    def give(self, step: str) -> None:
        """Give ``step`` to every process of the trial."""
        (self.dir / step).touch()

    def wait_ready(self, names: list[str], timeout: float) -> None:
        """Wait until every process in ``names`` is ready."""
        self._wait_files([f"ready-{n}" for n in names], timeout)

    def result(self, name: str, timeout: float) -> dict[str, Any]:
        """The result of process ``name`` (waits for it)."""
        self._wait_files([f"result-{name}.json"], timeout)
        doc: dict[str, Any] = json.loads((self.dir / f"result-{name}.json").read_text())
        return doc

    def _wait_files(self, files: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all((self.dir / f).exists() for f in files):
            if time.monotonic() > deadline:
                missing = [f for f in files if not (self.dir / f).exists()]
                raise TimeoutError(f"{self.dir}: no {', '.join(missing)} within {timeout:g}s")
            time.sleep(POLL_S)
