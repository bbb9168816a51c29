"""The end-to-end stack: target, ``loadsvc serve``, Prometheus, Alertmanager, a webhook receiver.

Everything listens on 127.0.0.1, every process gets its own directory under the
module's temporary directory and is stopped by its PID. Prometheus loads the
rules rendered from the default configuration with ``E2E_PROFILE`` (FAST halved: 10 s
windows, ``for: 5s``) and scrapes and evaluates every second; Alertmanager runs
the committed ``alertmanager/alertmanager.yml`` with only its webhook URL and
group timings changed, so the real routing and inhibition are exercised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import yaml

from loadsvc.config.durations import parse_duration
from loadsvc.config.load import load_default
from loadsvc.config.spec import Config
from loadsvc.localstack import (
    ALERTMANAGER,
    PROMETHEUS,
    Process,
    local_prometheus_config,
    start_alertmanager,
    start_prometheus,
)
from loadsvc.render import render_all
from tests.e2e.support import (
    E2E_PROFILE,
    SCENARIOS,
    VERDICT_EVERY,
    PrometheusAPI,
    Stack,
    WebhookReceiver,
    alertmanager_config,
    service_config,
)
from tests.support import ROOT, free_port, start_logged, wait_for
from tests.support.stack import require


def with_verdict_every(config: Config, verdict_every: str) -> Config:
    """``config`` with the test's verdict window on the scenarios serve runs (SCENARIOS)."""
    every = parse_duration(verdict_every)
    return replace(
        config,
        scenarios=tuple(
            replace(s, schedule=replace(s.schedule, verdict_every_s=every))
            if s.name in SCENARIOS
            else s
            for s in config.scenarios
        ),
    )


@pytest.fixture(scope="module")
def verdict_every() -> str:
    """How often the service judges a window of its continuous scenarios (a module may override)."""
    return VERDICT_EVERY


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, verdict_every: str) -> Iterator[Stack]:
    """The whole product on loopback, shared by the module's tests (started once)."""
    for binary in (PROMETHEUS, ALERTMANAGER):
        require(binary)
    work = tmp_path_factory.mktemp("e2e")
    config = load_default()
    rendered = work / "rendered"
    # The rules as rendered for the windows serve really judges (the regression alerts hold
    # for 1.5 verdict windows), from the default configuration otherwise.
    render_all(with_verdict_every(config, verdict_every), rendered, E2E_PROFILE)
    with contextlib.ExitStack() as cleanup:
        webhook = WebhookReceiver()
        cleanup.callback(webhook.close)
        procs: list[Process] = []

        def started(proc: Process) -> Process:
            procs.append(proc)
            cleanup.callback(proc.stop)  # stopped in reverse order, each by its PID
            return proc

        target_port = free_port()
        target = started(
            start_logged(
                "target",
                ["target", "--host", "127.0.0.1", "--port", str(target_port)],
                work / "target",
                f"http://127.0.0.1:{target_port}",
                "/healthz",
            )
        )
        am_cfg = work / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(alertmanager_config(webhook.url), sort_keys=False))
        am_port = free_port()
        alertmanager = started(start_alertmanager(am_cfg, work / "alertmanager", am_port))

        cfg_path = work / "loadsvc.yaml"
        cfg_path.write_text(yaml.safe_dump(service_config(verdict_every), sort_keys=False))
        serve_port = free_port()
        serve_url = f"http://127.0.0.1:{serve_port}"
        serve_args = [
            "serve",
            *("--config", str(cfg_path), "--target", target.url),
            *("--host", "127.0.0.1", "--port", str(serve_port)),
            *("--history-file", str(work / "serve" / "runs.jsonl")),
        ]
        started(start_logged("serve", serve_args, work / "serve", serve_url, "/readyz"))

        base = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
        prom_cfg = local_prometheus_config(
            base,
            loadsvc_targets=[f"127.0.0.1:{serve_port}"],
            alertmanager=f"127.0.0.1:{am_port}",
            rule_files=sorted(str(p) for p in (rendered / "prometheus" / "rules").glob("*.yml")),
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        # The committed 10 s scrape timeout exceeds the 1 s interval, which Prometheus rejects.
        prom_cfg["global"]["scrape_timeout"] = "1s"
        prometheus = started(start_prometheus(prom_cfg, work / "prometheus", free_port()))

        s = Stack(
            workdir=work,
            config=config,
            rendered=rendered,
            target_url=target.url,
            serve_url=serve_url,
            alertmanager_url=alertmanager.url,
            prometheus=PrometheusAPI(prometheus.url),
            webhook=webhook,
            processes=procs,
        )
        wait_for(
            lambda: s.prometheus.query('up{job="loadsvc"} == 1'),
            20,
            "Prometheus scraping loadsvc serve",
        )
        s.started_at = time.time()
        yield s
