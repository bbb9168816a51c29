"""Every PromQL query of the rendered dashboards, ready to run against a real Prometheus.

Grafana substitutes its variables before it queries; :func:`instantiate` does
the same with fixed values so a test (or an operator) can run each panel's
query through the Prometheus HTTP API after a real run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Grafana's built-in interval variables and the value a check uses for each.
DEFAULT_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


@dataclass(frozen=True)
class DashboardQuery:
    """One query of a dashboard: where it is and its PromQL."""

    dashboard: str
    where: str  # panel title, or "annotation: <name>"
    expr: str


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    """Panel targets and annotation queries of ``dashboard`` (Grafana JSON), in order."""
    uid = str(dashboard.get("uid", ""))
    out: list[DashboardQuery] = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append(DashboardQuery(uid, str(panel.get("title", "")), target["expr"]))
    for item in dashboard.get("annotations", {}).get("list", []):
        if item.get("expr"):
            out.append(DashboardQuery(uid, f"annotation: {item.get('name')}", item["expr"]))
    return out


def _panels(container: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from _panels(panel)  # panels inside collapsed rows


def instantiate(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced from ``variables`` and the defaults."""
    values = {**DEFAULT_VARIABLES, **variables}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)
