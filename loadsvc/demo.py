"""``loadsvc demo``: the whole product on loopback in one command.

Starts the reference target, ``loadsvc serve`` with the built-in seed
scenarios against it, and — when they are installed — Prometheus (with the
project's rules) and Alertmanager (with the project's routing), then says where
to look. Ctrl-C or SIGTERM stops everything, by PID.
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
    start_alertmanager,
    start_prometheus,
)


def _loadsvc(name: str, args: list[str], workdir: Path, url: str, ready: str) -> Process:
    return _spawn(name, [sys.executable, "-m", "loadsvc", *args], workdir, url, ready)


def _demo_env(work: Path) -> None:
    # The run history of a demo lives with its logs, not in the caller's directory.
    os.environ.setdefault("LOADSVC_HISTORY_FILE", str(work / "runs.jsonl"))


def run_demo(
    repo: Path,
    *,
    target_port: int = 8000,
    serve_port: int = 9100,
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
    config: str | None = None,
) -> int:
    """Run the demo until interrupted; returns the exit code."""
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
            f"reference target   {target}  (faults: POST {target}/admin/faults)",
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
