"""``python -m loadsvc.render [--config FILE] [--out DIR] [--profile NAME] [--check]``.

A stand-in for ``loadsvc render`` that needs no CLI wiring; both call
:func:`loadsvc.render.render_all` and :func:`loadsvc.render.check_drift`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadsvc.render.files import check_drift, render_all
from loadsvc.render.profile import PROFILES


def main(argv: list[str] | None = None) -> int:
    """Render (or with ``--check`` compare) the generated files; 1 when they drifted."""
    parser = argparse.ArgumentParser(prog="python -m loadsvc.render", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="configuration file")
    parser.add_argument("--out", type=Path, default=Path("."), help="repository root to write")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="production")
    parser.add_argument("--check", action="store_true", help="only report drifted files")
    args = parser.parse_args(argv)

    from loadsvc.config.load import load_config  # lazy: the loader is a sibling package

    config = load_config(args.config)
    if args.check:
        drifted = check_drift(config, args.out)
        for rel in drifted:
            print(f"drifted: {rel}", file=sys.stderr)
        return 1 if drifted else 0
    for path in render_all(config, args.out, PROFILES[args.profile]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
