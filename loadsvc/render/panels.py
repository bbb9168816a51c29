"""Grafana panel building blocks on grafana-foundation-sdk, in the shapes loadsvc uses.

Every panel and query points at one datasource uid (:data:`DATASOURCE_UID`), which
the provisioned datasource carries, so the dashboards work on any Grafana that
loads ``grafana/provisioning``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

DATASOURCE_UID = "loadsvc-prometheus"
LIMIT_COLOR = "red"
# Series whose legend contains this word are drawn as the dashed red limit line.
LIMIT_WORD = "limit"


def datasource() -> dash_m.DataSourceRef:
    """The provisioned Prometheus datasource."""
    return dash_m.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""
    instant: bool = False


def _targets(queries: Sequence[Query]) -> list[prom_b.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        target = (
            prom_b.Dataquery()
            .expr(q.expr)
            .legend_format(q.legend or "__auto")
            .ref_id(chr(ord("A") + i))
            .datasource(datasource())
        )
        out.append(target.instant() if q.instant else target.range())
    return out


def limit_steps(limit: float) -> dash_b.ThresholdsConfig:
    """Threshold steps: fine below ``limit``, red from it on."""
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dash_m.Threshold(value=None, color="green"),
                dash_m.Threshold(value=limit, color=LIMIT_COLOR),
            ]
        )
    )


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    limit: float | None = None,
    width: int = 12,
    height: int = 8,
) -> ts_b.Panel:
    """A time series; ``limit`` draws the configured threshold as a dashed red line."""
    panel = (
        ts_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .min(0)
        .targets(list(_targets(queries)))
        .legend(
            common_b.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_m.LegendDisplayMode.LIST)
            .placement(common_m.LegendPlacement.BOTTOM)
        )
        .span(width)
        .height(height)
    )
    if limit is not None:
        panel = panel.thresholds(limit_steps(limit)).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.DASHED)
        )
    if any(LIMIT_WORD in q.legend for q in queries):
        panel = panel.override_by_regexp(
            f".*{LIMIT_WORD}.*",
            [
                dash_m.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                dash_m.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": LIMIT_COLOR}),
            ],
        )
    return panel


def stat(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    mappings: Sequence[tuple[str, str, str]] = (),
    limit: float | None = None,
    width: int = 6,
    height: int = 4,
) -> stat_b.Panel:
    """A single-value panel; ``mappings`` are (value, text, colour) for enumerations;
    ``limit`` colours the value red from it on (green below)."""
    panel = (
        stat_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .targets(list(_targets(queries)))
        .graph_mode(common_m.BigValueGraphMode.NONE)
        .color_mode(common_m.BigValueColorMode.BACKGROUND)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
    )
    if limit is not None:
        panel = panel.thresholds(limit_steps(limit))
    if mappings:
        panel = panel.mappings(
            [
                dash_m.ValueMap({value: dash_m.ValueMappingResult(text=text, color=color, index=i)})
                for i, (value, text, color) in enumerate(mappings)
            ]
        )
    return panel


def row(title: str) -> dash_b.Row:
    """A row header (rows carry the datasource too, so every panel names one)."""
    return dash_b.Row(title).datasource(datasource())


@dataclass(frozen=True)
class RunAnnotation:
    """A Prometheus annotation query marking finished runs (the SDK lacks these fields)."""

    name: str
    expr: str
    color: str
    title: str = "{{scenario}}: run {{result}}"
    tags: str = "scenario,result"
    step: str = "1m"

    def builder(self) -> dash_b.AnnotationQuery:
        """The SDK part: name, datasource, colour, expression."""
        return (
            dash_b.AnnotationQuery()
            .name(self.name)
            .datasource(datasource())
            .enable(True)
            .icon_color(self.color)
            .expr(self.expr)
        )

    def extra_fields(self) -> dict[str, str]:
        """The Prometheus-annotation fields Grafana reads besides ``expr``."""
        return {"step": self.step, "titleFormat": self.title, "tagKeys": self.tags}


class Board:
    """Adds rows and panels to a dashboard builder: unique ids, and a layout that wraps.

    The SDK's own layout only wraps *after* a line overflows 24 columns, so the
    board places every panel itself: a panel that does not fit starts a new line.
    """

    WIDTH = 24

    def __init__(self, builder: dash_b.Dashboard) -> None:
        self.builder = builder
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._line_height = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _new_line(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        """Start a new row below everything placed so far."""
        self._new_line()
        pos = dash_m.GridPos(h=1, w=self.WIDTH, x=0, y=self._y)
        self.builder = self.builder.with_row(row(title).id(self._id()).grid_pos(pos))
        self._y += 1

    def add(self, *panels: ts_b.Panel | stat_b.Panel) -> None:
        """Append panels left to right, wrapping before a panel that would not fit."""
        for panel in panels:
            size = panel.build().grid_pos or dash_m.GridPos()
            if self._x + size.w > self.WIDTH:
                self._new_line()
            pos = dash_m.GridPos(h=size.h, w=size.w, x=self._x, y=self._y)
            self.builder = self.builder.with_panel(panel.id(self._id()).grid_pos(pos))
            self._x += size.w
            self._line_height = max(self._line_height, size.h)


def encode(builder: dash_b.Dashboard, annotations: Sequence[RunAnnotation]) -> dict[str, Any]:
    """The dashboard as plain JSON data, with the annotations' extra fields filled in."""
    for a in annotations:
        builder = builder.annotation(a.builder())
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    extra = {a.name: a.extra_fields() for a in annotations}
    for item in data.get("annotations", {}).get("list", []):
        item.update(extra.get(item.get("name"), {}))
    return data
