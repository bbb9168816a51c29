"""docker-compose.yml: valid, pinned, local-only, and wired to the files it mounts."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import subprocess
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support import ROOT
from tests.support.stack import find_tool

from .conftest import load_yaml

LOOPBACK = "127.0.0.1"


def compose_command() -> list[str] | None:
    """The compose CLI here: the docker plugin if present, else docker-compose v1."""
    docker = find_tool("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = find_tool("docker-compose")
    return [legacy] if legacy else None


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on, from ``ports`` and ``expose``."""
    out: set[int] = set()
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        out.add(int(str(target).split("/")[0]))
    out.update(int(str(p).split("/")[0]) for p in service.get("expose", []))
    return out


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts; named volumes left out."""
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = entry.get("source", ""), entry["target"]
        else:
            source, target = entry.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def host_path(service: dict[str, Any], container_path: str) -> str | None:
    """The repository path that a bind mount puts at ``container_path``, if any."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return str(PurePosixPath(source) / wanted.relative_to(target))
    return None


def resolve(compose: dict[str, Any], address: str, scraper: str) -> tuple[str, int]:
    """(service, port) of a host:port seen from service ``scraper`` (localhost is itself)."""
    host, _, port = address.rpartition(":")
    if host in ("localhost", LOOPBACK):
        host = scraper
    assert host in compose["services"], f"{address}: no compose service named {host!r}"
    return host, int(port)


def test_compose_config_is_valid() -> None:
    """The compose CLI accepts the file (`config -q`) with an empty environment."""
    command = compose_command()
    if command is None:
        pytest.skip("no compose CLI (run .ci/install-deploy-tools)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADSVC_", "GF_"))}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    """Each bind mount's source (at its default) exists in the repository."""
    missing = [
        f"{name}: {source}"
        for name, service in compose["services"].items()
        for source, _ in bind_mounts(service)
        if not (ROOT / source).exists()
    ]
    assert not missing, f"mounted paths missing from the repository: {missing}"


def test_config_files_the_services_read_are_mounted(compose: dict[str, Any]) -> None:
    """Every --config.file and LOADSVC_CONFIG points into a bind mount at an existing file."""
    checked = []
    for name, service in compose["services"].items():
        paths = [
            a.split("=", 1)[1] for a in service.get("command", []) if a.startswith("--config.file=")
        ]
        if (service.get("environment") or {}).get("LOADSVC_CONFIG"):
            paths.append(service["environment"]["LOADSVC_CONFIG"])
        for path in paths:
            source = host_path(service, path)
            assert source is not None, f"{name}: {path} is not inside a bind mount"
            assert (ROOT / source).is_file(), f"{name}: {path} -> {source}, which is missing"
            checked.append(name)
    assert {"loadsvc", "prometheus", "alertmanager"} <= set(checked)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    """Pulled images name a version tag or digest; built images a tag that is not latest."""
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image name"
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        if "build" not in service:
            assert re.fullmatch(r"v?\d+\.\d+\.\d+.*", tag), f"{name}: {image} is not a version"


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    """Every published port binds 127.0.0.1, and no service shares the host's network."""
    published = 0
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name}: network_mode host"
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                host_ip = entry.get("host_ip")
            else:
                parts = str(entry).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == LOOPBACK, f"{name}: port {entry} is not bound to {LOOPBACK}"
            published += 1
    assert published >= 5


def test_secrets_are_never_literal() -> None:
    """Token, password and secret variables are passed through or interpolated, never written."""
    raw = load_yaml("docker-compose.yml")
    for name, service in raw["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) if "=" in e else (e, None) for e in environment)
        for key, value in environment.items():
            if re.search(r"TOKEN|PASSWORD|SECRET|API_KEY", key) and not key.endswith("_FILE"):
                assert value is None or str(value).startswith("${"), f"{name}: {key} is literal"


def test_loadsvc_targets_the_reference_target_by_default(compose: dict[str, Any]) -> None:
    """LOADSVC_TARGET defaults to the target service's port and can be replaced from the host."""
    raw = load_yaml("docker-compose.yml")
    assert raw["services"]["loadsvc"]["environment"]["LOADSVC_TARGET"].startswith(
        "${LOADSVC_TARGET:-"
    )
    url = urlsplit(compose["services"]["loadsvc"]["environment"]["LOADSVC_TARGET"])
    service, port = resolve(compose, url.netloc, "loadsvc")
    assert service == "target"
    assert port in container_ports(compose["services"]["target"])
    assert f"--port {port}" in " ".join(compose["services"]["target"]["command"])


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    """Each depends_on waits for a healthy service, and that service has a health check."""
    edges = 0
    for name, service in compose["services"].items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule == {"condition": "service_healthy"}, f"{name} -> {dependency}: {rule}"
            other = compose["services"][dependency]
            # Built services inherit the Dockerfile's HEALTHCHECK unless they set their own.
            assert "healthcheck" in other or "build" in other, f"{dependency}: no health check"
            edges += 1
    assert edges >= 3


def test_prometheus_targets_match_compose_services(compose: dict[str, Any]) -> None:
    """Every host:port in prometheus.yml is a compose service listening on that port."""
    config = load_yaml("prometheus/prometheus.yml")
    scraped = []
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            scraped += static.get("targets", [])
    alerting = [
        t
        for am in config.get("alerting", {}).get("alertmanagers", [])
        for static in am.get("static_configs", [])
        for t in static.get("targets", [])
    ]
    resolved = set()
    for address in scraped + alerting:
        service, port = resolve(compose, address, "prometheus")
        assert port in container_ports(compose["services"][service]), (
            f"{address}: {service} does not listen on {port}"
        )
        resolved.add(service)
    assert {"loadsvc", "alertmanager"} <= resolved


def test_grafana_datasource_points_at_prometheus(compose: dict[str, Any]) -> None:
    """The provisioned Prometheus datasource's url is the compose prometheus service and port."""
    config = load_yaml("grafana/provisioning/datasources/prometheus.yml")
    urls = [d["url"] for d in config["datasources"] if d.get("type") == "prometheus"]
    assert urls, "no Prometheus datasource provisioned"
    for url in urls:
        service, port = resolve(compose, urlsplit(url).netloc, "grafana")
        assert service == "prometheus"
        assert port in container_ports(compose["services"]["prometheus"])


def test_grafana_reads_dashboards_where_compose_mounts_them(compose: dict[str, Any]) -> None:
    """The dashboard provider's path is the container path of ./grafana/dashboards."""
    config = load_yaml("grafana/provisioning/dashboards/loadsvc.yml")
    grafana = compose["services"]["grafana"]
    for provider in config["providers"]:
        path = provider["options"]["path"]
        source = host_path(grafana, path)
        assert source is not None and PurePosixPath(source) == PurePosixPath(
            "./grafana/dashboards"
        ), f"provider path {path} is not the mounted grafana/dashboards"
    assert list((ROOT / "grafana" / "dashboards").glob("*.json")), "no dashboards to provision"


def dashboards_grafana_version() -> str:
    """The Grafana version the committed dashboards are rendered for.

    ``loadsvc.render.GRAFANA_VERSION`` when the renderer declares one; otherwise
    the version of grafana-foundation-sdk that renders them ("EPOCH!11.6.0"),
    whose release names the Grafana version its schema is for.
    """
    declared = getattr(importlib.import_module("loadsvc.render"), "GRAFANA_VERSION", None)
    if declared:
        return str(declared)
    return importlib.metadata.version("grafana-foundation-sdk").rpartition("!")[2]


def test_grafana_image_matches_the_dashboards_version(compose: dict[str, Any]) -> None:
    """The Grafana image runs the version the dashboards are rendered for."""
    image = compose["services"]["grafana"]["image"]
    assert image == f"grafana/grafana:{dashboards_grafana_version()}"
