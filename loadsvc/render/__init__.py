"""Render the Prometheus rules, Grafana dashboards and provisioning from a configuration.

The configured thresholds are the single source: the same :class:`~loadsvc.config.spec.Config`
that judges runs in-process produces the alert expressions and the threshold lines.
"""

from __future__ import annotations

from loadsvc.render.files import check_drift, render_all, rendered_files
from loadsvc.render.profile import FAST, PRODUCTION, PROFILES, BurnWindow, TimingProfile

__all__ = [
    "FAST",
    "PRODUCTION",
    "PROFILES",
    "BurnWindow",
    "TimingProfile",
    "check_drift",
    "render_all",
    "rendered_files",
]
