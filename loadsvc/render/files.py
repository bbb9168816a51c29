"""Which files the renderer writes, where, and whether the committed ones have drifted."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from loadsvc.config.spec import Config
from loadsvc.render import yamlfile
from loadsvc.render.alerts import alert_rules, header_notes
from loadsvc.render.dashboard_overview import overview_dashboard
from loadsvc.render.dashboard_scenario import scenario_dashboard
from loadsvc.render.header import provenance
from loadsvc.render.profile import PRODUCTION, TimingProfile
from loadsvc.render.provisioning import dashboard_provisioning, datasource_provisioning
from loadsvc.render.recording import HEADER_NOTES, recording_rules

RECORDING_RULES = Path("prometheus/rules/loadsvc-recording.yml")
ALERT_RULES = Path("prometheus/rules/loadsvc-alerts.yml")
OVERVIEW_DASHBOARD = Path("grafana/dashboards/loadsvc-overview.json")
SCENARIO_DASHBOARD = Path("grafana/dashboards/loadsvc-scenario.json")
DATASOURCE = Path("grafana/provisioning/datasources/prometheus.yml")
DASHBOARD_PROVIDER = Path("grafana/provisioning/dashboards/loadsvc.yml")


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files(config: Config, profile: TimingProfile = PRODUCTION) -> dict[Path, str]:
    """Every generated file: its path relative to the repository root and its text."""
    made = provenance(config, profile)
    return {
        RECORDING_RULES: yamlfile.dump(recording_rules(config, profile), [*made, *HEADER_NOTES]),
        ALERT_RULES: yamlfile.dump(alert_rules(config, profile), [*made, *header_notes(profile)]),
        OVERVIEW_DASHBOARD: _json(overview_dashboard(config, profile)),
        SCENARIO_DASHBOARD: _json(scenario_dashboard(config, profile)),
        DATASOURCE: yamlfile.dump(datasource_provisioning(), provenance(config)),
        DASHBOARD_PROVIDER: yamlfile.dump(dashboard_provisioning(), provenance(config)),
    }


def render_all(config: Config, out_dir: Path, profile: TimingProfile = PRODUCTION) -> list[Path]:
    """Write every generated file under ``out_dir``; return the paths written."""
    written: list[Path] = []
    for rel, text in rendered_files(config, profile).items():
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_drift(config: Config, repo_root: Path) -> list[str]:
    """Relative paths of the committed generated files that differ from a fresh render (or are missing).

    Renders to a temporary directory with the production profile and compares
    byte for byte, so the check exercises the same writer as ``render_all``.
    """
    with tempfile.TemporaryDirectory(prefix="loadsvc-render-") as tmp:
        fresh = render_all(config, Path(tmp), PRODUCTION)
        drifted: list[str] = []
        for path in fresh:
            rel = path.relative_to(tmp)
            committed = Path(repo_root) / rel
            if not committed.is_file() or committed.read_bytes() != path.read_bytes():
                drifted.append(rel.as_posix())
    return drifted
