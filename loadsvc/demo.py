"""``loadsvc demo``: the whole product on loopback in one command.

Starts the reference target, ``loadsvc serve`` with the demo profile
(``examples/demo.yaml``: the seed's scenarios at tens of users, 1-minute verdict
windows, sized for a 2-core machine; ``--seed`` for the seed's own sizes) against
it, and — when they are installed — Prometheus (with the project's rules) and
Alertmanager (with the project's routing), then says where to look and how to
inject a fault. A port already taken stops it before anything starts (exit 2).
Ctrl-C or SIGTERM stops everything, by PID.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from loadsvc.localstack import (
    ALERTMANAGER,
    PROMETHEUS,
    Process,
    _spawn,
    have,
    local_prometheus_config,
    port_in_use,
    start_alertmanager,
    start_prometheus,
)


def _loadsvc(name: str, args: list[str], workdir: Path, url: str, ready: str) -> Process:
    return _spawn(name, [sys.executable, "-m", "loadsvc", *args], workdir, url, ready)


def _demo_env(work: Path) -> None:
    # The run history of a demo lives with its logs, not in the caller's directory.
    os.environ.setdefault("LOADSVC_HISTORY_FILE", str(work / "runs.jsonl"))


EXIT_USAGE = 2
DEMO_CONFIG = Path("examples") / "demo.yaml"


def fault_command(target: str) -> str:
    """The one copy-paste command that makes the demo's REST poller slow and failing."""
    body = '{"latency_ms": {"/api/market/foreign-detail": 300}, "error_ratio": {"/api/market/foreign-detail": 0.05}}'
    return f"curl -X POST {target}/admin/faults -H 'Content-Type: application/json' -d '{body}'"


def demo_config(repo: Path, config: str | None, seed: bool) -> str | None:
    """The configuration the demo serves: ``config``, else the seed's (``seed``), else the
    demo profile in ``repo`` (None: the built-in seed configuration)."""
    if config is not None or seed:
        return config
    profile = repo / DEMO_CONFIG
    return str(profile) if profile.exists() else None


def run_demo(
    repo: Path,
    *,
    target_port: int = 8000,
    serve_port: int = 9100,
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
    config: str | None = None,
    seed: bool = False,
) -> int:
    """Run the demo until interrupted; returns the exit code (2: a port is taken)."""
    ports = {"target": target_port, "serve": serve_port}
    if have(PROMETHEUS):
        ports["prometheus"] = prometheus_port
    if have(ALERTMANAGER):
        ports["alertmanager"] = alertmanager_port
    for name, port in ports.items():
        problem = port_in_use("127.0.0.1", port)
        if problem is not None:
            print(f"loadsvc demo: {name}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    config = demo_config(repo, config, seed)
    work = Path(tempfile.mkdtemp(prefix="loadsvc-demo-"))
    procs: list[Process] = []
    stop_now = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_now
        stop_now = True

    _demo_env(work)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        target = f"http://127.0.0.1:{target_port}"
        procs.append(
            _loadsvc(
                "target",
                ["target", "--host", "127.0.0.1", "--port", str(target_port)],
                work,
                target,
                "/healthz",
            )
        )
        serve_args = ["serve", "--target", target, "--host", "127.0.0.1", "--port", str(serve_port)]
        if config:
            serve_args += ["--config", config]
        procs.append(
            _loadsvc("serve", serve_args, work, f"http://127.0.0.1:{serve_port}", "/readyz")
        )
        lines = [
            f"configuration      {config or 'built-in (the seed scenarios at full size)'}",
            f"reference target   {target}",
            f"status page        http://127.0.0.1:{serve_port}/   (live charts, no Grafana needed)",
            f"loadsvc serve      http://127.0.0.1:{serve_port}/api/status   /metrics   /api/runs",
        ]
        am_url = None
        am_cfg = repo / "alertmanager" / "alertmanager.yml"
        if have(ALERTMANAGER) and am_cfg.exists():
            am = start_alertmanager(am_cfg, work, alertmanager_port)
            procs.append(am)
            am_url = am.url
            lines.append(f"alertmanager       {am.url}")
        prom_cfg = repo / "prometheus" / "prometheus.yml"
        if have(PROMETHEUS) and prom_cfg.exists():
            base = yaml.safe_load(prom_cfg.read_text())
            rules = sorted(str(p) for p in (repo / "prometheus" / "rules").glob("*.yml"))
            cfg = local_prometheus_config(
                base,
                loadsvc_targets=[f"127.0.0.1:{serve_port}"],
                alertmanager=f"127.0.0.1:{alertmanager_port}" if am_url else None,
                rule_files=rules,
            )
            prom = start_prometheus(cfg, work, prometheus_port)
            procs.append(prom)
            lines.append(f"prometheus         {prom.url}/alerts   {prom.url}/graph")
        else:
            lines.append(
                "prometheus         not installed (apt-get install prometheus prometheus-alertmanager)"
            )
        lines.append(
            "grafana            docker compose up (see README) — dashboards in grafana/dashboards"
        )
        lines.append(f"logs               {work}/*.log")
        if not os.environ.get("LOADSVC_API_TOKEN"):
            lines.append(
                "trigger API        read-only: set LOADSVC_API_TOKEN to enable POST /api/scenarios/NAME/run"
            )
        lines += [
            "inject a fault     " + fault_command(target),
            "                   (the page names the breach within a minute; "
            f"clear it: curl -X DELETE {target}/admin/faults)",
        ]
        print("loadsvc demo is running (Ctrl-C stops it):\n  " + "\n  ".join(lines), flush=True)
        while not stop_now:
            for p in procs:
                if p.popen.poll() is not None:
                    print(
                        f"{p.name} exited with {p.popen.returncode}:\n{p.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0
    except RuntimeError as exc:
        print(f"loadsvc demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for p in reversed(procs):
            p.stop()
