"""The reference target as a bench child: ``python bench/target_main.py PORT [THROTTLE_S TICK_S]``.

The ``loadsvc target`` command has no flags for the publish pacing, so the bench
starts the target through ``run_target`` with its own ``TargetSettings``.
"""

from __future__ import annotations

import sys

from loadsvc.target.server import run_target
from loadsvc.target.settings import TargetSettings


def main(argv: list[str]) -> None:
    """Serve on 127.0.0.1:PORT until SIGTERM."""
    port = int(argv[0])
    settings = TargetSettings()
    if len(argv) >= 3:
        settings = TargetSettings(throttle_s=float(argv[1]), tick_s=float(argv[2]))
    run_target("127.0.0.1", port, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
