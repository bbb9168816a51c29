"""Write configmap.yaml from loadsvc/config/default.yaml, or check that it is current.

    python deploy/kubernetes/render_configmap.py           # rewrite configmap.yaml
    python deploy/kubernetes/render_configmap.py --check   # exit 1 if it drifted

The ConfigMap carries the default configuration verbatim (comments included),
so the cluster runs exactly what `loadsvc serve` runs without --config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE.parents[1] / "loadsvc" / "config" / "default.yaml"
CONFIGMAP = HERE / "configmap.yaml"

HEADER = """\
# GENERATED from loadsvc/config/default.yaml, do not edit by hand.
# Regenerate: python deploy/kubernetes/render_configmap.py
# (tests/deploy/test_kubernetes.py fails when this file drifts.)
apiVersion: v1
kind: ConfigMap
metadata:
  name: loadsvc-config
  labels:
    app.kubernetes.io/name: loadsvc
data:
"""


def render(config_text: str) -> str:
    """The ConfigMap manifest holding ``config_text`` as its ``config.yaml`` key."""
    # A literal block keeps the file readable in the manifest; if the text is
    # one a literal block cannot carry unchanged (odd trailing newlines or
    # whitespace), fall back to a quoted string, which carries anything.
    block = "".join(
        f"    {line}" if line.strip() else "\n" for line in config_text.splitlines(True)
    )
    manifest = f"{HEADER}  config.yaml: |\n{block}"
    if yaml.safe_load(manifest)["data"]["config.yaml"] != config_text:
        manifest = f"{HEADER}  config.yaml: {json.dumps(config_text)}\n"
    return manifest


def main(argv: list[str]) -> int:
    """Rewrite the ConfigMap, or with ``--check`` report whether it is current."""
    expected = render(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    if "--check" in argv:
        if CONFIGMAP.read_text(encoding="utf-8") != expected:
            print(f"{CONFIGMAP} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    CONFIGMAP.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
