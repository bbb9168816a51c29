"""Grafana provisioning: the Prometheus datasource and the dashboard file provider."""

from __future__ import annotations

from loadsvc.render.panels import DATASOURCE_UID

PROMETHEUS_URL = "http://prometheus:9090"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
# Equal to the scrape interval in prometheus/prometheus.yml: Grafana's
# $__rate_interval is then always at least four scrapes wide.
SCRAPE_INTERVAL = "15s"


def datasource_provisioning() -> dict[str, object]:
    """``grafana/provisioning/datasources/prometheus.yml`` as data."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus (loadsvc)",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": SCRAPE_INTERVAL, "httpMethod": "POST"},
            }
        ],
    }


def dashboard_provisioning() -> dict[str, object]:
    """``grafana/provisioning/dashboards/loadsvc.yml`` as data."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "loadsvc",
                "orgId": 1,
                "folder": "loadsvc",
                "type": "file",
                # The JSON in the repository is the source of truth: no edits in the UI.
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }
