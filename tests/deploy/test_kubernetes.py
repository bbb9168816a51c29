"""deploy/kubernetes: schema-valid manifests, wired to each other, the image and the default config."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from tests.support.stack import find_tool

K8S = ROOT / "deploy" / "kubernetes"
# Oldest Kubernetes the manifests support, and the newest schemas the validator ships.
KUBERNETES_VERSIONS = ["1.29.0", "latest"]
# In the directory, deliberately not applied by `kubectl apply -k`.
NOT_IN_KUSTOMIZATION = {"servicemonitor.yaml", "secret.example.yaml"}


def manifest(name: str) -> dict[str, Any]:
    """One manifest of deploy/kubernetes, parsed."""
    data = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def by_kind() -> dict[str, dict[str, Any]]:
    """The kustomization's resources, keyed ``Kind/name``."""
    out = {}
    for name in manifest("kustomization.yaml")["resources"]:
        doc = manifest(name)
        out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def container() -> dict[str, Any]:
    """The loadsvc container of the StatefulSet."""
    spec = manifest("statefulset.yaml")["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return only  # type: ignore[no-any-return]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """The container's env list as {name: entry}."""
    return {e["name"]: e for e in c["env"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_pass_strict_schema_validation(version: str) -> None:
    """kubernetes-validate --strict accepts every core manifest, the Secret example included."""
    tool = find_tool("kubernetes-validate")
    if tool is None:
        pytest.skip("kubernetes-validate is not installed (run .ci/install-deploy-tools)")
    files = [*manifest("kustomization.yaml")["resources"], "secret.example.yaml"]
    flags = [] if version == "latest" else ["-k", version]
    result = subprocess.run(
        [tool, "--strict", *flags, *files], cwd=K8S, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind only warns and exits 0: require a "passed" line per file.
    for name in files:
        assert re.search(rf"INFO {re.escape(name)} passed", output), output


def test_kustomization_lists_every_core_manifest() -> None:
    """kustomization.yaml applies every manifest here except the CRD-backed and example ones."""
    listed = set(manifest("kustomization.yaml")["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - NOT_IN_KUSTOMIZATION
    assert present >= NOT_IN_KUSTOMIZATION


def test_configmap_holds_the_default_config() -> None:
    """The ConfigMap's config.yaml is loadsvc/config/default.yaml, byte for byte."""
    default = (ROOT / "loadsvc" / "config" / "default.yaml").read_text(encoding="utf-8")
    assert manifest("configmap.yaml")["data"]["config.yaml"] == default
    spec = importlib.util.spec_from_file_location("render_configmap", K8S / "render_configmap.py")
    assert spec is not None and spec.loader is not None
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    assert (K8S / "configmap.yaml").read_text(encoding="utf-8") == renderer.render(default), (
        "configmap.yaml drifted: run python deploy/kubernetes/render_configmap.py"
    )


def test_replicas_equal_loadsvc_shards() -> None:
    """The StatefulSet runs as many pods as there are shards, each told its ordinal by POD_NAME."""
    statefulset = manifest("statefulset.yaml")
    env = env_of(container())
    assert statefulset["spec"]["replicas"] == int(env["LOADSVC_SHARDS"]["value"])
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_statefulset_is_governed_by_the_headless_service() -> None:
    """serviceName names a headless Service, and both Services select the StatefulSet's pods."""
    resources = by_kind()
    statefulset = resources["StatefulSet/loadsvc"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    headless = resources[f"Service/{statefulset['spec']['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None"
    for service in (headless, resources["Service/loadsvc"]):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {p["port"] for p in service["spec"]["ports"]} == {9100}


def test_probes_and_scrape_annotations_use_the_service_port() -> None:
    """Liveness is /healthz, readiness /readyz, and Prometheus scrapes /metrics, all on 9100."""
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 9100}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = manifest("statefulset.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9100"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert env_of(c)["LOADSVC_PORT"]["value"] == "9100"


def test_pod_is_non_root_with_a_read_only_root_filesystem() -> None:
    """The pod runs as the image's user, read-only, and writes history to its own volume
    (a claim per pod, so its baselines survive rescheduling)."""
    pod = manifest("statefulset.yaml")["spec"]["template"]["spec"]
    c = container()
    user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    resources = c["resources"]
    assert resources["requests"] and resources["limits"]
    volumes = {v["name"] for v in pod["volumes"]}
    claims = {
        t["metadata"]["name"]: t["spec"]
        for t in manifest("statefulset.yaml")["spec"]["volumeClaimTemplates"]
    }
    history = Path(env_of(c)["LOADSVC_HISTORY_FILE"]["value"])
    (mount,) = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == history.parent]
    assert mount["name"] in claims and mount["name"] not in volumes
    assert claims[mount["name"]]["accessModes"] == ["ReadWriteOnce"]
    assert not mount.get("readOnly", False)


def test_config_and_tokens_come_from_the_configmap_and_secret() -> None:
    """LOADSVC_CONFIG is the mounted ConfigMap's key; the API token is a secretKeyRef."""
    pod = manifest("statefulset.yaml")["spec"]["template"]["spec"]
    c = container()
    env = env_of(c)
    config_path = Path(env["LOADSVC_CONFIG"]["value"])
    (mount,) = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = manifest("configmap.yaml")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.name in configmap["data"]
    secret = manifest("secret.example.yaml")
    for name in ("LOADSVC_API_TOKEN", "LOADSVC_TARGET_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert "value" not in env["LOADSVC_API_TOKEN"]
    # The example carries placeholders only.
    assert set(secret["stringData"].values()) == {"replace-me"}


def test_image_tag_is_the_package_version() -> None:
    """The manifests deploy the image tagged with pyproject's version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container()["image"] == f"loadsvc:{version}"


def test_servicemonitor_scrapes_each_pod_through_the_metrics_service() -> None:
    """The optional ServiceMonitor selects the metrics Service and names its port (CRD: no schema)."""
    monitor = manifest("servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    services = [d for key, d in by_kind().items() if key.startswith("Service/")]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    # Exactly one selected Service has the named port, so each pod is scraped once.
    scraped = [s for s in selected if endpoint_ports & {p["name"] for p in s["spec"]["ports"]}]
    assert [s["metadata"]["name"] for s in scraped] == ["loadsvc"]
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
